//! Auto-update end to end: a real agent process with `[watch]`, a real git remote that "pushes"
//! (or, in image mode, a real registry on loopback that images are pushed to), real builds,
//! pulls and swaps on the real engine, and the CLI's `watch status|pause|resume`.

mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use chrono::{Timelike, Utc};
use clawops::{Client, demo::DemoApp, proto};
use clawops_agent::config::Config;
use support::{connect, demo_app};
use testkit::{agent::AgentProcess, gateway, registry::Registry, webhook::Webhook};

/// `app`'s agent config with `[watch]` on (1 s ticks, pausing after 2 failures).
fn watch_config(app: &DemoApp) -> Config {
    let mut config = app.config();
    config.readiness.timeout_secs = 8;
    config.watch.enabled = true;
    config.watch.interval_secs = 1;
    config.watch.max_failures = 2;
    config
}

/// An agent process for `app` with `[watch]` on and `window`.
fn agent_for(app: &DemoApp, window: Option<String>, notify_url: Option<String>) -> AgentProcess {
    let mut config = watch_config(app);
    config.watch.window = window;
    if let Some(url) = notify_url {
        config.notify = vec![toml::from_str(&format!("url = {url:?}")).unwrap()];
    }
    AgentProcess::start_with(&config)
}

fn cli(agent: &AgentProcess, args: &[&str]) -> std::process::Output {
    agent.cli(args)
}

fn cli_json(agent: &AgentProcess, args: &[&str]) -> serde_json::Value {
    let out = cli(agent, args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn watch_status(client: &mut Client) -> proto::WatchStatusReply {
    client
        .agent
        .watch_status(proto::WatchStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn history(client: &mut Client) -> Vec<proto::JournalEntry> {
    testkit::deploy::history(&mut client.agent, 100).await
}

/// The watcher's journal entries for `sha`.
async fn watch_entries(client: &mut Client, sha: &str) -> Vec<proto::JournalEntry> {
    history(client)
        .await
        .into_iter()
        .filter(|e| e.requested_by == "watch" && e.to_sha == sha)
        .collect()
}

/// Waits (up to `secs`) until the watch status is `wanted` (described by `what`); that status.
async fn wait_status(
    client: &mut Client,
    secs: u64,
    what: &str,
    wanted: impl Fn(&proto::WatchStatusReply) -> bool,
) -> proto::WatchStatusReply {
    let start = Instant::now();
    loop {
        let s = watch_status(client).await;
        if wanted(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "no {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the watcher's last result is `outcome` for `sha`.
async fn wait_result(client: &mut Client, sha: &str, outcome: &str) -> proto::WatchStatusReply {
    wait_status(client, 120, &format!("{outcome} for {sha}"), |s| {
        s.last
            .as_ref()
            .is_some_and(|l| l.sha == sha && l.outcome == outcome)
    })
    .await
}

/// Waits until a check failed with an error containing `part`.
async fn wait_check_error(client: &mut Client, part: &str) -> proto::WatchStatusReply {
    wait_status(client, 60, &format!("check error with {part:?}"), |s| {
        s.last_check_error.contains(part)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_deploys_new_commits_skips_rollbacks_and_pauses_after_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let hook = Webhook::start(0);
    let mut agent = agent_for(&app, None, Some(hook.url("/hook")));
    let mut client = connect(&agent).await;

    // Nothing deployed yet: the branch head is new.
    let v1 = String::from_utf8(
        Command::new("git")
            .args(["-C", app.upstream.to_str().unwrap(), "rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    wait_result(&mut client, &v1, "succeeded").await;
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));

    // A pushed commit is deployed through the update path, journaled as `by watch`.
    let v2 = app.commit("v2", "ok", "v2").unwrap();
    wait_result(&mut client, &v2, "succeeded").await;
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));
    assert_eq!(watch_entries(&mut client, &v2).await.len(), 1);
    let out = cli(&agent, &["history"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("watch"),
        "{out:?}"
    );

    // A broken commit rolls back and is not retried on the next ticks.
    let v3 = app.commit("v3", "exit", "v3 crashes").unwrap();
    let s = wait_result(&mut client, &v3, "rolled_back").await;
    assert_eq!(s.skipped_sha, v3);
    assert_eq!(s.consecutive_failures, 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(watch_entries(&mut client, &v3).await.len(), 1, "retried");
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    // A newer good commit is deployed, and the failure count starts again.
    let v4 = app.commit("v4", "ok", "v4 fixes it").unwrap();
    let s = wait_result(&mut client, &v4, "succeeded").await;
    assert_eq!((s.consecutive_failures, s.skipped_sha.as_str()), (0, ""));

    // max_failures (2) consecutive failures pause watching, with a notification.
    let v5 = app.commit("v5", "exit", "v5 crashes").unwrap();
    wait_result(&mut client, &v5, "rolled_back").await;
    let v6 = app.commit("v6", "exit", "v6 crashes too").unwrap();
    let s = wait_result(&mut client, &v6, "rolled_back").await;
    assert!(s.paused, "{s:?}");
    assert!(s.paused_reason.contains("2 consecutive"), "{s:?}");
    assert!(s.next_check.is_none());
    hook.wait_for(Duration::from_secs(10), |r| {
        r.body["event"] == "watch_paused"
    });
    hook.wait_for(Duration::from_secs(10), |r| {
        r.body["event"] == "update_rolled_back" && r.body["details"]["to_sha"] == v6.as_str()
    });

    // The pause survives a restart; a good commit waits while paused.
    agent.restart();
    let mut client = connect(&agent).await;
    let status = cli_json(&agent, &["watch", "status", "--json"]);
    assert_eq!(status["paused"], true, "{status}");
    assert_eq!(status["last"]["sha"], v6.as_str());
    let v7 = app.commit("v7", "ok", "v7").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(watch_entries(&mut client, &v7).await.is_empty());

    // `watch resume` resumes; resuming again says it is not paused (exit 1).
    let resumed = cli_json(&agent, &["watch", "resume", "--json"]);
    assert_eq!(resumed["paused"], false);
    wait_result(&mut client, &v7, "succeeded").await;
    assert_eq!(app.served_version().await.as_deref(), Some("v7"));
    let again = cli(&agent, &["watch", "resume"]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not paused"),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_the_window_nothing_is_deployed_and_status_shows_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    // A window that opens twelve hours from now.
    let opens = Utc::now() + chrono::Duration::hours(12);
    let window = format!("{:02}:00-{:02}:30", opens.hour(), opens.hour());
    let agent = agent_for(&app, Some(window.clone()), None);
    let mut client = connect(&agent).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(history(&mut client).await.is_empty());
    let s = watch_status(&mut client).await;
    assert!(s.enabled && !s.paused);
    assert_eq!(s.window, format!("{window} UTC"));
    assert!(s.last_check.is_none(), "checked outside the window: {s:?}");
    let next = s.next_check.unwrap().seconds;
    let expected = opens
        .with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .timestamp();
    assert!((next - expected).abs() <= 3600, "{next} vs {expected}");

    let human = cli(&agent, &["watch", "status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("next check") && text.contains(&window),
        "{text}"
    );

    // Pausing by hand: no next check, and the reason shows.
    let paused = cli_json(
        &agent,
        &["watch", "pause", "--reason", "release freeze", "--json"],
    );
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["paused_reason"], "release freeze");
    assert!(paused["next_check"].is_null());
    let twice = cli(&agent, &["watch", "pause"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already paused"));
}

/// An agent watching the registry image `reference` (`[app] image`).
fn image_agent(app: &DemoApp, reference: &str) -> AgentProcess {
    let mut config = watch_config(app);
    config.app.image = Some(reference.to_owned());
    AgentProcess::start_with(&config)
}

#[tokio::test(flavor = "multi_thread")]
async fn image_mode_watches_the_registry_digest_of_the_tag() {
    let mut registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let (name, v1) = registry.publish_new_gateway("current").await;
    let agent = image_agent(&app, &v1.reference);
    let mut client = connect(&agent).await;
    let s = watch_status(&mut client).await;
    assert_eq!(s.source, format!("registry {}", v1.reference));

    // Nothing deployed yet: the tag's digest is new, and is pulled and started.
    wait_result(&mut client, &v1.digest, "succeeded").await;
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));

    // The tag moves: the new digest is deployed through the update path, `by watch`.
    let v2 = registry
        .publish_gateway(&name, &["current"], "ok", "v2")
        .await;
    wait_result(&mut client, &v2.digest, "succeeded").await;
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));
    let running = testkit::container::inspect(&gateway::container_name(&app.project)).await;
    let pulled = format!("{}@{}", v2.reference.rsplit_once(':').unwrap().0, v2.digest);
    assert!(running.repo_digests.contains(&pulled), "{running:?}");
    assert_eq!(watch_entries(&mut client, &v2.digest).await.len(), 1);

    // While the running digest is the tag's, checks deploy nothing (no journal entries).
    let entries = history(&mut client).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(history(&mut client).await.len(), entries, "a no-op was run");

    // A digest that exits at start rolls back and is not retried on the next checks.
    let v3 = registry
        .publish_gateway(&name, &["current"], "exit", "v3")
        .await;
    let s = wait_result(&mut client, &v3.digest, "rolled_back").await;
    assert_eq!(s.skipped_sha, v3.digest);
    assert_eq!(s.consecutive_failures, 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        watch_entries(&mut client, &v3.digest).await.len(),
        1,
        "retried"
    );
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    let human = cli(&agent, &["watch", "status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    for part in [
        format!("registry {}", v1.reference),
        format!("last result {}", &v3.digest[..19]),
        "rolled_back".to_owned(),
        "waiting for a newer".to_owned(),
    ] {
        assert!(text.contains(&part), "{part:?} in {text}");
    }

    // The registry goes away: the check fails clearly, and nothing running is touched.
    let serving = testkit::container::inspect(&gateway::container_name(&app.project)).await;
    registry.stop();
    wait_check_error(&mut client, "could not ask the registry").await;
    let status = cli_json(&agent, &["watch", "status", "--json"]);
    let error = status["last_check_error"].as_str().unwrap();
    assert!(
        error.contains(&v1.reference) && error.contains("Is the registry up"),
        "{status}"
    );
    assert_eq!(status["last"]["sha"], v3.digest.as_str(), "{status}");
    assert_eq!(status["paused"], false, "{status}");
    assert_eq!(
        testkit::container::inspect(&gateway::container_name(&app.project)).await,
        serving
    );
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));
    assert_eq!(history(&mut client).await.len(), entries + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_registry_check_says_what_to_configure_and_deploys_nothing() {
    let registry = Registry::start_with_auth("deployer", "pa55-w0rd");
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let (_, v1) = registry.publish_new_gateway("1.0").await;
    let agent = image_agent(&app, &v1.reference);
    let mut client = connect(&agent).await;
    let s = wait_check_error(&mut client, "the registry refused").await;
    assert!(s.last_check_error.contains("auth_file"), "{s:?}");
    assert!(s.last.is_none() && !s.paused, "{s:?}");
    assert!(history(&mut client).await.is_empty());
}
