//! `update --rebase` / `[app] rebase = true`: local commits of the checkout carried onto each new
//! upstream commit, with real git and real builds; a conflict leaves the checkout byte-identical
//! and the gateway serving.

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use clawops::{Client, demo::DemoApp, proto};
use support::demo_app;
use testkit::{
    deploy::{assert_outcome, assert_says},
    gateway,
    git::git,
};

async fn local(app: &DemoApp, rebase: bool) -> Client {
    let mut config = app.config();
    config.readiness.timeout_secs = 8;
    config.app.rebase = rebase;
    clawops::local::connect_with_config(config).await.unwrap()
}

async fn update(client: &mut Client, rebase: bool) -> proto::DeployResult {
    let req = proto::UpdateRequest {
        rebase,
        ..Default::default()
    };
    client.update_to_end(req).await.unwrap()
}

async fn image_label(image: &str, label: &str) -> Option<String> {
    let docker = testkit::docker::connect().await;
    docker
        .inspect_image(image)
        .await
        .unwrap()
        .config?
        .labels?
        .remove(label)
}

/// Commits `text` appended to the checkout's Dockerfile, as an operator would on the VM.
fn local_commit(checkout: &Path, text: &str) -> String {
    let path = checkout.join("Dockerfile");
    let mut dockerfile = std::fs::read_to_string(&path).unwrap();
    dockerfile.push_str(text);
    std::fs::write(&path, dockerfile).unwrap();
    let id = ["-c", "user.name=op", "-c", "user.email=op@x"];
    git(
        checkout,
        &[&id[..], &["commit", "-qam", "local patch"]].concat(),
    );
    git(checkout, &["rev-parse", "HEAD"])
}

/// Everything a rebase could disturb: HEAD, `git status --porcelain=v2`, the index file's
/// bytes and every file of the working tree (digests, so that a failure prints briefly).
#[derive(Debug, PartialEq)]
struct CheckoutState {
    head: String,
    status: String,
    index: u64,
    files: BTreeMap<PathBuf, u64>,
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn checkout_state(checkout: &Path) -> CheckoutState {
    // git status refreshes the index's stat data; do that before reading the index's bytes.
    let status = git(
        checkout,
        &[
            "status",
            "--porcelain=v2",
            "--branch",
            "--untracked-files=all",
        ],
    );
    let mut files = BTreeMap::new();
    let mut dirs = vec![checkout.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.insert(path.clone(), digest(&std::fs::read(&path).unwrap()));
            }
        }
    }
    CheckoutState {
        head: git(checkout, &["rev-parse", "HEAD"]),
        status,
        index: digest(&std::fs::read(checkout.join(".git/index")).unwrap()),
        files,
    }
}

/// A refusal of local changes says which ways of customizing survive an update.
#[track_caller]
fn assert_points_to_customizations(r: &proto::DeployResult) {
    let ways = [
        "update --rebase",
        "[build] overlay",
        "docker-compose.override.yml",
    ];
    assert_says(r, &ways);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_commits_are_rebased_onto_upstream_and_a_conflict_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let mut client = local(&app, false).await;
    let first = update(&mut client, false).await;
    assert_outcome(&first, proto::Outcome::Succeeded);

    // A local commit on the tracked Dockerfile, and a new commit upstream.
    let patched = local_commit(&app.checkout, "LABEL local.patch=\"yes\"\n");
    let v2 = app.commit("v2", "ok", "v2").unwrap();
    let refused = update(&mut client, false).await;
    assert_outcome(&refused, proto::Outcome::Failed);
    assert_says(&refused, &["diverged"]);
    assert_points_to_customizations(&refused);
    assert_eq!(git(&app.checkout, &["rev-parse", "HEAD"]), patched);

    // --rebase: the local commit replayed onto v2 is what runs.
    let rebased = update(&mut client, true).await;
    assert_outcome(&rebased, proto::Outcome::Succeeded);
    let head = git(&app.checkout, &["rev-parse", "HEAD"]);
    assert_eq!(rebased.to_sha, head);
    assert_ne!(head, v2);
    assert_eq!(git(&app.checkout, &["rev-parse", "HEAD^"]), v2);
    assert_eq!(
        git(&app.checkout, &["symbolic-ref", "--short", "HEAD"]),
        "main"
    );
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));
    let label = image_label(&rebased.image, "local.patch").await;
    assert_eq!(label.as_deref(), Some("yes"), "{}", rebased.image);

    // Nothing new upstream: a no-op, not a second rebase with new shas.
    let serving = gateway::container(&app.project).await;
    let noop = update(&mut client, true).await;
    assert_outcome(&noop, proto::Outcome::UpToDate);
    assert_eq!(git(&app.checkout, &["rev-parse", "HEAD"]), head);
    assert_eq!(gateway::container(&app.project).await, serving);

    // Upstream changes the same lines: the rebase conflicts, the checkout is byte-identical,
    // the conflicting file is named and v2 keeps serving.
    let upstream_dockerfile = app.upstream.join("Dockerfile");
    let original = std::fs::read_to_string(&upstream_dockerfile).unwrap();
    let conflicting = format!("{original}LABEL upstream.patch=\"yes\"\n");
    app.commit_files(&[("Dockerfile", &conflicting)], "v3: a label")
        .unwrap();
    // The update fetches first, which moves origin/main in the status header; so do we.
    git(&app.checkout, &["fetch", "-q", "origin"]);
    let before = checkout_state(&app.checkout);
    let conflict = update(&mut client, true).await;
    assert_outcome(&conflict, proto::Outcome::Failed);
    assert_says(
        &conflict,
        &["conflicts in Dockerfile", "nothing was stopped"],
    );
    assert_eq!(checkout_state(&app.checkout), before);
    assert!(!app.checkout.join(".git/clawops-rebase").exists());
    assert_eq!(gateway::container(&app.project).await, serving);
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));
    drop(client);

    // `[app] rebase = true` does the same without the flag, once upstream no longer conflicts.
    let mut client = local(&app, true).await;
    app.commit_files(
        &[("Dockerfile", &original), ("etc/gateway/version", "v4\n")],
        "v4",
    )
    .unwrap();
    let v4 = git(&app.upstream, &["rev-parse", "HEAD"]);
    let configured = update(&mut client, false).await;
    assert_outcome(&configured, proto::Outcome::Succeeded);
    assert_eq!(git(&app.checkout, &["rev-parse", "HEAD^"]), v4);
    assert_eq!(app.served_version().await.as_deref(), Some("v4"));
    let label = image_label(&configured.image, "local.patch").await;
    assert_eq!(label.as_deref(), Some("yes"));

    // Uncommitted changes are still refused, with the same pointers.
    std::fs::write(app.checkout.join("gateway.sh"), "# edited on the VM\n").unwrap();
    app.commit("v5", "ok", "v5").unwrap();
    let modified = update(&mut client, true).await;
    assert_outcome(&modified, proto::Outcome::Failed);
    assert_says(&modified, &["gateway.sh"]);
    assert_points_to_customizations(&modified);
    assert_eq!(
        std::fs::read_to_string(app.checkout.join("gateway.sh")).unwrap(),
        "# edited on the VM\n"
    );
    assert_eq!(app.served_version().await.as_deref(), Some("v4"));
}
