//! Updates that must be refused before anything is stopped: hostile ref and branch names (via
//! the request and via `[app] branch`), a build context with a symlink escaping the repository,
//! and a disk too full to build on. Each time the running gateway must be untouched: the same
//! container (id) serves the same version.
mod support;

use std::{os::unix::fs::PermissionsExt, path::Path};

use clawops::{Client, demo::DemoApp, proto};
use support::*;

/// The in-process agent for `config` (each test's agents share the app's state dir).
async fn local(config: clawops_agent::config::Config) -> Client {
    clawops::local::connect_with_config(config).await.unwrap()
}

/// What must hold after a refused update: same container, same version, nothing stopped.
async fn untouched(app: &DemoApp, container: &str, version: &str, events: &[proto::DeployEvent]) {
    assert_eq!(the_one_gateway(app).await, container, "the same container");
    assert_eq!(app.served_version().await.as_deref(), Some(version));
    let stopped = events.iter().any(|e| {
        matches!(&e.event, Some(proto::deploy_event::Event::Phase(p))
            if p.phase == proto::Phase::Stop as i32)
    });
    assert!(!stopped, "a stop phase was reported: {events:?}");
}

/// Runs an update to the end, keeping its events.
async fn update_events(
    client: &mut Client,
    req: proto::UpdateRequest,
) -> (Vec<proto::DeployEvent>, proto::DeployResult) {
    let mut stream = client.agent.update(req).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        if let Some(proto::deploy_event::Event::Result(r)) = e.event {
            return (events, r);
        }
        events.push(e);
    }
    panic!("the update ended without a result: {events:?}");
}

/// A deployed app: v1 (and v2 when `two`), its container id, and the config.
async fn deployed(dir: &Path, two: bool) -> (DemoApp, testkit::cleanup::AppGuard, String) {
    let (app, guard) = demo_app(dir);
    let mut client = local(app_config(&app, 20)).await;
    update_ok(&mut client).await;
    let mut version = "v1";
    if two {
        app.commit("v2", "ok", "v2").unwrap();
        update_ok(&mut client).await;
        version = "v2";
    }
    wait_served(&app, version).await;
    let id = the_one_gateway(&app).await;
    (app, guard, id)
}

/// Names that must never reach git as an option, a refspec, or a shell. `evil` is a script
/// that leaves a marker file if anything ever runs it (git runs `--upload-pack` for local
/// remotes such as the test's).
fn hostile_names(evil: &Path, marker: &Path) -> Vec<String> {
    vec![
        format!("--upload-pack={}", evil.display()),
        "--upload-pack=x".into(),
        ";rm -rf /".into(),
        format!("$(touch {})", marker.display()),
        format!("`touch {}`", marker.display()),
        format!("main\n--upload-pack={}", evil.display()),
        "main:refs/heads/hijacked".into(),
        "-c".into(),
        "../../etc/passwd".into(),
        "HEAD@{1}".into(),
        "x".repeat(300),
        "é".repeat(200),
    ]
}

fn armed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let marker = dir.join("pwned");
    let evil = dir.join("evil.sh");
    std::fs::write(
        &evil,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    (evil, marker)
}

fn refs_of(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["for-each-ref", "--format=%(refname)"])
        .current_dir(repo)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_ref_and_branch_names_are_refused_before_git_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup, container) = deployed(dir.path(), false).await;
    let (evil, marker) = armed(dir.path());
    let names = hostile_names(&evil, &marker);
    let refs_before = refs_of(&app.checkout);
    let mut client = local(app_config(&app, 20)).await;

    // Via the request: fetched as configured, then the ref is refused by name.
    for name in &names {
        let (events, r) = update_events(
            &mut client,
            proto::UpdateRequest {
                git_ref: name.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(outcome(&r), proto::Outcome::Failed, "{name:?}: {r:?}");
        assert!(
            r.message.contains("is not an acceptable git ref")
                && r.message.contains("nothing was stopped"),
            "{name:?}: {}",
            r.message
        );
        untouched(&app, &container, "v1", &events).await;
    }

    // Via `[app] branch`: refused when the config is validated, or at the latest before the
    // fetch, with the key or the name in the message.
    let mut at_config = 0;
    for name in &names {
        let mut config = app_config(&app, 20);
        config.app.branch = name.clone();
        if let Err(e) = config.validate() {
            assert!(e.to_string().contains("app.branch"), "{name:?}: {e}");
            at_config += 1;
            continue;
        }
        let mut client = local(config).await;
        let (events, r) = update_events(&mut client, proto::UpdateRequest::default()).await;
        assert_eq!(outcome(&r), proto::Outcome::Failed, "{name:?}: {r:?}");
        assert!(
            r.message.contains("is not an acceptable git ref"),
            "{name:?}: {}",
            r.message
        );
        untouched(&app, &container, "v1", &events).await;
    }

    assert!(!marker.exists(), "a hostile name ran a program");
    assert_eq!(refs_of(&app.checkout), refs_before, "no ref was created");
    // And a sane update still works afterwards.
    app.commit("v2", "ok", "v2").unwrap();
    update_ok(&mut client).await;
    wait_served(&app, "v2").await;
    report(
        "hostile ref names via UpdateRequest.git_ref (--upload-pack=…, ;rm -rf /, $(…), newline, refspec, 300 chars, …)",
        names.len(),
        "nothing: each refused by name before it reached git; gateway untouched",
    );
    report(
        "the same names as [app] branch",
        names.len(),
        &format!(
            "nothing: {at_config} refused at config validation, {} at fetch; no program run, no ref created",
            names.len() - at_config
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_context_symlink_escaping_the_repo_is_refused_and_nothing_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup, container) = deployed(dir.path(), false).await;
    let mut client = local(app_config(&app, 20)).await;
    let links = [
        ("leak-relative", "../remote.git/config"),
        ("leak-absolute", "/etc/passwd"),
        ("leak-dir", "../../../../../../../../.."),
    ];
    for (i, (link, target)) in links.iter().enumerate() {
        let path = app.upstream.join(link);
        std::os::unix::fs::symlink(target, &path).unwrap();
        app.commit(&format!("v{}", i + 2), "ok", &format!("add {link}"))
            .unwrap();
        let (events, r) = update_events(&mut client, proto::UpdateRequest::default()).await;
        assert_eq!(outcome(&r), proto::Outcome::Failed, "{link}: {r:?}");
        assert!(
            r.message.contains(link)
                && r.message.contains("outside")
                && r.message.contains("nothing was stopped"),
            "{link}: {}",
            r.message
        );
        untouched(&app, &container, "v1", &events).await;
        std::fs::remove_file(&path).unwrap();
    }
    // Without the links the next commit deploys.
    app.commit("v9", "ok", "remove the links").unwrap();
    update_ok(&mut client).await;
    wait_served(&app, "v9").await;
    report(
        "build context symlinks escaping the repo (relative, absolute, to /)",
        links.len(),
        "nothing: refused naming the link before the build; gateway untouched",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nearly_full_disk_refuses_the_build_and_the_old_container_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    // Two deploys, so an older sha tag exists that pruning would free.
    let (app, _cleanup, container) = deployed(dir.path(), true).await;
    let docker = testkit::docker::connect().await;
    let root = docker.info().await.unwrap().docker_root_dir.unwrap();
    let free_mb = clawops_agent::build::preflight::free_bytes(Path::new(&root)).unwrap() >> 20;
    let mut config = app_config(&app, 20);
    // "Nearly full": the threshold sits 10 GiB above what is free now.
    config.build.min_free_disk_mb = free_mb + 10 * 1024;
    let mut client = local(config).await;
    app.commit("v3", "ok", "v3").unwrap();
    let tries = 2;
    for _ in 0..tries {
        let (events, r) = update_events(&mut client, proto::UpdateRequest::default()).await;
        assert_eq!(outcome(&r), proto::Outcome::Failed, "{r:?}");
        let m = &r.message;
        for part in [
            " free in ",
            root.as_str(),
            "min_free_disk_mb",
            "Pruning 1 old clawops image tag(s) would free up to",
            &format!("docker image rm {}:", app.image_repo),
            "nothing was stopped",
        ] {
            assert!(m.contains(part), "{part:?} missing from: {m}");
        }
        untouched(&app, &container, "v2", &events).await;
        println!("disk refusal: {m}");
    }
    // With room again, the same commit deploys.
    let mut client = local(app_config(&app, 20)).await;
    update_ok(&mut client).await;
    wait_served(&app, "v3").await;
    report(
        "disk nearly full during Build ([build] min_free_disk_mb above the free space)",
        tries,
        "nothing: refused naming free space, threshold and what pruning frees; same container kept serving",
    );
}
