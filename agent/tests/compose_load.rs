//! Loading compose projects: the seed file of the GCP guide, a file using every supported key,
//! override merging, and the errors an operator must get instead of silent surprises.
use std::{collections::HashMap, path::Path};

use clawops_agent::compose::{
    self, ComposeError, Condition, LoadOptions, MountKind, NetworkMode, Restart, SpecInput,
};
use testkit::seed::SEED_COMPOSE;

const SEED_ENV: &str = "OPENCLAW_IMAGE=openclaw:latest
OPENCLAW_GATEWAY_TOKEN=change-me-now
OPENCLAW_GATEWAY_BIND=lan
OPENCLAW_GATEWAY_PORT=18789
OPENCLAW_CONFIG_DIR=/home/$USER/.openclaw
OPENCLAW_WORKSPACE_DIR=/home/$USER/.openclaw/workspace
";

fn project_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("compose")
        .tempdir()
        .unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn load(dir: &Path, env: &[(&str, &str)]) -> Result<compose::Project, ComposeError> {
    compose::load(&LoadOptions {
        dir: dir.to_owned(),
        files: Vec::new(),
        project_name: Some("testproj".into()),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        profiles: Vec::new(),
    })
}

#[test]
fn seed_file_and_env_load_as_docker_compose_reads_them() {
    let dir = project_dir(&[("docker-compose.yml", SEED_COMPOSE), (".env", SEED_ENV)]);
    let p = load(dir.path(), &[("USER", "alice")]).unwrap();
    let s = &p.services["openclaw-gateway"];
    assert_eq!(s.image.as_deref(), Some("openclaw:latest"));
    assert_eq!(s.restart, Some(Restart::UnlessStopped));
    assert_eq!(s.build.as_ref().unwrap().context, dir.path());
    // env_file first, `environment` over it.
    assert_eq!(s.environment["OPENCLAW_GATEWAY_TOKEN"], "change-me-now");
    assert_eq!(s.environment["HOME"], "/home/node");
    assert_eq!(s.environment["OPENCLAW_GATEWAY_PORT"], "18789");
    assert_eq!(
        s.volumes[0].kind,
        MountKind::Bind("/home/alice/.openclaw".into())
    );
    assert_eq!(s.volumes[1].target, "/home/node/.openclaw/workspace");
    assert_eq!(s.ports[0].host_ip, "127.0.0.1");
    assert_eq!(s.ports[0].published, Some(18789));
    assert_eq!(
        s.command.as_ref().unwrap()[4..],
        ["lan", "--port", "18789"].map(String::from)
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);

    let spec = compose::container_spec(
        &p,
        "openclaw-gateway",
        &SpecInput {
            image: None,
            image_id: "sha256:abc",
            network_container: None,
        },
    )
    .unwrap();
    assert_eq!(spec.name, "testproj-openclaw-gateway-1");
    let labels = spec.body.labels.as_ref().unwrap();
    assert_eq!(labels["com.docker.compose.project"], "testproj");
    assert_eq!(labels["com.docker.compose.service"], "openclaw-gateway");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert_eq!(labels["com.docker.compose.config-hash"].len(), 64);
    let host = spec.body.host_config.as_ref().unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("testproj_default"));
    assert_eq!(
        host.binds.as_ref().unwrap()[0],
        "/home/alice/.openclaw:/home/node/.openclaw"
    );
    let bindings = &host.port_bindings.as_ref().unwrap()["18789/tcp"];
    let b = &bindings.as_ref().unwrap()[0];
    assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(b.host_port.as_deref(), Some("18789"));
    assert_eq!(
        host.restart_policy
            .as_ref()
            .unwrap()
            .name
            .unwrap()
            .to_string(),
        "unless-stopped"
    );
}

#[test]
fn process_environment_wins_over_dotenv() {
    let dir = project_dir(&[("docker-compose.yml", SEED_COMPOSE), (".env", SEED_ENV)]);
    let p = load(
        dir.path(),
        &[("USER", "bob"), ("OPENCLAW_GATEWAY_PORT", "28789")],
    )
    .unwrap();
    let s = &p.services["openclaw-gateway"];
    assert_eq!(s.ports[0].published, Some(28789));
    // env_file values are the file's own: the process only wins for interpolation.
    assert_eq!(s.environment["OPENCLAW_GATEWAY_PORT"], "28789");
    assert_eq!(
        s.volumes[0].kind,
        MountKind::Bind("/home/bob/.openclaw".into())
    );
}

#[test]
fn config_hash_is_stable_and_tracks_config_and_image() {
    let dir = project_dir(&[("docker-compose.yml", SEED_COMPOSE), (".env", SEED_ENV)]);
    let hash = |env: &[(&str, &str)], image_id: &str| {
        let p = load(dir.path(), env).unwrap();
        compose::container_spec(
            &p,
            "openclaw-gateway",
            &SpecInput {
                image: None,
                image_id,
                network_container: None,
            },
        )
        .unwrap()
        .config_hash
    };
    let a = hash(&[("USER", "a")], "sha256:1");
    assert_eq!(a, hash(&[("USER", "a")], "sha256:1"));
    assert_ne!(a, hash(&[("USER", "b")], "sha256:1"));
    assert_ne!(a, hash(&[("USER", "a")], "sha256:2"));
}

const EVERY_KEY: &str = r#"
x-common: &common
  init: true
  cap_drop: [NET_RAW, NET_ADMIN]
  security_opt: ["no-new-privileges:true"]
services:
  openclaw-gateway:
    <<: *common
    image: "openclaw:${TAG:-local}"
    build:
      context: ./app
      dockerfile: Dockerfile.gateway
      target: runtime
      args:
        NODE_VERSION: "24"
        EXTRA: ${EXTRA_ARG:-none}
    restart: on-failure:3
    env_file:
      - path: ./gateway.env
        required: true
      - path: ./missing.env
        required: false
    environment:
      HOME: /home/node
      TOKEN: ${OPENCLAW_GATEWAY_TOKEN:?set OPENCLAW_GATEWAY_TOKEN in .env}
      JAVA_OPTS: ${JAVA_OPTS:--XX:TieredStopAtLevel=1}
      NESTED: ${A:-${B:-deep}}
      NUMBER: 42
      INHERITED:
    volumes:
      - ./state:/home/node/.openclaw
      - type: bind
        source: ./ro
        target: /ro
        read_only: true
      - cache:/cache:nocopy
      - /anonymous
    ports:
      - "127.0.0.1:${PORT:-18789}:18789"
      - target: 18790
        published: "18790"
        host_ip: 127.0.0.1
        protocol: tcp
    command: ["node", "dist/index.js", "gateway", "--bind", "${BIND:-lan}"]
    entrypoint: tini -- docker-entrypoint.sh
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:18789/healthz"]
      interval: 30s
      timeout: 5s
      retries: 3
      start_period: 1m30s
    user: "1000:1000"
    working_dir: /app
    cap_add: [SYS_PTRACE]
    extra_hosts:
      - "host.docker.internal:host-gateway"
    stdin_open: false
    tty: false
    labels:
      com.example.role: gateway
    logging:
      driver: json-file
      options:
        max-size: 10m
        max-file: "3"
    mem_limit: 1g
    cpus: ${CPUS:-0.5}
    group_add: ["999"]
    hostname: gateway
    stop_signal: SIGTERM
    stop_grace_period: 30s
  openclaw-cli:
    <<: *common
    image: "openclaw:${TAG:-local}"
    network_mode: "service:openclaw-gateway"
    depends_on:
      openclaw-gateway:
        condition: service_healthy
        restart: true
      optional-thing:
        condition: service_started
        required: false
    stdin_open: true
    tty: true
    entrypoint: ["node", "dist/index.js"]
    labels: ["com.example.role=cli"]
volumes:
  cache: {}
"#;

#[test]
fn every_supported_key_is_understood_and_converted() {
    let dir = project_dir(&[
        ("compose.yaml", EVERY_KEY),
        (
            ".env",
            "OPENCLAW_GATEWAY_TOKEN=secret\nINHERITED=from-dotenv\n",
        ),
        ("gateway.env", "FROM_FILE=1\nHOME=/overridden-below\n"),
    ]);
    let p = load(dir.path(), &[]).unwrap();
    assert_eq!(
        p.start_order(&[]).unwrap(),
        vec!["openclaw-gateway".to_string(), "openclaw-cli".to_string()]
    );
    let g = &p.services["openclaw-gateway"];
    assert_eq!(g.image.as_deref(), Some("openclaw:local"));
    let b = g.build.as_ref().unwrap();
    assert_eq!(b.context, dir.path().join("app"));
    assert_eq!(b.dockerfile.as_deref(), Some("Dockerfile.gateway"));
    assert_eq!(b.target.as_deref(), Some("runtime"));
    assert_eq!(b.args["EXTRA"].as_deref(), Some("none"));
    assert_eq!(g.restart, Some(Restart::OnFailure(Some(3))));
    assert_eq!(g.environment["TOKEN"], "secret");
    assert_eq!(g.environment["JAVA_OPTS"], "-XX:TieredStopAtLevel=1");
    assert_eq!(g.environment["NESTED"], "deep");
    assert_eq!(g.environment["NUMBER"], "42");
    assert_eq!(g.environment["INHERITED"], "from-dotenv");
    assert_eq!(g.environment["FROM_FILE"], "1");
    assert_eq!(g.environment["HOME"], "/home/node");
    assert_eq!(g.volumes.len(), 4);
    assert!(g.volumes[1].read_only);
    assert_eq!(g.volumes[2].kind, MountKind::Volume("cache".into()));
    assert_eq!(g.volumes[3].kind, MountKind::Anonymous);
    assert_eq!(g.ports.len(), 2);
    assert_eq!(
        g.entrypoint.as_ref().unwrap(),
        &["tini", "--", "docker-entrypoint.sh"].map(String::from)
    );
    assert_eq!(g.cpus, Some(0.5));
    assert_eq!(g.mem_limit, Some(1 << 30));
    assert_eq!(g.init, Some(true));
    assert_eq!(g.cap_drop, vec!["NET_RAW", "NET_ADMIN"]);
    assert_eq!(
        g.extra_hosts,
        vec![("host.docker.internal".into(), "host-gateway".into())]
    );
    let cli = &p.services["openclaw-cli"];
    assert_eq!(
        cli.network_mode,
        Some(NetworkMode::Service("openclaw-gateway".into()))
    );
    assert_eq!(
        cli.depends_on["openclaw-gateway"].condition,
        Condition::Healthy
    );
    assert!(!cli.depends_on.contains_key("optional-thing"));
    assert!(
        p.warnings.iter().any(|w| w.contains("optional-thing")),
        "{:?}",
        p.warnings
    );

    let spec = compose::container_spec(
        &p,
        "openclaw-gateway",
        &SpecInput {
            image: Some("openclaw:abc123"),
            image_id: "sha256:1",
            network_container: None,
        },
    )
    .unwrap();
    let body = &spec.body;
    let host = body.host_config.as_ref().unwrap();
    assert_eq!(body.image.as_deref(), Some("openclaw:abc123"));
    assert_eq!(body.user.as_deref(), Some("1000:1000"));
    assert_eq!(body.working_dir.as_deref(), Some("/app"));
    assert_eq!(body.hostname.as_deref(), Some("gateway"));
    assert_eq!(body.stop_timeout, Some(30));
    let hc = body.healthcheck.as_ref().unwrap();
    assert_eq!(hc.interval, Some(30_000_000_000));
    assert_eq!(hc.start_period, Some(90_000_000_000));
    assert_eq!(hc.retries, Some(3));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(1 << 30));
    assert_eq!(host.cap_add.as_ref().unwrap(), &["SYS_PTRACE"]);
    assert_eq!(
        host.security_opt.as_ref().unwrap(),
        &["no-new-privileges:true"]
    );
    assert_eq!(
        host.extra_hosts.as_ref().unwrap(),
        &["host.docker.internal:host-gateway"]
    );
    assert_eq!(host.group_add.as_ref().unwrap(), &["999"]);
    let log = host.log_config.as_ref().unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(log.config.as_ref().unwrap()["max-size"], "10m");
    let binds = host.binds.as_ref().unwrap();
    assert!(binds.contains(&format!("{}/ro:/ro:ro", dir.path().display())));
    assert!(binds.contains(&"testproj_cache:/cache:nocopy".to_string()));
    assert_eq!(body.volumes.as_ref().unwrap(), &["/anonymous"]);
    assert_eq!(body.labels.as_ref().unwrap()["com.example.role"], "gateway");

    // `service:` network mode needs the target's container id.
    let err = compose::container_spec(&p, "openclaw-cli", &SpecInput::default()).unwrap_err();
    assert!(err.to_string().contains("openclaw-gateway"), "{err}");
    let cli_spec = compose::container_spec(
        &p,
        "openclaw-cli",
        &SpecInput {
            image: None,
            image_id: "sha256:1",
            network_container: Some("abcdef"),
        },
    )
    .unwrap();
    let cli_host = cli_spec.body.host_config.as_ref().unwrap();
    assert_eq!(cli_host.network_mode.as_deref(), Some("container:abcdef"));
    assert!(cli_spec.body.networking_config.is_none());
    assert_eq!(cli_spec.body.tty, Some(true));
    assert_eq!(cli_spec.body.open_stdin, Some(true));
}

#[test]
fn override_file_merges_as_docker_compose_does() {
    let base = r#"
services:
  web:
    image: busybox:1
    command: ["sh", "-c", "base"]
    environment:
      A: base
      B: base
    labels: ["keep=1"]
    ports: ["127.0.0.1:8080:80"]
    volumes:
      - ./a:/data
      - ./logs:/logs
    cap_drop: [NET_RAW]
    healthcheck:
      test: ["CMD", "true"]
      interval: 10s
    logging:
      driver: json-file
      options: {max-size: 1m}
"#;
    let over = r#"
services:
  web:
    image: busybox:2
    command: ["sh", "-c", "override"]
    environment:
      - B=override
      - C=new
    labels: {added: "2"}
    ports: ["127.0.0.1:8081:81"]
    volumes:
      - ./b:/data
    cap_drop: [NET_RAW, NET_ADMIN]
    healthcheck:
      retries: 5
    logging:
      options: {max-file: "2"}
  extra:
    image: busybox:3
"#;
    let dir = project_dir(&[
        ("docker-compose.yml", base),
        ("docker-compose.override.yml", over),
    ]);
    let p = load(dir.path(), &[]).unwrap();
    assert_eq!(p.config_files.len(), 2);
    let w = &p.services["web"];
    assert_eq!(w.image.as_deref(), Some("busybox:2"));
    assert_eq!(w.command.as_ref().unwrap()[2], "override");
    assert_eq!(w.environment["A"], "base");
    assert_eq!(w.environment["B"], "override");
    assert_eq!(w.environment["C"], "new");
    assert_eq!(w.labels.len(), 2);
    assert_eq!(w.ports.len(), 2);
    assert_eq!(w.volumes.len(), 2);
    assert_eq!(
        w.volumes[0].kind,
        MountKind::Bind(dir.path().join("b")),
        "same target: the override's source wins"
    );
    assert_eq!(w.cap_drop, vec!["NET_RAW", "NET_ADMIN"]);
    let hc = w.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test.as_ref().unwrap()[1], "true");
    assert_eq!(hc.retries, Some(5));
    let log = w.logging.as_ref().unwrap();
    assert_eq!(log.options.len(), 2);
    assert!(p.services.contains_key("extra"));

    // Explicit files: no automatic override.
    let only_base = compose::load(&LoadOptions {
        dir: dir.path().to_owned(),
        files: vec!["docker-compose.yml".into()],
        project_name: Some("x".into()),
        env: HashMap::new(),
        profiles: Vec::new(),
    })
    .unwrap();
    assert_eq!(
        only_base.services["web"].image.as_deref(),
        Some("busybox:1")
    );
}

fn load_err(compose: &str, env: &str) -> String {
    let dir = project_dir(&[("docker-compose.yml", compose), (".env", env)]);
    load(dir.path(), &[]).unwrap_err().to_string()
}

#[test]
fn unsupported_keys_name_the_key_the_service_and_the_file() {
    let err = load_err("services:\n  gw:\n    image: x\n    privileged: true\n", "");
    assert!(err.contains("`privileged`"), "{err}");
    assert!(err.contains("service gw"), "{err}");
    assert!(err.contains("docker-compose.yml"), "{err}");
    let err = load_err(
        "services:\n  gw:\n    image: x\n    healthcheck:\n      start_interval: 5s\n",
        "",
    );
    assert!(err.contains("`healthcheck.start_interval`"), "{err}");
    let err = load_err(
        "services:\n  gw:\n    image: x\n    build:\n      context: .\n      ssh: [default]\n",
        "",
    );
    assert!(err.contains("`build.ssh`"), "{err}");
    // `secrets` is supported now (file-based); `include` still is not.
    let err = load_err("services:\n  gw:\n    image: x\ninclude: [other.yml]\n", "");
    assert!(err.contains("`include`"), "{err}");
    let err = load_err(
        "services:\n  gw:\n    image: x\n    cap_drop: !reset []\n",
        "",
    );
    assert!(err.contains("docker-compose.yml"), "{err}");
}

#[test]
fn bad_values_get_clear_errors() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "services:\n  gw:\n    image: x\n    environment:\n      T: ${TOKEN:?set TOKEN in .env}\n",
            "",
            &["TOKEN", "set TOKEN in .env", "environment.T"],
        ),
        (
            "services:\n  gw:\n    image: x\n    ports: [\"127.0.0.1:99999:80\"]\n",
            "",
            &["99999", "ports", "service gw"],
        ),
        (
            "services:\n  gw:\n    image: x\n    ports: [\"${PORT}:80\"]\n",
            "PORT=http\n",
            &["http", "ports"],
        ),
        (
            "services:\n  gw:\n    image: x\n    healthcheck:\n      interval: 10\n",
            "",
            &["healthcheck.interval", "duration"],
        ),
        (
            "services:\n  gw:\n    image: x\n    restart: sometimes\n",
            "",
            &["restart", "sometimes", "unless-stopped"],
        ),
        (
            "services:\n  gw:\n    image: x\n    cpus: ${CPUS:-lots}\n",
            "",
            &["cpus", "lots"],
        ),
        (
            "services:\n  gw:\n    image: x\n    mem_limit: 1 gigabyte\n",
            "",
            &["mem_limit"],
        ),
        (
            "services:\n  gw:\n    build: .\n    depends_on: [db]\n",
            "",
            &["db", "depends_on"],
        ),
        (
            "services:\n  gw:\n    image: x\n    volumes: [\"data:/data\"]\n",
            "",
            &["undefined volume", "data"],
        ),
        (
            "services:\n  gw:\n    image: x\n    command: ${BAD\n",
            "",
            &["invalid interpolation", "command"],
        ),
        (
            "services:\n  gw:\n    env_file: [missing.env]\n    image: x\n",
            "",
            &["missing.env", "required: false"],
        ),
        (
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
            "",
            &["cycle"],
        ),
        (
            "services:\n  gw:\n    restart: always\n",
            "",
            &["neither `image` nor `build`"],
        ),
        ("services: [\n", "", &["invalid YAML"]),
        (
            "services:\n  gw:\n    image: x\n",
            "BROKEN LINE\n",
            &[".env", "line 1"],
        ),
    ];
    for (compose, env, needles) in cases {
        let err = load_err(compose, env);
        for n in *needles {
            assert!(err.contains(n), "{compose}\n→ {err}\n(missing {n:?})");
        }
    }
}

#[test]
fn no_compose_file_says_where_it_looked() {
    let dir = project_dir(&[]);
    let err = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(err.contains("compose.yaml"), "{err}");
    assert!(err.contains("compose_files"), "{err}");
}

/// `env_file` naming a token file (the agent's own, or any secret outside the checkout and the
/// owner's home, directly or through a symlink) is refused, and no error carries its text.
#[test]
fn env_files_outside_the_checkout_and_token_files_are_refused_without_echo() {
    let token = "3f9a0c1d2e3f4a5b6c7d8e9f00112233";
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let with_env_file =
        |path: &str| format!("services:\n  gw:\n    image: x\n    env_file: [\"{path}\"]\n");
    let dir = project_dir(&[(
        "docker-compose.yml",
        &with_env_file(token_file.to_str().unwrap()),
    )]);
    let env = [("HOME", home.path().to_str().unwrap())];
    let err = load(dir.path(), &env).unwrap_err();
    assert!(matches!(err, ComposeError::EnvFileOutside { .. }), "{err}");
    assert!(!err.to_string().contains("3f9a"), "{err}");

    // A symlink in the checkout (or in the home) to the token file is the same file.
    std::os::unix::fs::symlink(&token_file, dir.path().join("linked.env")).unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        with_env_file("linked.env"),
    )
    .unwrap();
    let err = load(dir.path(), &env).unwrap_err();
    assert!(matches!(err, ComposeError::EnvFileOutside { .. }), "{err}");
    std::os::unix::fs::symlink(&token_file, home.path().join("t.env")).unwrap();
    let in_home = home.path().join("t.env");
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        with_env_file(in_home.to_str().unwrap()),
    )
    .unwrap();
    let err = load(dir.path(), &env).unwrap_err();
    assert!(matches!(err, ComposeError::EnvFileOutside { .. }), "{err}");

    // A token file inside the home is read, but the parse error names only the line.
    std::fs::copy(&token_file, home.path().join("copy.env")).unwrap();
    let copy = home.path().join("copy.env");
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        with_env_file(copy.to_str().unwrap()),
    )
    .unwrap();
    let err = load(dir.path(), &env).unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
    assert!(!err.contains("3f9a"), "{err}");

    // `.env` itself: a symlink out of the checkout is refused too.
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  gw:\n    image: x\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&token_file, dir.path().join(".env")).unwrap();
    let err = load(dir.path(), &env).unwrap_err();
    assert!(matches!(err, ComposeError::EnvFileOutside { .. }), "{err}");
}
