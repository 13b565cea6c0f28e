//! `clawops memory` end to end: the CLI binary → gRPC with the token → a real agent process
//! sampling the real /proc and engine, with a GCE-like metadata server on loopback.
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use testkit::{
    agent::AgentProcess,
    cleanup::ProjectGuard,
    gce::{E2_MICRO, FakeGce},
    unique,
};

fn run(agent: &AgentProcess, args: &[&str]) -> (i32, String, String) {
    let out = agent.cli(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An agent on a "GCE e2-micro" whose threshold makes any host look short of memory, so the
/// advisor speaks within seconds.
fn advising_agent(project: &str, gce: &FakeGce) -> AgentProcess {
    let repo = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&format!(
        "[app]\nrepo = {:?}\nproject = {project:?}\n\
         [memory]\nsample_interval_secs = 1\nmetadata_url = {:?}\nmetadata_timeout_ms = 5000\n\
         low_available_mb = 1073741824\nsustained_secs = 1\n",
        repo.path().display().to_string(),
        gce.url
    ));
    // Two samples make the condition sustained; on a loaded machine they take longer.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, stdout, stderr) = run(&agent, &["memory", "--fail-on-advice"]);
        if code == 1 && stdout.contains("e2-small") {
            return agent;
        }
        assert!(
            Instant::now() < deadline,
            "no advice within 30 s (exit {code}):\n{stdout}\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn memory_human_json_and_exit_codes() {
    let project = unique("memcli");
    let _guard = ProjectGuard::new(&project);
    let gce = FakeGce::start(&E2_MICRO, true);
    let agent = advising_agent(&project, &gce);

    let (code, stdout, stderr) = run(&agent, &["memory"]);
    assert_eq!(code, 0, "advice is not failure\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("openclaw-gateway · e2-micro · us-central1-a"),
        "{stdout}"
    );
    assert!(
        stdout.contains("advice      upgrade: Move openclaw-gateway from e2-micro to e2-small"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  run       clawops resize e2-small\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "gcloud compute instances set-machine-type openclaw-gateway --machine-type e2-small \
             --zone us-central1-a --project my-claw-project"
        ),
        "{stdout}"
    );
    let spark = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("available "))
        .unwrap_or_else(|| panic!("no sparkline: {stdout}"));
    assert!(spark.chars().any(|c| ('▁'..='█').contains(&c)), "{spark}");

    let (code, stdout, stderr) = run(&agent, &["memory", "--json", "--history"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["machine"]["machine_type"], "e2-micro");
    assert_eq!(report["advice"][0]["kind"], "upgrade");
    assert_eq!(report["advice"][0]["to_machine_type"], "e2-small");
    assert_eq!(report["advice"][0]["price_after_usd_month"], 12.23);
    assert_eq!(report["advice"][0]["commands"].as_array().unwrap().len(), 3);
    assert_eq!(
        report["advice"][0]["resize_command"],
        "clawops resize e2-small"
    );
    assert!(!report["history"]["samples"].as_array().unwrap().is_empty());
    assert!(report["host"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(report["agent_rss_bytes"].as_u64().unwrap() > 0);

    let (code, _, stderr) = run(&agent, &["memory", "--fail-on-advice"]);
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn memory_watch_refreshes() {
    let project = unique("memcli");
    let _guard = ProjectGuard::new(&project);
    let gce = FakeGce::start(&E2_MICRO, true);
    let agent = advising_agent(&project, &gce);
    let mut child = agent
        .cli_command(&["memory", "--watch", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Two reports, read as they come (a reader thread, so a silent client cannot hang this).
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (lines, got) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut reports: Vec<serde_json::Value> = Vec::new();
    while reports.len() < 2 {
        match got.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => reports.push(serde_json::from_str(&line).unwrap()),
            Err(e) => panic!("{} reports, then {e}: {reports:?}", reports.len()),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        reports
            .iter()
            .all(|r| r["host"]["available_bytes"].as_u64().is_some())
    );

    // With --fail-on-advice, watching stops at the first advice with exit code 1.
    let (code, stdout, _) = run(&agent, &["memory", "--watch", "1", "--fail-on-advice"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("e2-small"), "{stdout}");
}
