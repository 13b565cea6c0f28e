//! Shared by the client's integration tests, the fault suite (`faults_*.rs`) most: the demo
//! app with its cleanup guard, a real agent process configured for it, a client, and the checks
//! every fault ends with ("one healthy container serves"). Each test binary uses a subset, hence
//! the `dead_code` allowance.
#![allow(dead_code)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use clawops::{Client, ConnectOptions, demo::DemoApp, proto};
use clawops_agent::config::Config;
use testkit::{agent::AgentProcess, cleanup::AppGuard};

/// The GCE metadata server is not there in CI; a closed loopback port says so at once and keeps
/// every test on 127.0.0.0/8.
pub const NO_METADATA: &str = "http://127.0.0.1:9";

/// A fresh demo app (v1 pushed, not deployed) and the guard that removes its containers,
/// network and images however the test ends.
pub fn demo_app(dir: &Path) -> (DemoApp, AppGuard) {
    let app = DemoApp::create(dir, &testkit::unique_id()).unwrap();
    let guard = AppGuard::new(&app.project, &app.image_repo);
    (app, guard)
}

/// The app's agent config, with loopback-only metadata.
pub fn app_config(app: &DemoApp, readiness_secs: u64) -> Config {
    let mut config = app.config();
    config.readiness.timeout_secs = readiness_secs;
    config.memory.metadata_url = NO_METADATA.into();
    config
}

/// `config` as the `extra` part of an [`AgentProcess`] config (which sets listen, token and
/// state itself).
pub fn agent_toml(config: &Config) -> String {
    testkit::agent::extra_toml(config)
}

pub fn start_agent(config: &Config) -> AgentProcess {
    AgentProcess::start(&agent_toml(config))
}

pub async fn connect(agent: &AgentProcess) -> Client {
    connect_with(agent, &agent.token).await
}

pub async fn connect_with(agent: &AgentProcess, token: &str) -> Client {
    Client::connect(&ConnectOptions::direct(agent.url(), token))
        .await
        .unwrap()
}

pub fn outcome(r: &proto::DeployResult) -> proto::Outcome {
    proto::Outcome::try_from(r.outcome).unwrap()
}

pub async fn update(client: &mut Client) -> proto::DeployResult {
    client
        .update_to_end(proto::UpdateRequest::default())
        .await
        .unwrap()
}

/// Updates and insists that it succeeded.
pub async fn update_ok(client: &mut Client) -> proto::DeployResult {
    let r = update(client).await;
    assert_eq!(outcome(&r), proto::Outcome::Succeeded, "{}", r.message);
    r
}

/// Waits until the gateway serves one of `versions`; returns which.
pub async fn wait_served_any(app: &DemoApp, versions: &[&str], within: Duration) -> String {
    wait_served_or(app, versions, within, "").await
}

/// [`wait_served_any`], with `context` in the failure message.
pub async fn wait_served_or(
    app: &DemoApp,
    versions: &[&str],
    within: Duration,
    context: &str,
) -> String {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        last = app.served_version().await;
        if let Some(v) = &last
            && versions.contains(&v.as_str())
        {
            return v.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let containers = service_containers(&app.project, "openclaw-gateway").await;
    panic!(
        "the gateway does not serve any of {versions:?} (last answer: {last:?}); containers: \
         {containers:?}; {context}"
    );
}

pub async fn wait_served(app: &DemoApp, version: &str) {
    wait_served_any(app, &[version], Duration::from_secs(30)).await;
}

/// The engine's view of the service's containers: (id, name, state), any state.
pub async fn service_containers(project: &str, service: &str) -> Vec<(String, String, String)> {
    clawops_agent::docker::Engine::new(testkit::docker::connect().await)
        .project_containers(project)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.service == service)
        .map(|c| (c.id, c.name, c.state))
        .collect()
}

/// The one container of the gateway service: it must exist, be alone, run, and carry the
/// compose name. Returns its id.
pub async fn the_one_gateway(app: &DemoApp) -> String {
    the_one_gateway_or(app, "").await
}

/// [`the_one_gateway`], with `context` in the failure message.
pub async fn the_one_gateway_or(app: &DemoApp, context: &str) -> String {
    let all = service_containers(&app.project, "openclaw-gateway").await;
    assert_eq!(
        all.len(),
        1,
        "exactly one container of the service: {all:?}; {context}"
    );
    let (id, name, state) = &all[0];
    assert_eq!(state, "running", "{all:?}; {context}");
    assert_eq!(name, &format!("{}-openclaw-gateway-1", app.project));
    id.clone()
}

pub async fn status(client: &mut Client) -> proto::StatusReply {
    client
        .agent
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

pub async fn last_entry(client: &mut Client) -> proto::JournalEntry {
    client
        .agent
        .history(proto::HistoryRequest { limit: 1 })
        .await
        .unwrap()
        .into_inner()
        .entries
        .remove(0)
}

/// The median of `samples` (sorted in place).
pub fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `CLAWOPS_FAULT_ROUNDS` (default 1): how often the repeatable faults are tried, so a longer
/// soak locally uses the same tests as CI.
pub fn rounds() -> usize {
    std::env::var("CLAWOPS_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// One row of the fault table (printed; `cargo test -- --nocapture` shows it).
pub fn report(what: &str, tries: usize, lost: &str) {
    println!("FAULT | {what} | {tries} | {lost}");
}
