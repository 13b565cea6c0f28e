//! Update, rollback and crash recovery end to end: real git remotes, real builds on the real
//! engine, a busybox gateway that a commit can break.
use std::time::Duration;

use clawops::{Client, demo::DemoApp, proto};
use testkit::cleanup::AppGuard;

/// A fresh app, and a guard that removes its containers, network and images however the test
/// ends.
fn app(dir: &std::path::Path) -> (DemoApp, AppGuard) {
    let id = testkit::unique("t").trim_start_matches("t-").to_owned();
    let app = DemoApp::create(dir, &id).unwrap();
    let cleanup = AppGuard::new(&app.project, &app.image_repo);
    (app, cleanup)
}

async fn local(app: &DemoApp, readiness_secs: u64) -> Client {
    let mut config = app.config();
    config.readiness.timeout_secs = readiness_secs;
    clawops::local::connect_with_config(config).await.unwrap()
}

async fn run_update(client: &mut Client, req: proto::UpdateRequest) -> proto::DeployResult {
    client.update_to_end(req).await.unwrap()
}

async fn update(client: &mut Client) -> proto::DeployResult {
    run_update(client, proto::UpdateRequest::default()).await
}

fn outcome(r: &proto::DeployResult) -> proto::Outcome {
    proto::Outcome::try_from(r.outcome).unwrap()
}

async fn gateway_container(app: &DemoApp) -> (String, String) {
    let docker = testkit::docker::connect().await;
    let c = docker
        .inspect_container(&format!("{}-openclaw-gateway-1", app.project), None)
        .await
        .unwrap();
    (c.id.unwrap(), c.state.unwrap().started_at.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn update_deploys_noops_and_rolls_back_broken_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = app(dir.path());
    let mut client = local(&app, 8).await;

    // First deploy: builds v1 and creates the container.
    let first = update(&mut client).await;
    assert_eq!(
        outcome(&first),
        proto::Outcome::Succeeded,
        "{}",
        first.message
    );
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));

    // A new commit upstream: fast-forward, build, swap.
    let v2 = app.commit("v2", "ok", "v2").unwrap();
    let second = update(&mut client).await;
    assert_eq!(
        outcome(&second),
        proto::Outcome::Succeeded,
        "{}",
        second.message
    );
    assert_eq!(second.to_sha, v2);
    assert_eq!(second.from_sha, first.to_sha);
    assert!(second.image.ends_with(&v2[..12]), "{}", second.image);
    assert!(!second.snapshot.is_empty());
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    // Nothing new: no build, no restart.
    let before = gateway_container(&app).await;
    let noop = update(&mut client).await;
    assert_eq!(outcome(&noop), proto::Outcome::UpToDate, "{}", noop.message);
    assert_eq!(gateway_container(&app).await, before);

    // A version that exits at start: rolled back, v2 serves again.
    let v3 = app.commit("v3", "exit", "v3: broken config").unwrap();
    let broken = update(&mut client).await;
    assert_eq!(
        outcome(&broken),
        proto::Outcome::RolledBack,
        "{}",
        broken.message
    );
    assert_eq!(broken.to_sha, v3);
    assert!(broken.message.contains(&v2[..12]), "{}", broken.message);
    assert!(
        broken.last_logs.iter().any(|l| l.contains("fatal")),
        "{:?}",
        broken.last_logs
    );
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    // A version that never becomes ready: rolled back after the readiness timeout.
    app.commit("v4", "never-ready", "v4: hangs").unwrap();
    let hung = update(&mut client).await;
    assert_eq!(
        outcome(&hung),
        proto::Outcome::RolledBack,
        "{}",
        hung.message
    );
    assert!(hung.message.contains("ready"), "{}", hung.message);
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    // The journal tells the story, newest first.
    let history = client
        .agent
        .history(proto::HistoryRequest { limit: 10 })
        .await
        .unwrap()
        .into_inner();
    let results: Vec<_> = history.entries.iter().map(|e| e.result.as_str()).collect();
    assert_eq!(
        results,
        [
            "rolled_back",
            "rolled_back",
            "up_to_date",
            "succeeded",
            "succeeded"
        ]
    );
    let status = client
        .agent
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.deployed_sha, v2);

    // A fixed version deploys again.
    let v5 = app.commit("v5", "ok", "v5: fixed").unwrap();
    let fixed = update(&mut client).await;
    assert_eq!(
        outcome(&fixed),
        proto::Outcome::Succeeded,
        "{}",
        fixed.message
    );
    assert_eq!(fixed.to_sha, v5);
    assert_eq!(app.served_version().await.as_deref(), Some("v5"));

    // Rollback returns to the previous healthy version from its kept image.
    let back = client
        .rollback_to_end(proto::RollbackRequest::default())
        .await
        .unwrap();
    assert_eq!(
        outcome(&back),
        proto::Outcome::Succeeded,
        "{}",
        back.message
    );
    assert_eq!(back.to_sha, v2);
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_build_or_a_diverged_checkout_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = app(dir.path());
    let mut client = local(&app, 8).await;
    assert_eq!(
        outcome(&update(&mut client).await),
        proto::Outcome::Succeeded
    );
    let serving = gateway_container(&app).await;

    // A Dockerfile step that fails: nothing stopped, the step and its output reported.
    std::fs::write(
        app.upstream.join("Dockerfile"),
        clawops::demo::DOCKERFILE.replace(
            "COPY gateway.sh",
            "RUN [\"/bin/sh\", \"-c\", \"echo compiling; exit 3\"]\nCOPY gateway.sh",
        ),
    )
    .unwrap();
    app.commit("v2", "ok", "v2: broken build").unwrap();
    let failed = update(&mut client).await;
    assert_eq!(
        outcome(&failed),
        proto::Outcome::Failed,
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("build failed"),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("nothing was stopped"),
        "{}",
        failed.message
    );
    assert_eq!(gateway_container(&app).await, serving);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));

    // Upstream force-pushed while the checkout has a local commit: refused, nothing touched.
    testkit::git::git(
        &app.checkout,
        &[
            "-c",
            "user.name=op",
            "-c",
            "user.email=op@x",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "local tweak",
        ],
    );
    let local_head = testkit::git::git(&app.checkout, &["rev-parse", "HEAD"]);
    testkit::git::git(
        &app.upstream,
        &[
            "commit",
            "-q",
            "--amend",
            "--allow-empty",
            "-m",
            "rewritten",
        ],
    );
    testkit::git::git(
        &app.upstream,
        &["push", "-q", "--force", "origin", "HEAD:main"],
    );
    let env_before = std::fs::read_to_string(app.checkout.join(".env")).unwrap();
    let diverged = update(&mut client).await;
    assert_eq!(outcome(&diverged), proto::Outcome::Failed);
    assert!(
        diverged.message.contains("diverged"),
        "{}",
        diverged.message
    );
    assert!(
        diverged.message.contains("git rebase"),
        "{}",
        diverged.message
    );
    assert_eq!(
        testkit::git::git(&app.checkout, &["rev-parse", "HEAD"]),
        local_head
    );
    assert_eq!(
        std::fs::read_to_string(app.checkout.join(".env")).unwrap(),
        env_before
    );
    assert_eq!(gateway_container(&app).await, serving);

    // A modified tracked file is never overwritten.
    testkit::git::git(&app.checkout, &["reset", "-q", "--hard", "origin/main"]);
    std::fs::write(app.checkout.join("gateway.sh"), "# edited on the VM\n").unwrap();
    app.commit("v3", "ok", "v3").unwrap();
    let modified = update(&mut client).await;
    assert_eq!(outcome(&modified), proto::Outcome::Failed);
    assert!(
        modified.message.contains("gateway.sh"),
        "{}",
        modified.message
    );
    assert_eq!(
        std::fs::read_to_string(app.checkout.join("gateway.sh")).unwrap(),
        "# edited on the VM\n"
    );

    // Hostile refs never reach git as options.
    let hostile = run_update(
        &mut client,
        proto::UpdateRequest {
            git_ref: "--upload-pack=touch /tmp/pwned".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(outcome(&hostile), proto::Outcome::Failed);
    assert!(
        hostile.message.contains("not an acceptable git ref"),
        "{}",
        hostile.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_update_while_one_runs_is_aborted_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = app(dir.path());
    let mut client = local(&app, 8).await;
    let mut first = client
        .agent
        .update(proto::UpdateRequest {
            requested_by: "first".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let second = client
        .agent
        .update(proto::UpdateRequest {
            requested_by: "second".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(second.code(), tonic::Code::Aborted);
    assert!(
        second.message().contains("update") && second.message().contains("first"),
        "{}",
        second.message()
    );
    let status = client
        .agent
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.lock_holder.unwrap().requested_by, "first");
    while first.message().await.unwrap().is_some() {}
    let status = client
        .agent
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.lock_holder.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_does_not_interrupt_the_update() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = app(dir.path());
    let mut client = local(&app, 8).await;
    let stream = client
        .agent
        .update(proto::UpdateRequest::default())
        .await
        .unwrap();
    drop(stream);
    for _ in 0..600 {
        let h = client
            .agent
            .history(proto::HistoryRequest { limit: 1 })
            .await
            .unwrap()
            .into_inner();
        if h.entries.first().is_some_and(|e| e.result != "running") {
            assert_eq!(h.entries[0].result, "succeeded", "{}", h.entries[0].message);
            assert_eq!(app.served_version().await.as_deref(), Some("v1"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the update did not finish after its client left");
}

/// An app with v1 deployed: its guard, the client, the first result and the serving container.
async fn deployed(
    dir: &std::path::Path,
) -> (
    DemoApp,
    AppGuard,
    Client,
    proto::DeployResult,
    (String, String),
) {
    let (app, cleanup) = app(dir);
    let mut client = local(&app, 8).await;
    let first = update(&mut client).await;
    assert_eq!(
        outcome(&first),
        proto::Outcome::Succeeded,
        "{}",
        first.message
    );
    let before = gateway_container(&app).await;
    (app, cleanup, client, first, before)
}

/// The demo's compose file with one more volume on the gateway.
fn with_bind(volume: &str) -> String {
    let state = "      - ${OPENCLAW_CONFIG_DIR}:/home/node/.openclaw\n";
    let compose = clawops::demo::COMPOSE.replace(state, &format!("{state}      - {volume}\n"));
    assert_ne!(compose, clawops::demo::COMPOSE);
    compose
}

/// The deploy policy (issue: the repository is root on the VM): a pushed compose change that
/// binds the host's root is refused before anything stops, with the service, key, value and
/// the setting that would allow it, and the deployed gateway keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_binding_the_host_is_refused_and_the_gateway_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup, mut client, _first, before) = deployed(dir.path()).await;

    let hostile = with_bind("/:/host");
    assert_ne!(hostile, clawops::demo::COMPOSE);
    app.commit_files(&[("docker-compose.yml", &hostile)], "bind the host")
        .unwrap();
    let refused = update(&mut client).await;
    assert_eq!(
        outcome(&refused),
        proto::Outcome::Failed,
        "{}",
        refused.message
    );
    for part in [
        "deploy policy",
        "nothing was stopped",
        "service openclaw-gateway: volumes \"/:/host\"",
        "bind_roots",
    ] {
        assert!(
            refused.message.contains(part),
            "{part}: {}",
            refused.message
        );
    }
    assert_eq!(
        gateway_container(&app).await,
        before,
        "the old container was not touched"
    );
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));
}

/// A commit the policy allows but that widens access (a new bind) is shown and deployed only
/// with --accept-changes; refused, it leaves the checkout where it was and the gateway serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_widening_change_needs_accept_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup, mut client, first, before) = deployed(dir.path()).await;
    let head = || {
        let out = std::process::Command::new("git")
            .args([
                "-C",
                &app.checkout.display().to_string(),
                "rev-parse",
                "HEAD",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };

    let wider = with_bind("./etc:/mnt/etc:ro");
    let target = app
        .commit_files(&[("docker-compose.yml", &wider)], "bind more")
        .unwrap();
    let refused = update(&mut client).await;
    assert_eq!(
        outcome(&refused),
        proto::Outcome::Failed,
        "{}",
        refused.message
    );
    for part in [
        "widens what the repository asks",
        "binds",
        "/mnt/etc (ro)",
        "--accept-changes",
    ] {
        assert!(
            refused.message.contains(part),
            "{part}: {}",
            refused.message
        );
    }
    assert_eq!(
        head(),
        first.to_sha,
        "the checkout is back at the deployed sha"
    );
    assert_eq!(gateway_container(&app).await, before, "nothing was stopped");

    let accepted = run_update(
        &mut client,
        proto::UpdateRequest {
            accept_changes: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        outcome(&accepted),
        proto::Outcome::Succeeded,
        "{}",
        accepted.message
    );
    assert_eq!(
        (accepted.to_sha.as_str(), head()),
        (target.as_str(), target.clone())
    );
}
