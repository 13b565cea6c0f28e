//! Interpolation and `.env` parsing, table-driven against docker compose's documented behaviour
//! (https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/), and
//! property tests that neither ever panics on arbitrary input.
use std::collections::HashMap;

use clawops_agent::compose::{
    dotenv,
    interpolate::{InterpolateError, interpolate},
};
use proptest::prelude::*;

fn env() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("SET", "value"),
        ("EMPTY", ""),
        ("FOO", "foo"),
        ("PORT", "18789"),
    ])
}

fn run(input: &str) -> Result<String, InterpolateError> {
    let env = env();
    interpolate(input, &|k| env.get(k).map(|v| v.to_string())).map(|r| r.value)
}

#[test]
fn documented_forms() {
    // (template, expected); VAR names: SET=value, EMPTY="", UNSET unset.
    let table: &[(&str, &str)] = &[
        // Direct substitution.
        ("${SET}", "value"),
        ("$SET", "value"),
        ("${UNSET}", ""),
        ("$UNSET", ""),
        ("${EMPTY}", ""),
        // `:-` default when unset or empty; `-` only when unset.
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${SET:-default}", "value"),
        ("${UNSET-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${SET-default}", "value"),
        // `:+` replacement when set and non-empty; `+` when set.
        ("${SET:+replacement}", "replacement"),
        ("${EMPTY:+replacement}", ""),
        ("${UNSET:+replacement}", ""),
        ("${EMPTY+replacement}", "replacement"),
        ("${UNSET+replacement}", ""),
        // `?` only fails when unset; an empty value passes.
        ("${EMPTY?must be set}", ""),
        ("${SET:?must be set}", "value"),
        // Escaping.
        ("$$", "$"),
        ("$${SET}", "${SET}"),
        ("$$SET", "$SET"),
        ("a $ b", "a $ b"),
        ("100$", "100$"),
        ("$1", "$1"),
        // Nested defaults (docs: `${VARIABLE:-${FOO}}`, two deep).
        ("${UNSET:-${FOO}}", "foo"),
        ("${UNSET:-${UNSET2:-default}}", "default"),
        ("${UNSET-${UNSET2-${FOO}}}", "foo"),
        ("${SET:-${UNSET:?never evaluated}}", "value"),
        ("${UNSET?$FOO}x", "never"),
        // A default that starts with a dash (OpenClaw's JAVA_OPTS-style defaults).
        (
            "${JAVA_OPTS:--XX:TieredStopAtLevel=1}",
            "-XX:TieredStopAtLevel=1",
        ),
        ("${UNSET--x}", "-x"),
        // Inside longer strings: image tags, ports, paths.
        ("openclaw:${TAG:-latest}", "openclaw:latest"),
        ("127.0.0.1:${PORT}:18789", "127.0.0.1:18789:18789"),
        ("${UNSET:-0.5}", "0.5"),
        ("/home/$FOO/.openclaw", "/home/foo/.openclaw"),
        ("${SET}${FOO}", "valuefoo"),
        ("$SET-$FOO", "value-foo"),
        ("${UNSET:-a}{b}", "a{b}"),
        ("${UNSET:-}", ""),
    ];
    for (template, expected) in table {
        let got = run(template);
        if *expected == "never" {
            match got {
                Err(InterpolateError::Required { name, message }) => {
                    assert_eq!(name, "UNSET");
                    assert_eq!(message, "foo", "the message is interpolated");
                }
                other => panic!("{template}: expected an error, got {other:?}"),
            }
            continue;
        }
        assert_eq!(got.as_deref(), Ok(*expected), "template {template:?}");
    }
}

#[test]
fn required_variables_fail_with_the_message() {
    for (template, name, message) in [
        ("${UNSET:?set UNSET in .env}", "UNSET", "set UNSET in .env"),
        ("${EMPTY:?must not be empty}", "EMPTY", "must not be empty"),
        ("${UNSET?}", "UNSET", ""),
        ("x ${UNSET:?err} y", "UNSET", "err"),
    ] {
        match run(template) {
            Err(e @ InterpolateError::Required { .. }) => {
                let text = e.to_string();
                assert!(text.contains(name), "{text}");
                assert!(text.contains(message), "{text}");
            }
            other => panic!("{template}: expected a required-variable error, got {other:?}"),
        }
    }
}

#[test]
fn invalid_templates_are_errors() {
    for template in [
        "${", "${SET", "${}", "${1ABC}", "${SET!x}", "${SET:}", "${SET:x}", "${ SET}",
    ] {
        match run(template) {
            Err(InterpolateError::Invalid { .. }) => {}
            other => panic!("{template}: expected invalid, got {other:?}"),
        }
    }
}

#[test]
fn unset_variables_are_reported_for_the_warning() {
    let r = interpolate("${A} ${B:-x} ${C-y} $D ${SET}", &|k| {
        (k == "SET").then(|| "v".into())
    })
    .unwrap();
    assert_eq!(r.unset, vec!["A".to_string(), "D".to_string()]);
}

#[test]
fn dotenv_interpolates_and_keeps_quoting_rules() {
    let text = "\
# OpenClaw's .env from the GCP guide
OPENCLAW_IMAGE=openclaw:latest
OPENCLAW_GATEWAY_TOKEN=change-me-now
OPENCLAW_GATEWAY_BIND=lan
OPENCLAW_GATEWAY_PORT=18789
OPENCLAW_CONFIG_DIR=/home/$USER/.openclaw
OPENCLAW_WORKSPACE_DIR=/home/$USER/.openclaw/workspace
QUOTED=\"a ${OPENCLAW_GATEWAY_BIND:-x} b\"
LITERAL='${NOT_INTERPOLATED}'
WITH_DEFAULT=${MISSING:-fallback}
";
    let vars = dotenv::parse(text, &|k| (k == "USER").then(|| "alice".into())).unwrap();
    let get = |k: &str| {
        vars.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("OPENCLAW_CONFIG_DIR"), "/home/alice/.openclaw");
    assert_eq!(
        get("OPENCLAW_WORKSPACE_DIR"),
        "/home/alice/.openclaw/workspace"
    );
    assert_eq!(get("QUOTED"), "a lan b");
    assert_eq!(get("LITERAL"), "${NOT_INTERPOLATED}");
    assert_eq!(get("WITH_DEFAULT"), "fallback");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn interpolation_never_panics(s in any::<String>()) {
        let _ = interpolate(&s, &|k| (k.len() % 2 == 0).then(|| k.to_string()));
    }

    #[test]
    fn interpolation_never_panics_on_template_soup(
        s in proptest::collection::vec(prop_oneof![
            Just("$"), Just("{"), Just("}"), Just(":"), Just("-"), Just("?"), Just("+"),
            Just("A"), Just("_"), Just("1"), Just("é"), Just(" "), Just("${"), Just("$$"),
        ], 0..64).prop_map(|v| v.concat())
    ) {
        let _ = interpolate(&s, &|k| (k == "A").then(|| "x".to_string()));
    }

    #[test]
    fn dotenv_never_panics(s in any::<String>()) {
        let _ = dotenv::parse(&s, &|_| None);
    }

    #[test]
    fn dotenv_never_panics_on_line_soup(
        s in proptest::collection::vec(prop_oneof![
            Just("A"), Just("="), Just("'"), Just("\""), Just("\\"), Just("\n"), Just("#"),
            Just(" "), Just("export "), Just("${"), Just("}"), Just("$"), Just("\r\n"), Just("é"),
        ], 0..64).prop_map(|v| v.concat())
    ) {
        let _ = dotenv::parse(&s, &|_| Some("v".into()));
    }
}
