//! "agent idle RSS with watching on": an agent with `[watch]` checking the branch every second
//! (`git ls-remote`, 300× the default rate) and sampling memory every second, after its watcher
//! has deployed the app once. Judged like the plain idle row: ≤ 8 MiB and flat over the second
//! half of the window.
use std::time::{Duration, Instant};

use clawops::demo::DemoApp;
use testkit::{agent::AgentProcess, cleanup::AppGuard};

use super::{Row, rss_kib};

pub fn rows(rt: &tokio::runtime::Runtime, idle_secs: u64) -> Vec<Row> {
    let root = tempfile::tempdir().unwrap();
    let app = DemoApp::create(root.path(), &testkit::unique("bw")[3..]).unwrap();
    let _guard = AppGuard::new(&app.project, &app.image_repo);
    let mut config = app.config();
    config.memory.sample_interval_secs = 1;
    config.watch.enabled = true;
    config.watch.interval_secs = 1;
    let mut value = toml::Value::try_from(&config).unwrap();
    for key in ["listen", "token_file", "state_dir"] {
        value.as_table_mut().unwrap().remove(key);
    }
    let agent = AgentProcess::start(&toml::to_string(&value).unwrap());
    let pid = agent.pid().unwrap();

    // The watcher's first tick deploys v1 (nothing was deployed).
    let deadline = Instant::now() + Duration::from_secs(180);
    while rt.block_on(app.served_version()).as_deref() != Some("v1") {
        assert!(Instant::now() < deadline, "the watcher did not deploy v1");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after_deploy = rss_kib(pid);
    let settle = 2 * clawops_agent::trim::QUIET + Duration::from_secs(5);
    eprintln!(
        "sampling memory in an idle agent with watching on for {} s…",
        settle.as_secs() + idle_secs
    );
    std::thread::sleep(settle);
    let settled = rss_kib(pid);
    let mut readings = Vec::new();
    for _ in 0..idle_secs {
        std::thread::sleep(Duration::from_secs(1));
        readings.push(rss_kib(pid));
    }
    let mid = readings[readings.len() / 2];
    let end = *readings.last().unwrap();
    let peak = readings[readings.len() / 2..]
        .iter()
        .copied()
        .max()
        .unwrap_or(end);
    let mib = |kib: u64| kib as f64 / 1024.0;
    vec![Row {
        measure: "agent idle RSS with watching on (1 check/s, 1 sample/s)",
        ours: format!(
            "{:.1} MiB after its deploy, {:.1} MiB once quiet, {:.1} MiB {} s later, {:.1} MiB \
             {idle_secs} s later (peak {:.1} MiB in the second half)",
            mib(after_deploy),
            mib(settled),
            mib(mid),
            idle_secs / 2,
            mib(end),
            mib(peak),
        ),
        theirs: "-".into(),
        ratio: "-".into(),
        target: "≤ 8 MiB, no growth",
        met: Some(end <= 8 * 1024 && end <= mid + 64),
    }]
}
