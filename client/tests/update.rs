//! Update, rollback and crash recovery end to end: real git remotes, real builds on the real
//! engine, a busybox gateway that a commit can break.

mod support;

use std::time::Duration;

use clawops::{Client, demo::DemoApp, proto};
use support::demo_app;
use testkit::{
    cleanup::AppGuard,
    deploy::{self, assert_outcome, assert_says},
    gateway,
};

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

/// Updates, insisting that it fails and says each of `parts`.
async fn update_fails(client: &mut Client, parts: &[&str]) {
    let failed = update(client).await;
    assert_outcome(&failed, proto::Outcome::Failed);
    assert_says(&failed, parts);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_deploys_noops_and_rolls_back_broken_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let mut client = local(&app, 8).await;

    // First deploy: builds v1 and creates the container.
    let first = update(&mut client).await;
    assert_outcome(&first, proto::Outcome::Succeeded);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));

    // A new commit upstream: fast-forward, build, swap.
    let v2 = app.commit("v2", "ok", "v2").unwrap();
    let second = update(&mut client).await;
    assert_outcome(&second, proto::Outcome::Succeeded);
    assert_eq!(second.to_sha, v2);
    assert_eq!(second.from_sha, first.to_sha);
    assert!(second.image.ends_with(&v2[..12]), "{}", second.image);
    assert!(!second.snapshot.is_empty());
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    // Nothing new: no build, no restart.
    let before = gateway::container(&app.project).await;
    let noop = update(&mut client).await;
    assert_outcome(&noop, proto::Outcome::UpToDate);
    assert_eq!(gateway::container(&app.project).await, before);

    // A version that exits at start: rolled back, v2 serves again.
    let v3 = app.commit("v3", "exit", "v3: broken config").unwrap();
    let broken = update(&mut client).await;
    assert_outcome(&broken, proto::Outcome::RolledBack);
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
    assert_outcome(&hung, proto::Outcome::RolledBack);
    assert_says(&hung, &["ready"]);
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    // The journal tells the story, newest first.
    let history = deploy::history(&mut client.agent, 10).await;
    let results: Vec<_> = history.iter().map(|e| e.result.as_str()).collect();
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
    let status = deploy::status(&mut client.agent).await;
    assert_eq!(status.deployed_sha, v2);

    // A fixed version deploys again.
    let v5 = app.commit("v5", "ok", "v5: fixed").unwrap();
    let fixed = update(&mut client).await;
    assert_outcome(&fixed, proto::Outcome::Succeeded);
    assert_eq!(fixed.to_sha, v5);
    assert_eq!(app.served_version().await.as_deref(), Some("v5"));

    // Rollback returns to the previous healthy version from its kept image.
    let back = client
        .rollback_to_end(proto::RollbackRequest::default())
        .await
        .unwrap();
    assert_outcome(&back, proto::Outcome::Succeeded);
    assert_eq!(back.to_sha, v2);
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_build_or_a_diverged_checkout_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let mut client = local(&app, 8).await;
    assert_outcome(&update(&mut client).await, proto::Outcome::Succeeded);
    let serving = gateway::container(&app.project).await;

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
    update_fails(&mut client, &["build failed", "nothing was stopped"]).await;
    assert_eq!(gateway::container(&app.project).await, serving);
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
    update_fails(&mut client, &["diverged", "git rebase"]).await;
    assert_eq!(
        testkit::git::git(&app.checkout, &["rev-parse", "HEAD"]),
        local_head
    );
    assert_eq!(
        std::fs::read_to_string(app.checkout.join(".env")).unwrap(),
        env_before
    );
    assert_eq!(gateway::container(&app.project).await, serving);

    // A modified tracked file is never overwritten.
    testkit::git::git(&app.checkout, &["reset", "-q", "--hard", "origin/main"]);
    std::fs::write(app.checkout.join("gateway.sh"), "# edited on the VM\n").unwrap();
    app.commit("v3", "ok", "v3").unwrap();
    update_fails(&mut client, &["gateway.sh"]).await;
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
    assert_outcome(&hostile, proto::Outcome::Failed);
    assert_says(&hostile, &["not an acceptable git ref"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_update_while_one_runs_is_aborted_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
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
    let status = deploy::status(&mut client.agent).await;
    assert_eq!(status.lock_holder.unwrap().requested_by, "first");
    while first.message().await.unwrap().is_some() {}
    let status = deploy::status(&mut client.agent).await;
    assert!(status.lock_holder.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_does_not_interrupt_the_update() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let mut client = local(&app, 8).await;
    let stream = client
        .agent
        .update(proto::UpdateRequest::default())
        .await
        .unwrap();
    drop(stream);
    for _ in 0..600 {
        let h = deploy::history(&mut client.agent, 1).await;
        if h.first().is_some_and(|e| e.result != "running") {
            assert_eq!(h[0].result, "succeeded", "{}", h[0].message);
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
    let (app, cleanup) = demo_app(dir);
    let mut client = local(&app, 8).await;
    let first = update(&mut client).await;
    assert_outcome(&first, proto::Outcome::Succeeded);
    let before = gateway::container(&app.project).await;
    (app, cleanup, client, first, before)
}

/// Commits the demo's compose file with one more volume on the gateway; returns the sha.
fn commit_bind(app: &DemoApp, volume: &str) -> String {
    let state = "      - ${OPENCLAW_CONFIG_DIR}:/home/node/.openclaw\n";
    let compose = clawops::demo::COMPOSE.replace(state, &format!("{state}      - {volume}\n"));
    assert_ne!(compose, clawops::demo::COMPOSE);
    let message = format!("bind {volume}");
    app.commit_files(&[("docker-compose.yml", &compose)], &message)
        .unwrap()
}

/// The deploy policy (issue: the repository is root on the VM): a pushed compose change that
/// binds the host's root is refused before anything stops, with the service, key, value and
/// the setting that would allow it, and the deployed gateway keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_binding_the_host_is_refused_and_the_gateway_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup, mut client, _first, before) = deployed(dir.path()).await;

    commit_bind(&app, "/:/host");
    update_fails(
        &mut client,
        &[
            "deploy policy",
            "nothing was stopped",
            "service openclaw-gateway: volumes \"/:/host\"",
            "bind_roots",
        ],
    )
    .await;
    assert_eq!(
        gateway::container(&app.project).await,
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
    let head = || testkit::git::git(&app.checkout, &["rev-parse", "HEAD"]);

    let target = commit_bind(&app, "./etc:/mnt/etc:ro");
    update_fails(
        &mut client,
        &[
            "widens what the repository asks",
            "binds",
            "/mnt/etc (ro)",
            "--accept-changes",
        ],
    )
    .await;
    assert_eq!(
        head(),
        first.to_sha,
        "the checkout is back at the deployed sha"
    );
    assert_eq!(
        gateway::container(&app.project).await,
        before,
        "nothing was stopped"
    );

    let accepted = run_update(
        &mut client,
        proto::UpdateRequest {
            accept_changes: true,
            ..Default::default()
        },
    )
    .await;
    assert_outcome(&accepted, proto::Outcome::Succeeded);
    assert_eq!(
        (accepted.to_sha.as_str(), head()),
        (target.as_str(), target.clone())
    );
}
