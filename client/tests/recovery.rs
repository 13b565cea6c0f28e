//! The agent as a real process: `kill -9` in the middle of an update, then a restart that puts
//! the previous container back; and an update driven through a real sshd stdio tunnel.
use std::{process::Command, time::Duration};

use clawops::{Client, ConnectOptions, Target, demo::DemoApp, proto};
use testkit::{
    agent::{AgentProcess, TEST_TOKEN, client_binary},
    cleanup::AppGuard,
    sshd::Sshd,
};

/// The app's agent config as the `extra` part of an [`AgentProcess`] config.
fn agent_for(app: &DemoApp, readiness_secs: u64) -> AgentProcess {
    let mut config = app.config();
    config.readiness.timeout_secs = readiness_secs;
    let mut value = toml::Value::try_from(&config).unwrap();
    let table = value.as_table_mut().unwrap();
    for key in ["listen", "token_file", "state_dir"] {
        table.remove(key);
    }
    AgentProcess::start(&toml::to_string(&value).unwrap())
}

async fn connect(agent: &AgentProcess) -> Client {
    Client::connect(&ConnectOptions {
        target: Target::Addr(agent.url()),
        agent_port: 0,
        token: TEST_TOKEN.into(),
        ssh_options: vec![],
    })
    .await
    .unwrap()
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

async fn update(client: &mut Client) -> proto::DeployResult {
    client
        .update_to_end(proto::UpdateRequest::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_readiness_then_restart_puts_the_previous_container_back() {
    let dir = tempfile::tempdir().unwrap();
    let app = DemoApp::create(dir.path(), &testkit::unique("k")[2..]).unwrap();
    let _cleanup = AppGuard::new(&app.project, &app.image_repo);
    let mut agent = agent_for(&app, 60);
    let mut client = connect(&agent).await;
    let v1 = update(&mut client).await;
    assert_eq!(
        v1.outcome,
        proto::Outcome::Succeeded as i32,
        "{}",
        v1.message
    );
    wait_served(&app, "v1").await;

    // v2 never becomes ready; kill the agent while it waits.
    app.commit("v2", "never-ready", "v2").unwrap();
    let mut stream = client
        .agent
        .update(proto::UpdateRequest::default())
        .await
        .unwrap()
        .into_inner();
    loop {
        let e = stream.message().await.unwrap().expect("update ended early");
        if let Some(proto::deploy_event::Event::Phase(p)) = e.event
            && p.phase == proto::Phase::Readiness as i32
            && p.status == proto::PhaseStatus::Started as i32
        {
            break;
        }
    }
    assert!(
        app.served_version().await.is_none(),
        "v1 is stopped during the swap"
    );
    agent.kill9();
    drop(stream);

    agent.restart();
    let mut client = connect(&agent).await;
    wait_served(&app, "v1").await;
    let status = client
        .agent
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.lock_holder.is_none());
    assert_eq!(status.deployed_sha, v1.to_sha);
    let running: Vec<_> = status
        .containers
        .iter()
        .filter(|c| c.state == "running")
        .collect();
    assert_eq!(running.len(), 1, "{:?}", status.containers);
    let history = client
        .agent
        .history(proto::HistoryRequest { limit: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries[0].result, "interrupted");
    assert!(
        history.entries[0]
            .message
            .contains("put the previous container back"),
        "{}",
        history.entries[0].message
    );

    // And the next update goes through.
    app.commit("v3", "ok", "v3").unwrap();
    let v3 = update(&mut client).await;
    assert_eq!(
        v3.outcome,
        proto::Outcome::Succeeded as i32,
        "{}",
        v3.message
    );
    wait_served(&app, "v3").await;
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
