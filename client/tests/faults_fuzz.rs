//! compose + `.env` fuzzing under a time budget (`CLAWOPS_FUZZ_SECS`, default 60): generated
//! compose files (structured from the supported keys with plausible and hostile values, and
//! byte-level mutations of real files), `.env` and env files, written to a directory and loaded
//! with `clawops_agent::compose::load`, then ordered and turned into create options. Nothing
//! may panic: every failure is an error value with a message.
use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::LazyLock,
    time::{Duration, Instant},
};

use clawops_agent::compose::{self, LoadOptions, SpecInput};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::{Value, json};

/// A compose project on disk: file name → text.
#[derive(Debug, Clone)]
struct Case {
    files: Vec<(&'static str, String)>,
    env: HashMap<String, String>,
}

/// Pieces of interpolation templates and YAML/shell syntax that random strings are made of.
const FRAGMENTS: &str = r##"["${", "}", "$", "$$", ":-", "-", ":?", "?", ":+", "+", "PORT", "TAG",
  "HOME", "UNSET", "A_1", "127.0.0.1:", "18789", ":", "/", "..", "~", ".", "a", " ", "\n", "\"",
  "'", "#", "*", "&", "!", "-XX:Tiered=1", "host-gateway", "0.5", "1g", "512m", "unless-stopped",
  "é", "\\", "\t", "{", "[", "]", ",", "=", "%", "0x1F", "1e309", "-1", "null", "~/x", "\ufeff"]"##;

/// Tokens inserted into real compose files.
const YAML_TOKENS: &str = r##"["\n", " ", "  ", "- ", ": ", "&a ", "*a", "<<: *a\n", "!!str ",
  "!reset ", "? ", "|\n  ", ">-\n  ", "{", "}", "[", "]", ",", "#", "\t", "'", "\"", "${", "}",
  "$$", "---\n", "...\n", "%YAML 1.2\n", "null", "~", "yes", "0o17", ".inf", "\u0000", "\r"]"##;

/// Keys clawops refuses (compose knows them; silently ignoring them would surprise).
const UNSUPPORTED: &[&str] = &[
    "container_name",
    "privileged",
    "deploy",
    "networks",
    "x-custom",
];

/// Per supported key: values real compose files use ("good") and near misses ("bad").
const POOLS: &str = r##"{
  "image": {"good": ["openclaw:${TAG:-latest}", "busybox", "${OPENCLAW_IMAGE:-openclaw:local}",
      "registry.example:5000/a/b:1"], "bad": ["", "a:b:c", "UPPER/x"]},
  "build": {"good": [".", {"context": ".", "dockerfile": "Dockerfile",
      "args": {"A": "1", "B": null}, "target": "t"}, {"args": ["A=1", "B"]}],
    "bad": [{"context": "../outside"}, {"context": ".", "bogus": 1}, {"context": "/"}]},
  "restart": {"good": ["unless-stopped", "always", "on-failure:3", "no"],
    "bad": ["on-failure:x", "bogus"]},
  "env_file": {"good": [[".env"], [{"path": "extra.env", "required": false}], "extra.env"],
    "bad": ["missing.env", [{"path": "extra.env"}], [{"required": true}], ["/dev/null"]]},
  "environment": {"good": [{"A": "1", "B": null, "C": 2, "D": true}, ["A=1", "B", "C=${A:-x}"]],
    "bad": [["=x"], "A=1"]},
  "volumes": {"good": [["./data:/data", "named:/x", "/abs:/y:ro", "~/.openclaw:/home/node/.openclaw"],
      [{"type": "bind", "source": ".", "target": "/t"}], [{"type": "tmpfs", "target": "/t"}]],
    "bad": [[":/x", "a:b:c:d"], [{"type": "npipe"}]]},
  "ports": {"good": [["127.0.0.1:${PORT:-18789}:18789"],
      ["18789", 80, "8080:80/udp", "1-5:1-5", "[::1]:80:80"],
      [{"target": 80, "published": "8080", "host_ip": "127.0.0.1"}]],
    "bad": [["99999:1"], "80", ["a:b:c:d:e"], ["1-5:1-3"]]},
  "command": {"good": ["sh -c 'echo ${A:-x}'", ["node", "dist/index.js", "--port", "${PORT:-1}"],
      "a \"b c\""], "bad": [["unterminated 'quote"], "unterminated 'quote"]},
  "entrypoint": {"good": [["tini", "--"], "sh -c 'exec x'"], "bad": ["'"]},
  "init": {"good": [true, false], "bad": ["yes"]},
  "healthcheck": {"good": [{"test": ["CMD", "true"], "interval": "10s", "timeout": "1m30s",
      "retries": 3, "start_period": "0s"}, {"disable": true}, {"test": "curl -f x"}],
    "bad": [{"test": "curl -f x", "interval": "soon"}, {"test": []}, {"retries": -1}]},
  "user": {"good": ["1000:1000", "node"], "bad": [-1]},
  "working_dir": {"good": ["/app", "${HOME:-/root}"], "bad": ["relative"]},
  "cap_add": {"good": [["NET_ADMIN"], ["ALL"]], "bad": ["ALL"]},
  "cap_drop": {"good": [["NET_RAW"]], "bad": [[1]]},
  "security_opt": {"good": [["no-new-privileges:true"]], "bad": ["x"]},
  "extra_hosts": {"good": [["host.docker.internal:host-gateway"], {"a": "1.2.3.4"}],
    "bad": [["nocolon"], ["::1:x"]]},
  "stdin_open": {"good": [true], "bad": ["on"]},
  "tty": {"good": [false], "bad": [2]},
  "depends_on": {"good": [["other"], {"other": {"condition": "service_healthy"}}],
    "bad": [["self"], ["svc"], ["nobody"], {"other": {"condition": "whenever"}}]},
  "network_mode": {"good": ["host", "none", "bridge"],
    "bad": ["service:other", "service:", "container:abc"]},
  "labels": {"good": [{"a": "b"}, ["a=b", "c"]], "bad": [["=x"]]},
  "logging": {"good": [{"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}],
    "bad": [{"options": "x"}]},
  "mem_limit": {"good": ["512m", "1g", 1000000], "bad": ["lots", "9999999999999999999g", -5]},
  "cpus": {"good": ["${CPUS:-0.5}", 0.5, 2], "bad": ["abc", -1, 1e300, "1e309", "NaN"]},
  "group_add": {"good": [["docker", 999]], "bad": ["docker"]}
}"##;

/// Bad values any key may get.
const ANY_BAD: &str = r##"[null, {"k": ["v"]}, "${UNSET:?must be set}", "${BROKEN"]"##;

static FRAGMENT_LIST: LazyLock<Vec<String>> =
    LazyLock::new(|| serde_json::from_str(FRAGMENTS).unwrap());
static YAML_TOKEN_LIST: LazyLock<Vec<String>> =
    LazyLock::new(|| serde_json::from_str(YAML_TOKENS).unwrap());

/// Per key: (good values, bad values).
type Pools = BTreeMap<String, (Vec<Value>, Vec<Value>)>;

static POOL: LazyLock<Pools> = LazyLock::new(|| {
    let pools: BTreeMap<String, Value> = serde_json::from_str(POOLS).unwrap();
    let any_bad: Vec<Value> = serde_json::from_str(ANY_BAD).unwrap();
    pools
        .into_iter()
        .map(|(key, p)| {
            let list = |name: &str| p[name].as_array().cloned().unwrap_or_default();
            let mut bad = list("bad");
            bad.extend(any_bad.iter().cloned());
            (key, (list("good"), bad))
        })
        .collect()
});

fn soup() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(proptest::sample::select(&FRAGMENT_LIST[..]), 0..10)
            .prop_map(|v| v.concat()),
        1 => any::<String>(),
    ]
}

fn random_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        soup().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(soup(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One service: mostly good values, some near misses, a little noise, rarely an unknown key.
fn service_value() -> impl Strategy<Value = Value> {
    let keys: Vec<String> = POOL.keys().cloned().collect();
    let key = prop_oneof![
        30 => proptest::sample::select(keys),
        1 => proptest::sample::select(UNSUPPORTED).prop_map(str::to_owned),
    ];
    let entry = key.prop_flat_map(|key| {
        let (good, bad) = POOL
            .get(&key)
            .cloned()
            .unwrap_or_else(|| (vec![json!(true)], vec![json!("x")]));
        (
            Just(key),
            prop_oneof![
                30 => proptest::sample::select(good),
                3 => proptest::sample::select(bad),
                1 => random_value(),
            ],
        )
    });
    prop_oneof![
        30 => proptest::collection::vec(entry, 0..6).prop_map(|pairs| {
            let mut svc = serde_json::Map::new();
            svc.insert("image".into(), json!("busybox"));
            svc.extend(pairs);
            Value::Object(svc)
        }),
        1 => random_value(),
    ]
}

/// A structured compose document (JSON text is YAML 1.2 too; block style is added at random).
fn structured() -> impl Strategy<Value = String> {
    let names = prop_oneof![
        20 => proptest::sample::select(&["svc", "other", "openclaw-gateway"][..]),
        1 => proptest::sample::select(&["UPPER", "a b", "", "-x"][..]),
    ];
    (
        proptest::collection::btree_map(names, service_value(), 1..4),
        proptest::option::of(random_value()),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(services, volumes, block, extra)| {
            let mut top = BTreeMap::new();
            top.insert(
                "services".to_string(),
                Value::Object(
                    services
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                ),
            );
            if let Some(v) = volumes {
                top.insert("volumes".into(), v);
            }
            match extra % 8 {
                0 => {
                    top.insert("version".into(), json!("3.8"));
                }
                1 => {
                    top.insert("name".into(), json!("${PROJECT:-My Project}"));
                }
                2 => {
                    top.insert("networks".into(), json!({}));
                }
                3 => {
                    top.insert("x-anchors".into(), json!({"a": 1}));
                }
                _ => {}
            }
            let doc = Value::Object(top.into_iter().collect());
            if block {
                serde_json::to_string_pretty(&doc).unwrap()
            } else {
                serde_json::to_string(&doc).unwrap()
            }
        })
}

const SEEDS: &[&str] = &[
    clawops::demo::COMPOSE,
    "x-common: &common\n  restart: unless-stopped\n  environment:\n    A: ${A:-1}\nservices:\n  svc:\n    <<: *common\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo $$HOME\"]\n    cpus: ${CPUS:-0.5}\n    mem_limit: 512m\n    depends_on:\n      other:\n        condition: service_healthy\n  other:\n    image: busybox\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 5s\n",
    "services:\n  openclaw-gateway:\n    image: ${OPENCLAW_IMAGE:-openclaw:local}\n    build:\n      context: .\n      args:\n        - A=1\n    env_file:\n      - path: extra.env\n        required: false\n    environment:\n      JAVA_OPTS: ${JAVA_OPTS:--XX:TieredStopAtLevel=1}\n      NESTED: ${U1:-${U2:-deep}}\n    volumes:\n      - type: bind\n        source: ./state\n        target: /state\n    extra_hosts:\n      - \"host.docker.internal:host-gateway\"\n    logging:\n      options:\n        max-size: 10m\n",
];

/// A real compose file with tokens inserted and ranges removed.
fn mutated() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(SEEDS),
        prop_oneof![
            proptest::collection::vec(
                (
                    any::<usize>(),
                    proptest::sample::select(&YAML_TOKEN_LIST[..])
                ),
                0..1
            ),
            proptest::collection::vec(
                (
                    any::<usize>(),
                    proptest::sample::select(&YAML_TOKEN_LIST[..])
                ),
                1..8
            ),
        ],
        proptest::collection::vec((any::<usize>(), 0usize..24), 0..2),
    )
        .prop_map(|(seed, inserts, deletes)| {
            let mut text = seed.to_string();
            for (at, token) in inserts {
                let at = boundary(&text, at);
                text.insert_str(at, &token);
            }
            for (at, len) in deletes {
                let start = boundary(&text, at);
                let end = boundary(&text, start + len).max(start);
                text.replace_range(start..end, "");
            }
            text
        })
}

fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn dotenv() -> impl Strategy<Value = String> {
    let good = proptest::sample::select(
        &[
            "OPENCLAW_IMAGE=openclaw:latest",
            "PORT=18789",
            "A=${B:-x}",
            "export C='lit ${X}'",
            "D=\"multi\nline \\\" ${A}\"",
            "E",
            "# a comment",
            "",
            "TAG=v1 # inline comment",
            "HOME=/home/node",
        ][..],
    )
    .prop_map(str::to_owned);
    let bad = prop_oneof![
        proptest::sample::select(
            &[
                "COMPOSE_FILE=compose.yaml:missing.yaml",
                "COMPOSE_PROJECT_NAME=Bad Name!",
                "COMPOSE_PATH_SEPARATOR=",
                "BAD KEY=1",
                "=novalue",
                "F=${UNSET:?needs F}",
                "G='unterminated",
                "H=\"unterminated",
            ][..],
        )
        .prop_map(str::to_owned),
        soup(),
    ];
    let line = prop_oneof![12 => good, 1 => bad];
    proptest::collection::vec(line, 0..8).prop_map(|l| l.join("\n"))
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![structured(), mutated()],
        proptest::option::weighted(0.2, prop_oneof![structured(), mutated()]),
        proptest::option::of(dotenv()),
        proptest::option::of(dotenv()),
        proptest::collection::hash_map(
            prop_oneof![
                12 => proptest::sample::select(&["PORT", "TAG", "A", "HOME", "CPUS"][..]),
                1 => Just("COMPOSE_FILE"),
            ],
            prop_oneof![
                6 => proptest::sample::select(&["18789", "v1", "x", "/home/u", "0.5"][..])
                    .prop_map(str::to_owned),
                1 => soup(),
            ],
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(main, over, env, extra, vars, compose_yaml)| {
            let mut files = vec![(
                if compose_yaml {
                    "compose.yaml"
                } else {
                    "docker-compose.yml"
                },
                main,
            )];
            if let Some(o) = over {
                files.push((
                    if compose_yaml {
                        "compose.override.yaml"
                    } else {
                        "docker-compose.override.yml"
                    },
                    o,
                ));
            }
            if let Some(e) = env {
                files.push((".env", e));
            }
            if let Some(e) = extra {
                files.push(("extra.env", e));
            }
            Case {
                files,
                env: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            }
        })
}

const ALL_FILES: &[&str] = &[
    "compose.yaml",
    "docker-compose.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    ".env",
    "extra.env",
];

#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    loaded: u64,
    errors: BTreeMap<String, u64>,
}

/// Loads the case; any panic inside fails the proptest case (and is shrunk).
fn exercise(dir: &Path, case: &Case, tally: &RefCell<Tally>) {
    for f in ALL_FILES {
        let _ = std::fs::remove_file(dir.join(f));
    }
    for (name, text) in &case.files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let result = compose::load(&LoadOptions {
        dir: dir.to_owned(),
        files: Vec::new(),
        project_name: None,
        env: case.env.clone(),
        profiles: Vec::new(),
    });
    let mut t = tally.borrow_mut();
    t.cases += 1;
    match result {
        Ok(project) => {
            t.loaded += 1;
            let _ = project.start_order(&[]);
            for name in project.services.keys() {
                let input = SpecInput {
                    image: None,
                    image_id: "sha256:0000",
                    network_container: Some("0123456789ab"),
                };
                if let Err(e) = compose::container_spec(&project, name, &input) {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.trim().is_empty(),
                "an error without a message: {e:?}"
            );
            let kind = format!("{e:?}");
            let kind = kind.split(['{', '(', ' ']).next().unwrap_or("").to_owned();
            *t.errors.entry(kind).or_default() += 1;
        }
    }
}

fn budget() -> Duration {
    Duration::from_secs(
        std::env::var("CLAWOPS_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

#[test]
fn compose_and_dotenv_fuzz_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let tally = RefCell::new(Tally::default());
    let strategy = case();
    let deadline = Instant::now() + budget();
    let mut batches = 0;
    while Instant::now() < deadline {
        // Fresh random seeds per batch; no regression files in the source tree.
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, |c| {
            exercise(dir.path(), &c, &tally);
            Ok(())
        }) {
            panic!("compose fuzz found a failure: {e}");
        }
        batches += 1;
    }
    let t = tally.into_inner();
    println!(
        "compose fuzz: {} cases in {batches} batches ({} loaded, errors by kind: {:?})",
        t.cases, t.loaded, t.errors
    );
    assert!(
        t.loaded > 0 && !t.errors.is_empty(),
        "the generator reaches both outcomes"
    );
    println!(
        "FAULT | compose/.env fuzz ({}s budget: structured + mutated compose files, .env, env_file, override) | {} | nothing: no panic; every error had a message ({} loaded)",
        budget().as_secs(),
        t.cases,
        t.loaded
    );
}

#[test]
fn deeply_nested_yaml_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    for doc in [
        format!("services: {}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!(
            "services:\n  a: {}1{}",
            "{x: ".repeat(50_000),
            "}".repeat(50_000)
        ),
        // An alias bomb ("billion laughs").
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
         c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
         e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
         g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n\
         services: *h\n"
            .to_string(),
    ] {
        std::fs::write(dir.path().join("compose.yaml"), &doc).unwrap();
        let started = Instant::now();
        let result = compose::load(&LoadOptions {
            dir: dir.path().to_owned(),
            ..Default::default()
        });
        let err = result.expect_err("not a valid project").to_string();
        assert!(!err.is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
