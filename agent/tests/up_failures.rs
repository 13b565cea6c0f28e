//! Up's failures are clear and early: unwritable or missing bind dirs and busy ports are caught
//! before any container is touched; a missing image points to `clawops build`; readiness
//! timeouts and crashing containers come back with the last log lines.
mod up_support;

use std::os::unix::fs::PermissionsExt;

use clawops_agent::{
    journal::Outcome,
    readiness::ReadinessError,
    up::{UpError, UpOptions},
};
use testkit::seed::SEED_COMPOSE;
use up_support::{app, node_image};

#[tokio::test]
async fn unwritable_bind_dir_is_refused_with_the_chown_command() {
    let image = node_image("ok").await;
    let app = app("url = \"http://127.0.0.1:{port}/healthz\"\ntimeout_secs = 30");
    app.write("docker-compose.yml", SEED_COMPOSE);
    app.write(".env", &app.seed_env(&image.tag));
    // What `docker run -v` leaves behind: a root-owned directory the node user cannot write.
    let user = std::env::var("USER").unwrap_or_default();
    let state = app.home().join(&user).join(".openclaw");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (result, _) = app.up(UpOptions::default()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            UpError::BindNotWritable {
                uid: 1000,
                gid: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("sudo chown -R 1000:1000 {}", state.display())),
        "{msg}"
    );
    assert!(msg.contains("node"), "{msg}");
    let engine = app.ctx.docker.get().await.unwrap();
    assert!(
        engine
            .project_containers(&app.project)
            .await
            .unwrap()
            .is_empty(),
        "nothing was created"
    );
    let entry = &app.ctx.journal.entries(1)[0];
    assert_eq!(entry.outcome, Outcome::Failed);
    assert!(entry.message.contains("chown"), "{}", entry.message);

    // After the fix, the same Up goes through.
    std::os::unix::fs::chown(&state, Some(1000), Some(1000)).unwrap();
    let (result, events) = app.up(UpOptions::default()).await;
    result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
}

#[tokio::test]
async fn missing_bind_source_outside_state_dirs_is_an_error() {
    let image = node_image("ok").await;
    // The bind source is outside the state dirs: the deploy policy must allow it first.
    let elsewhere = std::env::temp_dir().join(testkit::unique("clawops-elsewhere"));
    let app = app(&format!(
        "timeout_secs = 30\nurl = \"http://127.0.0.1:{{port}}/healthz\"\n[policy]\n\
         bind_roots = [{:?}]",
        elsewhere.display().to_string()
    ));
    app.write("docker-compose.yml", SEED_COMPOSE);
    let env = app.seed_env(&image.tag).replace(
        &format!("{}/$USER/.openclaw\n", app.home().display()),
        &format!("{}/.openclaw\n", elsewhere.display()),
    );
    app.write(".env", &env);
    let err = app
        .up(UpOptions::default())
        .await
        .0
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        err.contains(&format!("sudo mkdir -p {}/.openclaw", elsewhere.display())),
        "{err}"
    );
}

#[tokio::test]
async fn busy_port_is_named() {
    let image = node_image("ok").await;
    let app = app("timeout_secs = 30\nurl = \"http://127.0.0.1:{port}/healthz\"");
    app.write("docker-compose.yml", SEED_COMPOSE);
    app.write(".env", &app.seed_env(&image.tag));
    let _holder = std::net::TcpListener::bind(("127.0.0.1", app.port)).unwrap();
    let err = app.up(UpOptions::default()).await.0.unwrap_err();
    assert!(
        matches!(err, UpError::PortInUse { port, .. } if port == app.port),
        "{err:?}"
    );
    assert!(err.to_string().contains(&app.port.to_string()));
}

#[tokio::test]
async fn missing_image_with_build_points_to_clawops_build() {
    let app = app("timeout_secs = 30");
    app.write("docker-compose.yml", SEED_COMPOSE);
    app.write(".env", &app.seed_env("clawops-never-built:nope"));
    let err = app.up(UpOptions::default()).await.0.unwrap_err();
    assert!(
        matches!(
            err,
            UpError::ImageMissing {
                has_build: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("clawops build"), "{err}");
}

#[tokio::test]
async fn readiness_timeout_is_reported_with_the_last_logs() {
    let image = node_image("never-ready").await;
    let app = app("url = \"http://127.0.0.1:{port}/healthz\"\ntimeout_secs = 3");
    app.write("docker-compose.yml", SEED_COMPOSE);
    app.write(".env", &app.seed_env(&image.tag));
    let (result, events) = app.up(UpOptions::default()).await;
    let err = result.unwrap_err();
    let UpError::Readiness(ReadinessError::Timeout {
        last_logs, pending, ..
    }) = &err
    else {
        panic!("expected a readiness timeout, got {err:?}\n{events:#?}");
    };
    assert!(pending.contains("/healthz"), "{pending}");
    assert!(
        last_logs.iter().any(|l| l.contains("[gateway] starting")),
        "{last_logs:?}"
    );
    let entry = &app.ctx.journal.entries(1)[0];
    assert_eq!(entry.outcome, Outcome::Failed);
    assert!(
        entry
            .last_logs
            .iter()
            .any(|l| l.contains("[gateway] starting"))
    );
    assert!(
        entry.message.contains("did not become ready within 3s"),
        "{}",
        entry.message
    );

    // --no-wait skips the wait.
    let (result, _) = app
        .up(UpOptions {
            no_wait: true,
            ..Default::default()
        })
        .await;
    assert!(result.unwrap().ready_after.is_none());
}

#[tokio::test]
async fn crash_at_start_fails_fast_with_logs() {
    let image = node_image("exit").await;
    let app = app("url = \"\"\nlog_regex = \"listening on\"\ntimeout_secs = 60");
    app.write("docker-compose.yml", SEED_COMPOSE);
    app.write(".env", &app.seed_env(&image.tag));
    let started = std::time::Instant::now();
    let err = app.up(UpOptions::default()).await.0.unwrap_err();
    assert!(
        started.elapsed().as_secs() < 30,
        "did not wait for the timeout"
    );
    let logs = err.last_logs().join("\n");
    assert!(logs.contains("[gateway] fatal"), "{err}\n{logs}");
    assert!(
        matches!(
            err,
            UpError::Readiness(ReadinessError::CrashLoop { .. } | ReadinessError::Exited { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn log_regex_readiness_waits_for_the_line() {
    let image = node_image("ok").await;
    let app = app("url = \"\"\nlog_regex = \"listening on ws://\"\ntimeout_secs = 30");
    app.write("docker-compose.yml", SEED_COMPOSE);
    app.write(".env", &app.seed_env(&image.tag));
    let (result, events) = app.up(UpOptions::default()).await;
    let report = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    assert!(report.ready_after.is_some());
    assert!(events.iter().any(|e| matches!(e, clawops_agent::events::Event::Log { line, .. } if line.contains("listening on"))));
}
