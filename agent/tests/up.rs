//! Up with the seed compose file of the GCP guide on the real engine: first run creates and
//! waits for readiness, a second run leaves the container alone, a config change recreates it,
//! Debian's docker-compose lists what clawops created, and the journal records it all.
mod up_support;

use std::os::unix::fs::MetadataExt;

use clawops_agent::{
    journal::Outcome,
    up::{Action, UpOptions},
};
use testkit::seed::SEED_COMPOSE;
use up_support::{app, node_image, phase_messages};

#[tokio::test]
async fn seed_file_up_is_idempotent_and_recreates_on_change() {
    let image = node_image("ok").await;
    let app = app("url = \"http://127.0.0.1:{port}/healthz\"\ntimeout_secs = 60");
    app.write("docker-compose.yml", SEED_COMPOSE);
    app.write(".env", &app.seed_env(&image.tag));
    let docker = app.docker().await;
    let name = app.container_name("openclaw-gateway");

    // First Up: creates the bind dirs for node, the network and the container; waits.
    let (result, events) = app.up(UpOptions::default()).await;
    let report = result.unwrap_or_else(|e| panic!("up failed: {e}\n{events:#?}"));
    assert_eq!(report.services.len(), 1);
    assert_eq!(report.services[0].action, Action::Created);
    assert!(report.ready_after.is_some());
    let phases = phase_messages(&events).join("\n");
    for needle in [
        "create started creating",
        "start done",
        "readiness started waiting",
        "readiness done ready",
    ] {
        assert!(phases.contains(needle), "missing {needle:?} in\n{phases}");
    }
    let user = std::env::var("USER").unwrap_or_default();
    let state = app.home().join(&user).join(".openclaw");
    let meta = std::fs::metadata(&state).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "created for node");
    assert!(state.join("workspace").is_dir());
    let first = docker.inspect_container(&name, None).await.unwrap();
    let first_id = first.id.clone().unwrap();
    let first_started = first.state.as_ref().unwrap().started_at.clone();
    assert_eq!(first.config.as_ref().unwrap().user.as_deref(), Some("node"));
    let labels = first.config.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(labels["com.docker.compose.project"], app.project);
    assert_eq!(labels["com.docker.compose.service"], "openclaw-gateway");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert_eq!(
        labels["com.docker.compose.project.working_dir"],
        app.repo().display().to_string()
    );
    let nets = first.network_settings.unwrap().networks.unwrap();
    assert!(
        nets.contains_key(&format!("{}_default", app.project)),
        "{nets:?}"
    );

    // Second Up: nothing to do, the container is untouched.
    let (result, events) = app.up(UpOptions::default()).await;
    let report = result.unwrap();
    assert_eq!(report.services[0].action, Action::Unchanged, "{events:#?}");
    assert!(!report.changed());
    let again = docker.inspect_container(&name, None).await.unwrap();
    assert_eq!(again.id.as_deref(), Some(first_id.as_str()));
    assert_eq!(
        again.state.unwrap().started_at,
        first_started,
        "not restarted"
    );

    // docker-compose (Debian's v1.29) sees the containers clawops made.
    let ps = std::process::Command::new("/usr/bin/docker-compose")
        .args(["-p", &app.project, "-f", "docker-compose.yml", "ps"])
        .current_dir(app.repo())
        .output()
        .expect("docker-compose is installed (bash .ci/run installs it)");
    let stdout = String::from_utf8_lossy(&ps.stdout);
    assert!(
        ps.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ps.stderr)
    );
    assert!(stdout.contains(&name), "{stdout}");
    assert!(stdout.contains("Up"), "{stdout}");
    let exec = std::process::Command::new("/usr/bin/docker-compose")
        .args([
            "-p",
            &app.project,
            "-f",
            "docker-compose.yml",
            "exec",
            "-T",
            "openclaw-gateway",
            "id",
            "-u",
        ])
        .current_dir(app.repo())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout).trim(),
        "1000",
        "{exec:?}"
    );

    // A changed .env value changes the config: recreated under the same name.
    let env = app.seed_env(&image.tag).replace(
        "OPENCLAW_GATEWAY_TOKEN=change-me-now",
        "OPENCLAW_GATEWAY_TOKEN=rotated",
    );
    app.write(".env", &env);
    let (result, events) = app.up(UpOptions::default()).await;
    let report = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    assert_eq!(report.services[0].action, Action::Recreated);
    let recreated = docker.inspect_container(&name, None).await.unwrap();
    assert_ne!(recreated.id.as_deref(), Some(first_id.as_str()));
    assert!(
        docker.inspect_container(&first_id, None).await.is_err(),
        "the old container is removed"
    );
    let env_vars = recreated.config.unwrap().env.unwrap();
    assert!(env_vars.contains(&"OPENCLAW_GATEWAY_TOKEN=rotated".to_string()));

    // --force-recreate recreates an unchanged service.
    let (result, _) = app
        .up(UpOptions {
            force_recreate: true,
            ..Default::default()
        })
        .await;
    assert_eq!(result.unwrap().services[0].action, Action::Recreated);

    // A stopped container is started again, not recreated.
    let current = docker
        .inspect_container(&name, None)
        .await
        .unwrap()
        .id
        .unwrap();
    let quick = bollard::query_parameters::StopContainerOptionsBuilder::default()
        .t(0)
        .build();
    docker.stop_container(&current, Some(quick)).await.unwrap();
    let (result, _) = app.up(UpOptions::default()).await;
    let report = result.unwrap();
    assert_eq!(report.services[0].action, Action::Started);
    assert_eq!(report.services[0].id, current);

    let entries = app.ctx.journal.entries(10);
    assert_eq!(entries.len(), 5);
    assert!(entries.iter().all(|e| e.kind == "up"));
    assert_eq!(entries[3].outcome, Outcome::UpToDate);
    assert_eq!(entries[4].outcome, Outcome::Succeeded);
    assert!(
        entries[4]
            .phases
            .iter()
            .any(|p| p.phase == "readiness" && p.status == "done"),
        "{:?}",
        entries[4].phases
    );
}
