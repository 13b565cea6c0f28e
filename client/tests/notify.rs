//! Notifications end to end: a real agent process POSTing to receivers on 127.0.0.1 that fail
//! their first attempts or never answer; `clawops notify test`; config errors for `[watch]` and
//! `[[notify]]`.

mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use clawops::{demo::DemoApp, proto};
use support::connect;
use testkit::{
    agent::{AgentProcess, agent_binary},
    cleanup::AppGuard,
    deploy::assert_outcome,
    webhook::Webhook,
};

fn notify_toml(targets: &[(&str, &str)]) -> String {
    targets
        .iter()
        .map(|(url, format)| format!("[[notify]]\nurl = {url:?}\nformat = {format:?}\n"))
        .collect()
}

#[test]
fn a_failed_update_is_delivered_on_the_third_attempt_in_each_format() {
    // An update that fails at once: the "checkout" is not a git repository.
    let repo = tempfile::tempdir().unwrap();
    let hooks: Vec<Webhook> = (0..3).map(|_| Webhook::start(2)).collect();
    let urls: Vec<String> = hooks
        .iter()
        .map(|h| h.url("/services/T0/B0/s3cret"))
        .collect();
    let targets = [
        (urls[0].as_str(), "json"),
        (urls[1].as_str(), "slack"),
        (urls[2].as_str(), "discord"),
    ];
    let agent = AgentProcess::start(&format!(
        "[app]\nrepo = {:?}\n{}",
        repo.path().display().to_string(),
        notify_toml(&targets)
    ));
    let out = agent.cli(&["update", "--requested-by", "ci"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    for hook in &hooks {
        hook.wait_for(Duration::from_secs(20), |r| r.answered == 200);
        let got = hook.received();
        assert_eq!(
            got.iter().map(|r| r.answered).collect::<Vec<_>>(),
            [500, 500, 200],
            "{got:?}"
        );
        assert!(got.iter().all(|r| r.path == "/services/T0/B0/s3cret"));
    }
    let json = &hooks[0].received()[2].body;
    assert_eq!(json["event"], "update_failed", "{json}");
    assert_eq!(json["details"]["requested_by"], "ci");
    assert_eq!(json["details"]["outcome"], "failed");
    assert!(json["text"].as_str().unwrap().contains("failed"), "{json}");
    let slack = &hooks[1].received()[2].body;
    assert!(
        slack["text"].as_str().unwrap().starts_with("[clawops "),
        "{slack}"
    );
    let discord = &hooks[2].received()[2].body;
    assert!(discord["content"].as_str().unwrap().contains("failed"));
    assert!(discord.get("text").is_none());

    // The webhook paths are secrets: the agent logs only scheme and host.
    agent.wait_log_lines(
        "notification delivered",
        hooks.len(),
        Duration::from_secs(20),
    );
    let log = agent.log();
    assert!(!log.contains("s3cret"), "{log}");
}

#[test]
fn notify_test_reports_each_target() {
    let ok = Webhook::start(0);
    let failing = Webhook::start(usize::MAX);
    let closed = testkit::free_port();
    let dead = format!("http://127.0.0.1:{closed}/hooks/s3cret");
    let agent = AgentProcess::start(&notify_toml(&[
        (&ok.url("/a/s3cret"), "slack"),
        (&failing.url("/b/s3cret"), "json"),
        (&dead, "discord"),
    ]));
    let out = agent.cli(&["notify", "test", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("s3cret"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["delivered"], true);
    assert_eq!(results[0]["http_status"], 200);
    assert_eq!(
        results[0]["target"],
        format!("http://127.0.0.1:{}/…", ok.port)
    );
    assert_eq!(results[1]["delivered"], false);
    assert!(results[1]["error"].as_str().unwrap().contains("500"));
    assert_eq!(results[2]["delivered"], false);
    assert_eq!(results[2]["format"], "discord");
    // One attempt each, the test event.
    assert_eq!(ok.received().len(), 1);
    assert_eq!(failing.received().len(), 1);
    assert!(
        ok.received()[0].body["text"]
            .as_str()
            .unwrap()
            .contains("test")
    );

    let human = agent.cli(&["notify", "test"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("ok ") && text.contains("FAILED"), "{text}");

    let none = AgentProcess::start("");
    let out = none.cli(&["notify", "test"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("[[notify]]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_receiver_does_not_delay_updates() {
    let dir = tempfile::tempdir().unwrap();
    let app = DemoApp::create(dir.path(), &testkit::unique_id()).unwrap();
    let _cleanup = AppGuard::new(&app.project, &app.image_repo);
    let hook = Webhook::hanging();
    let mut config = app.config();
    config.notify = vec![toml::from_str(&format!("url = {:?}", hook.url("/x"))).unwrap()];
    let agent = AgentProcess::start_with(&config);
    let mut client = connect(&agent).await;

    for version in ["v2", "v3"] {
        app.commit(version, "ok", version).unwrap();
        let start = Instant::now();
        let r = client
            .update_to_end(proto::UpdateRequest::default())
            .await
            .unwrap();
        let wall = start.elapsed();
        assert_outcome(&r, proto::Outcome::Succeeded);
        // The notification is queued, not awaited: the call ends with the deploy.
        let overhead = wall.saturating_sub(Duration::from_millis(r.duration_ms));
        eprintln!(
            "{version}: deploy {} ms, call {} ms, overhead {} ms",
            r.duration_ms,
            wall.as_millis(),
            overhead.as_millis()
        );
        assert!(overhead < Duration::from_secs(2), "{overhead:?}");
    }
    hook.wait_for(Duration::from_secs(5), |r| {
        r.body["event"] == "update_succeeded"
    });
}

/// `check-config` and agent start refuse bad `[watch]`/`[[notify]]` values with exit 2,
/// naming the key, and never echo a webhook URL.
#[test]
fn bad_watch_and_notify_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 9] = [
        ("[watch]\nwindow = \"25:00-26:00\"\n", "watch.window"),
        ("[watch]\nwindow = \"2-5\"\n", "watch.window"),
        ("[watch]\nwindow = \"03:00-03:00\"\n", "watch.window"),
        ("[watch]\ntimezone = \"Mars/Base\"\n", "watch.timezone"),
        ("[watch]\ninterval_secs = 0\n", "watch.interval_secs"),
        ("[watch]\nintervall_secs = 5\n", "intervall_secs"),
        ("[[notify]]\nurl = \"ftp://h/s3cret\"\n", "notify.url"),
        (
            "[[notify]]\nurl = \"https://h/s3cret\"\nevents = [\"deploy\"]\n",
            "unknown variant `deploy`",
        ),
        (
            "[[notify]]\nurl = \"https://h/s3cret\"\nformat = \"teams\"\n",
            "unknown variant `teams`",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for sub in [&["check-config"][..], &[][..]] {
            let out = Command::new(agent_binary())
                .arg("--config")
                .arg(&path)
                .args(sub)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
            assert!(stderr.contains(key), "{text}: {stderr}");
            if *key == "notify.url" {
                assert!(!stderr.contains("s3cret"), "{stderr}");
            }
        }
    }
    // A good config prints the webhook redacted.
    let path = dir.path().join("good.toml");
    std::fs::write(
        &path,
        "[watch]\nenabled = true\nwindow = \"02:00-05:00 Europe/Berlin\"\n\
         [[notify]]\nurl = \"https://hooks.example/services/s3cret\"\nformat = \"slack\"\n",
    )
    .unwrap();
    let out = Command::new(agent_binary())
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("https://hooks.example/…"), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
}
