//! The agent as a real process: an update driven through a real sshd stdio tunnel. (`kill -9` in
//! the middle of an update is in faults_kill.rs, at every phase.)
use std::{process::Command, time::Duration};

use clawops::demo::DemoApp;
use testkit::{
    agent::{AgentProcess, client_binary},
    cleanup::AppGuard,
    sshd::Sshd,
};

/// The app's agent config as the `extra` part of an [`AgentProcess`] config.
fn agent_for(app: &DemoApp, readiness_secs: u64) -> AgentProcess {
    let mut config = app.config();
    config.readiness.timeout_secs = readiness_secs;
    AgentProcess::start_with(&config)
}

async fn wait_served(app: &DemoApp, version: &str) {
    for _ in 0..100 {
        if app.served_version().await.as_deref() == Some(version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway does not serve {version}");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_through_a_real_ssh_tunnel_with_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let app = DemoApp::create(dir.path(), &testkit::unique("s")[2..]).unwrap();
    let _cleanup = AppGuard::new(&app.project, &app.image_repo);
    let agent = agent_for(&app, 30);
    let sshd = Sshd::start();
    let mut cmd = Command::new(client_binary());
    cmd.args([
        "--via",
        &sshd.url(),
        "--agent-port",
        &agent.addr.port().to_string(),
    ])
    .arg("--token-file")
    .arg(agent.token_file());
    for opt in sshd.client_options() {
        cmd.args(["--ssh-option", &opt]);
    }
    let out = cmd
        .args(["update", "--json"])
        .env_remove("CLAWOPS_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "phase" && l["phase"] == "build")
    );
    let result = lines.last().unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["outcome"], "succeeded");
    assert_eq!(result["to_sha"].as_str().unwrap().len(), 40);
    wait_served(&app, "v1").await;
}
