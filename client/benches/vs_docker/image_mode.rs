//! Image mode against `docker compose pull && docker compose up -d`, on the same loopback
//! registry (Debian's docker-registry) and the same busybox gateway images: a pull-mode update
//! to a new digest (total time and downtime) and a no-op update vs `docker compose pull`.
//! `CLAWOPS_BENCH_ONLY=image_mode` runs only this part.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use clawops::demo::DemoApp;
use testkit::{agent::AgentProcess, cleanup::AppGuard, gateway, registry::Registry};

use super::{Row, downtime_while, ms, timed, timed_chain};

pub fn rows(rt: &tokio::runtime::Runtime) -> Vec<Row> {
    let registry = Registry::start();
    let root = tempfile::tempdir().unwrap();
    let app = DemoApp::create(root.path(), &testkit::unique("i")[2..]).unwrap();
    let _guard = AppGuard::new(&app.project, &app.image_repo);
    let name = testkit::unique("bench-gw");
    let publish = |version: &str| {
        let files = gateway::files("ok", version);
        rt.block_on(registry.publish(&name, &["current"], &files, gateway::CMD))
    };
    let v1 = publish("v1");

    let mut config = app.config();
    config.app.image = Some(v1.reference.clone());
    let mut value = toml::Value::try_from(&config).unwrap();
    for key in ["listen", "token_file", "state_dir"] {
        value.as_table_mut().unwrap().remove(key);
    }
    let agent = AgentProcess::start(&toml::to_string(&value).unwrap());
    let cli = Cli::new(&agent);

    // The manual side: a compose project running the same registry image on its own port.
    let manual = root.path().join("manual");
    std::fs::create_dir_all(&manual).unwrap();
    let manual_port = testkit::free_port();
    let manual_project = format!("{}-manual", app.project);
    let _manual_guard = AppGuard::new(&manual_project, &format!("{}-manual", app.image_repo));
    std::fs::write(
        manual.join("docker-compose.yml"),
        format!(
            "services:\n  gateway:\n    image: {}\n    init: true\n    ports:\n      - \"127.0.0.1:{manual_port}:18789\"\n",
            v1.reference
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| -> Vec<String> {
        let mut v = vec![
            "docker-compose".to_string(),
            "-p".into(),
            manual_project.clone(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let pull_and_up = vec![compose(&["pull", "-q"]), compose(&["up", "-d"])];

    eprintln!("image mode: deploying v1 with clawops and with docker compose…");
    cli.run(&["update"], 1);
    timed_chain(1, &pull_and_up, &manual);

    publish("v2");
    let (mut ours_total, mut theirs_total) = Default::default();
    let ours_down = downtime_while(app.port, || {
        let t = Instant::now();
        cli.run(&["update"], 1);
        ours_total = t.elapsed();
    });
    let theirs_down = downtime_while(manual_port, || {
        let t = Instant::now();
        timed_chain(1, &pull_and_up, &manual);
        theirs_total = t.elapsed();
    });
    let served = |port: u16| {
        let out = Command::new("busybox")
            .args(["wget", "-qO-", &format!("http://127.0.0.1:{port}/healthz")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("\"v2\"")
    };
    assert!(
        served(app.port) && served(manual_port),
        "both sides must serve v2"
    );

    let noop_ours = cli.run(&["update"], 7);
    let noop_theirs = timed_chain(5, &[compose(&["pull", "-q"])], &manual);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let noop_ratio = ratio(noop_theirs, noop_ours);
    vec![
        Row {
            measure: "image mode: update to a new digest, total (pull + swap + ready)",
            ours: ms(ours_total),
            theirs: ms(theirs_total),
            ratio: format!("{:.2}×", ratio(ours_total, theirs_total)),
            target: "-",
            met: None,
        },
        Row {
            measure: "image mode: update downtime (probe every 10 ms)",
            ours: ms(ours_down),
            theirs: ms(theirs_down),
            ratio: format!("{:.2}×", ratio(ours_down, theirs_down)),
            target: "≤ 1× compose pull && up -d",
            met: Some(ours_down <= theirs_down),
        },
        Row {
            measure: "image mode: no-op update vs docker compose pull",
            ours: ms(noop_ours),
            theirs: ms(noop_theirs),
            ratio: format!("{noop_ratio:.1}× faster"),
            target: "≥ 5×",
            met: Some(noop_ratio >= 5.0),
        },
    ]
}

/// The `clawops` CLI against `agent`.
struct Cli {
    base: Vec<String>,
}

impl Cli {
    fn new(agent: &AgentProcess) -> Self {
        let binary = testkit::agent::client_binary();
        let base = vec![
            binary.display().to_string(),
            "--addr".into(),
            agent.url(),
            "--token-file".into(),
            agent.token_file().display().to_string(),
        ];
        Self { base }
    }

    /// Median wall time of `n` runs of `clawops ARGS`.
    fn run(&self, args: &[&str], n: usize) -> Duration {
        let mut argv: Vec<&str> = self.base.iter().map(String::as_str).collect();
        argv.extend_from_slice(args);
        timed(n, &argv, None, false)
    }
}
