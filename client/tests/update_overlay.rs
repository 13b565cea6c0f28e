//! `[build] overlay` and `[build] context` through update, end to end on the real engine: the
//! overlay adds a skill binary that verify attributes to it (and a baked-in one to the base), an
//! unchanged overlay keeps update a no-op while an edited one rebuilds; a compose file without
//! `build:` is built from `[build] context`, and without it the refusal says what to set.

mod support;

use std::{os::unix::fs::PermissionsExt, path::Path};

use clawops::{Client, proto};
use support::demo_app;
use testkit::deploy::{assert_outcome, assert_says};

async fn connect(config: clawops_agent::config::Config) -> Client {
    clawops::local::connect_with_config(config).await.unwrap()
}

async fn update(client: &mut Client) -> proto::DeployResult {
    client
        .update_to_end(proto::UpdateRequest::default())
        .await
        .unwrap()
}

/// Dropping `build:` turns the service into one that runs a named image, which update counts
/// as a change to accept.
async fn update_accepting(client: &mut Client) -> proto::DeployResult {
    let request = proto::UpdateRequest {
        accept_changes: true,
        ..Default::default()
    };
    client.update_to_end(request).await.unwrap()
}

fn write_tool(dir: &Path, version: &str) {
    let tool = dir.join("himalaya");
    std::fs::write(&tool, format!("#!/bin/sh\necho \"himalaya {version}\"\n")).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
}

async fn verify(client: &mut Client, names: &[&str]) -> proto::VerifyReport {
    client
        .agent
        .verify_binaries(proto::VerifyRequest {
            binaries: names.iter().map(|n| n.to_string()).collect(),
            fresh: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn binary<'a>(r: &'a proto::VerifyReport, name: &str) -> &'a proto::BinaryReport {
    r.binaries.iter().find(|b| b.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overlay_adds_a_binary_verify_names_it_and_an_edit_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    // The overlay lives outside the checkout, as the owner's own file.
    let overlay = dir.path().join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("Dockerfile"),
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY himalaya /usr/local/bin/himalaya\n",
    )
    .unwrap();
    write_tool(&overlay, "1.0");
    let mut config = app.config();
    config.build.overlay = Some(overlay.join("Dockerfile"));
    let mut client = connect(config).await;

    let first = update(&mut client).await;
    assert_outcome(&first, proto::Outcome::Succeeded);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));
    let docker = testkit::docker::connect().await;
    let sha_tag = format!("{}:{}", app.image_repo, &first.to_sha[..12]);
    let top = docker.inspect_image(&sha_tag).await.unwrap().id;
    let base = docker
        .inspect_image(&format!("{sha_tag}-base"))
        .await
        .unwrap()
        .id;
    assert_ne!(top, base);

    let report = verify(&mut client, &["himalaya", "gog"]).await;
    let himalaya = binary(&report, "himalaya");
    assert_eq!(himalaya.status(), proto::BinaryStatus::Ok, "{report:#?}");
    assert_eq!(himalaya.provided_by(), proto::ProvidedBy::Overlay);
    assert_eq!(himalaya.version, "himalaya 1.0");
    assert_eq!(
        binary(&report, "gog").provided_by(),
        proto::ProvidedBy::Base
    );

    // The same sha and the same overlay: nothing to do.
    let noop = update(&mut client).await;
    assert_outcome(&noop, proto::Outcome::UpToDate);

    // An edited overlay is rebuilt and deployed although upstream did not move.
    write_tool(&overlay, "1.1");
    let again = update(&mut client).await;
    assert_outcome(&again, proto::Outcome::Succeeded);
    assert_eq!(again.to_sha, first.to_sha);
    let report = verify(&mut client, &["himalaya"]).await;
    assert_eq!(binary(&report, "himalaya").version, "himalaya 1.1");
    let noop = update(&mut client).await;
    assert_outcome(&noop, proto::Outcome::UpToDate);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compose_file_without_build_is_built_from_build_context() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    // Upstream moves its Dockerfile under docker/ and drops `build:` from the compose file.
    let compose = clawops::demo::COMPOSE.replace("    build: .\n", "");
    assert_ne!(compose, clawops::demo::COMPOSE);
    std::fs::create_dir_all(app.upstream.join("docker")).unwrap();
    std::fs::rename(
        app.upstream.join("Dockerfile"),
        app.upstream.join("docker/gateway.Dockerfile"),
    )
    .unwrap();
    app.commit_files(&[("docker-compose.yml", &compose)], "no build: section")
        .unwrap();

    let mut client = connect(app.config()).await;
    let refused = update_accepting(&mut client).await;
    assert_outcome(&refused, proto::Outcome::Failed);
    assert_says(&refused, &["[build] context", "[app] image"]);
    drop(client);

    // A context that leaves the checkout through a symlink is refused when resolved.
    let mut config = app.config();
    std::os::unix::fs::symlink(dir.path(), app.checkout.join("outside")).unwrap();
    config.build.context = Some("outside".into());
    let mut client = connect(config).await;
    let escaped = update_accepting(&mut client).await;
    assert_outcome(&escaped, proto::Outcome::Failed);
    assert_says(&escaped, &["outside", "[build] context"]);
    drop(client);
    std::fs::remove_file(app.checkout.join("outside")).unwrap();

    let mut config = app.config();
    config.build.context = Some(".".into());
    config.build.dockerfile = Some("docker/gateway.Dockerfile".into());
    let mut client = connect(config).await;
    let built = update_accepting(&mut client).await;
    assert_outcome(&built, proto::Outcome::Succeeded);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));
}
