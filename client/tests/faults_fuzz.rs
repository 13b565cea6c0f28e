//! compose + `.env` fuzzing under a time budget (`CLAWOPS_FUZZ_SECS`, default 60): generated
//! compose files (structured from the supported keys with plausible and hostile values, and
//! byte-level mutations of real files), `.env` and env files, written to a directory and loaded
//! with `clawops_agent::compose::load`, then ordered and turned into create options. Nothing
//! may panic: every failure is an error value with a message.
use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    path::Path,
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

const FRAGMENTS: &[&str] = &[
    "${",
    "}",
    "$",
    "$$",
    ":-",
    "-",
    ":?",
    "?",
    ":+",
    "+",
    "PORT",
    "TAG",
    "HOME",
    "UNSET",
    "A_1",
    "127.0.0.1:",
    "18789",
    ":",
    "/",
    "..",
    "~",
    ".",
    "a",
    " ",
    "\n",
    "\"",
    "'",
    "#",
    "*",
    "&",
    "!",
    "-XX:Tiered=1",
    "host-gateway",
    "0.5",
    "1g",
    "512m",
    "unless-stopped",
    "é",
    "\\",
    "\t",
    "{",
    "[",
    "]",
    ",",
    "=",
    "%",
    "0x1F",
    "1e309",
    "-1",
    "null",
    "~/x",
    "\u{feff}",
];

const KEYS: &[&str] = &[
    "image",
    "build",
    "restart",
    "env_file",
    "environment",
    "volumes",
    "ports",
    "command",
    "entrypoint",
    "init",
    "healthcheck",
    "user",
    "working_dir",
    "cap_add",
    "cap_drop",
    "security_opt",
    "extra_hosts",
    "stdin_open",
    "tty",
    "depends_on",
    "network_mode",
    "labels",
    "logging",
    "mem_limit",
    "cpus",
    "group_add",
];
/// Keys clawops refuses (compose knows them; silently ignoring them would surprise).
const UNSUPPORTED: &[&str] = &[
    "container_name",
    "privileged",
    "deploy",
    "networks",
    "x-custom",
];

/// Values real compose files use, per key.
fn good(key: &str) -> Vec<Value> {
    match key {
        "image" => vec![
            json!("openclaw:${TAG:-latest}"),
            json!("busybox"),
            json!("${OPENCLAW_IMAGE:-openclaw:local}"),
            json!("registry.example:5000/a/b:1"),
        ],
        "build" => vec![
            json!("."),
            json!({"context": ".", "dockerfile": "Dockerfile", "args": {"A": "1", "B": null}, "target": "t"}),
            json!({"args": ["A=1", "B"]}),
        ],
        "ports" => vec![
            json!(["127.0.0.1:${PORT:-18789}:18789"]),
            json!(["18789", 80, "8080:80/udp", "1-5:1-5", "[::1]:80:80"]),
            json!([{"target": 80, "published": "8080", "host_ip": "127.0.0.1"}]),
        ],
        "volumes" => vec![
            json!([
                "./data:/data",
                "named:/x",
                "/abs:/y:ro",
                "~/.openclaw:/home/node/.openclaw"
            ]),
            json!([{"type": "bind", "source": ".", "target": "/t"}]),
            json!([{"type": "tmpfs", "target": "/t"}]),
        ],
        "environment" => vec![
            json!({"A": "1", "B": null, "C": 2, "D": true}),
            json!(["A=1", "B", "C=${A:-x}"]),
        ],
        "env_file" => vec![
            json!([".env"]),
            json!([{"path": "extra.env", "required": false}]),
            json!("extra.env"),
        ],
        "command" | "entrypoint" => vec![
            json!("sh -c 'echo ${A:-x}'"),
            json!(["node", "dist/index.js", "--port", "${PORT:-1}"]),
            json!("a \"b c\""),
        ],
        "healthcheck" => vec![
            json!({"test": ["CMD", "true"], "interval": "10s", "timeout": "1m30s", "retries": 3, "start_period": "0s"}),
            json!({"disable": true}),
            json!({"test": "curl -f x"}),
        ],
        "cpus" => vec![json!("${CPUS:-0.5}"), json!(0.5), json!(2)],
        "mem_limit" => vec![json!("512m"), json!("1g"), json!(1000000)],
        "restart" => vec![
            json!("unless-stopped"),
            json!("always"),
            json!("on-failure:3"),
            json!("no"),
        ],
        "depends_on" => vec![
            json!(["other"]),
            json!({"other": {"condition": "service_healthy"}}),
        ],
        "extra_hosts" => vec![
            json!(["host.docker.internal:host-gateway"]),
            json!({"a": "1.2.3.4"}),
        ],
        "logging" => {
            vec![json!({"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}})]
        }
        "network_mode" => vec![json!("host"), json!("none"), json!("bridge")],
        "labels" => vec![json!({"a": "b"}), json!(["a=b", "c"])],
        "user" => vec![json!("1000:1000"), json!("node")],
        "group_add" => vec![json!(["docker", 999])],
        "cap_add" | "cap_drop" => vec![json!(["NET_ADMIN"]), json!(["ALL"])],
        "security_opt" => vec![json!(["no-new-privileges:true"])],
        "working_dir" => vec![json!("/app"), json!("${HOME:-/root}")],
        _ => vec![json!(true), json!(false)],
    }
}

/// Near misses and hostile values.
fn bad(key: &str) -> Vec<Value> {
    let mut v = vec![
        json!(null),
        json!({"k": ["v"]}),
        json!("${UNSET:?must be set}"),
        json!("${BROKEN"),
    ];
    v.extend(match key {
        "image" => vec![json!(""), json!("a:b:c"), json!("UPPER/x")],
        "build" => vec![
            json!({"context": "../outside"}),
            json!({"context": ".", "bogus": 1}),
            json!({"context": "/"}),
        ],
        "ports" => vec![
            json!(["99999:1"]),
            json!("80"),
            json!(["a:b:c:d:e"]),
            json!(["1-5:1-3"]),
        ],
        "volumes" => vec![json!([":/x", "a:b:c:d"]), json!([{"type": "npipe"}])],
        "environment" => vec![json!(["=x"]), json!("A=1")],
        "env_file" => vec![
            json!("missing.env"),
            json!([{"path": "extra.env"}]),
            json!([{"required": true}]),
            json!(["/dev/null"]),
        ],
        "command" | "entrypoint" => {
            vec![json!(["unterminated 'quote"]), json!("unterminated 'quote")]
        }
        "healthcheck" => vec![
            json!({"test": "curl -f x", "interval": "soon"}),
            json!({"test": []}),
            json!({"retries": -1}),
        ],
        "cpus" => vec![
            json!("abc"),
            json!(-1),
            json!(1e300),
            json!("1e309"),
            json!("NaN"),
        ],
        "mem_limit" => vec![json!("lots"), json!("9999999999999999999g"), json!(-5)],
        "restart" => vec![json!("on-failure:x"), json!("bogus")],
        "depends_on" => vec![
            json!(["self"]),
            json!(["svc"]),
            json!(["nobody"]),
            json!({"other": {"condition": "whenever"}}),
        ],
        "extra_hosts" => vec![json!(["nocolon"]), json!(["::1:x"])],
        "network_mode" => vec![
            json!("service:other"),
            json!("service:"),
            json!("container:abc"),
        ],
        _ => vec![],
    });
    v
}

fn soup() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..10)
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
    let key = prop_oneof![30 => proptest::sample::select(KEYS), 1 => proptest::sample::select(UNSUPPORTED)];
    let entry = key.prop_flat_map(|key| {
        (
            Just(key.to_string()),
            prop_oneof![
                30 => proptest::sample::select(good(key)),
                3 => proptest::sample::select(bad(key)),
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

const YAML_TOKENS: &[&str] = &[
    "\n",
    " ",
    "  ",
    "- ",
    ": ",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!str ",
    "!reset ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "#",
    "\t",
    "'",
    "\"",
    "${",
    "}",
    "$$",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "null",
    "~",
    "yes",
    "0o17",
    ".inf",
    "\u{0}",
    "\r",
];

/// A real compose file with tokens inserted and ranges removed.
fn mutated() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(SEEDS),
        prop_oneof![
            proptest::collection::vec(
                (any::<usize>(), proptest::sample::select(YAML_TOKENS)),
                0..1
            ),
            proptest::collection::vec(
                (any::<usize>(), proptest::sample::select(YAML_TOKENS)),
                1..8
            ),
        ],
        proptest::collection::vec((any::<usize>(), 0usize..24), 0..2),
    )
        .prop_map(|(seed, inserts, deletes)| {
            let mut text = seed.to_string();
            for (at, token) in inserts {
                let at = boundary(&text, at);
                text.insert_str(at, token);
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
