//! A two-service project using every supported key, on the real engine: hardening options,
//! healthcheck-gated `depends_on`, `network_mode: service:…`, named volume, limits, logging;
//! dependents follow a recreate; orphans are reported, then removed on request.
mod up_support;

use clawops_agent::{
    events::Event,
    up::{Action, UpOptions},
};
use up_support::{app, node_image, warnings};

const MULTI: &str = r#"
x-hardening: &hardening
  init: true
  cap_drop: [NET_RAW, NET_ADMIN]
  security_opt: ["no-new-privileges:true"]
services:
  openclaw-gateway:
    <<: *hardening
    image: ${IMAGE}
    build:
      context: .
      dockerfile: Dockerfile
      target: final
      args: {NODE_VERSION: "24"}
    restart: unless-stopped
    env_file:
      - path: ./gateway.env
        required: false
      - .env
    environment:
      HOME: /home/node
      JAVA_OPTS: ${JAVA_OPTS:--XX:TieredStopAtLevel=1}
      NESTED: ${UNSET_A:-${UNSET_B:-deep}}
    volumes:
      - ${STATE}/config:/home/node/.openclaw
      - cache:/cache
    ports:
      - "127.0.0.1:${PORT}:18789"
    command: ["node", "dist/index.js", "gateway", "--bind", "${BIND:-lan}"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:18789/healthz"]
      interval: 1s
      timeout: 2s
      retries: 30
      start_period: 1s
    user: "1000:1000"
    working_dir: /home/node
    cap_add: [CHOWN]
    extra_hosts: ["host.docker.internal:host-gateway"]
    stdin_open: false
    tty: false
    labels: {com.example.role: gateway}
    logging: {driver: json-file, options: {max-size: 10m, max-file: "3"}}
    mem_limit: 256m
    cpus: ${CPUS:-0.5}
    group_add: ["1001"]
    hostname: gw
    stop_signal: SIGTERM
    stop_grace_period: 2s
  openclaw-cli:
    <<: *hardening
    image: ${IMAGE}
    network_mode: "service:openclaw-gateway"
    depends_on:
      openclaw-gateway:
        condition: service_healthy
    stdin_open: true
    tty: true
    user: node
    entrypoint: ["/bin/sh", "-c"]
    command: ["while true; do sleep 1; done"]
    stop_grace_period: 1s
volumes:
  cache: {}
"#;

/// Removes the project's containers, then its named volume (in that order: a volume in use
/// cannot be removed).
struct VolumeGuard {
    project: String,
    volume: String,
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let (project, volume) = (self.project.clone(), self.volume.clone());
        testkit::block_on_fresh(async move {
            testkit::cleanup::remove_project(project).await;
            let docker = testkit::docker::connect().await;
            let _ = docker
                .remove_volume(
                    &volume,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
        });
    }
}

#[tokio::test]
async fn every_key_runs_on_the_engine_and_orphans_are_handled() {
    let image = node_image("ok").await;
    let app =
        // The compose file adds CHOWN, which the deploy policy must list.
        app("url = \"http://127.0.0.1:{port}/healthz\"\nhealthcheck = true\ntimeout_secs = 60\n[policy]\ncap_add = [\"CHOWN\"]");
    let _volume = VolumeGuard {
        project: app.project.clone(),
        volume: format!("{}_cache", app.project),
    };
    app.write("compose.yaml", MULTI);
    let env = format!(
        "IMAGE={}\nPORT={}\nSTATE={}\n",
        image.tag,
        app.port,
        app.home().display()
    );
    app.write(".env", &env);
    let docker = app.docker().await;

    let (result, events) = app.up(UpOptions::default()).await;
    let report = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    let order: Vec<&str> = report.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(order, ["openclaw-gateway", "openclaw-cli"]);
    assert!(report.services.iter().all(|s| s.action == Action::Created));

    let gw = docker
        .inspect_container(&app.container_name("openclaw-gateway"), None)
        .await
        .unwrap();
    let gw_id = gw.id.clone().unwrap();
    let host = gw.host_config.clone().unwrap();
    let config = gw.config.clone().unwrap();
    assert_eq!(host.init, Some(true));
    assert_eq!(host.cap_drop.unwrap(), ["NET_RAW", "NET_ADMIN"]);
    assert_eq!(host.cap_add.unwrap(), ["CHOWN"]);
    assert_eq!(host.security_opt.unwrap(), ["no-new-privileges:true"]);
    assert_eq!(
        host.extra_hosts.unwrap(),
        ["host.docker.internal:host-gateway"]
    );
    assert_eq!(host.memory, Some(256 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.group_add.unwrap(), ["1001"]);
    let log = host.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(log.config.unwrap()["max-file"], "3");
    assert_eq!(
        host.restart_policy.unwrap().name.unwrap().to_string(),
        "unless-stopped"
    );
    assert!(
        host.binds
            .unwrap()
            .contains(&format!("{}_cache:/cache", app.project))
    );
    assert_eq!(config.user.as_deref(), Some("1000:1000"));
    assert_eq!(config.hostname.as_deref(), Some("gw"));
    assert_eq!(config.working_dir.as_deref(), Some("/home/node"));
    assert_eq!(config.stop_timeout, Some(2));
    assert_eq!(config.labels.unwrap()["com.example.role"], "gateway");
    let env = config.env.unwrap();
    for v in [
        "JAVA_OPTS=-XX:TieredStopAtLevel=1",
        "NESTED=deep",
        "HOME=/home/node",
    ] {
        assert!(env.contains(&v.to_string()), "{v} not in {env:?}");
    }
    let health = gw
        .state
        .unwrap()
        .health
        .unwrap()
        .status
        .unwrap()
        .to_string();
    assert_eq!(health, "healthy", "readiness waited for the healthcheck");

    let cli = docker
        .inspect_container(&app.container_name("openclaw-cli"), None)
        .await
        .unwrap();
    let cli_id = cli.id.clone().unwrap();
    assert_eq!(
        cli.host_config.unwrap().network_mode.unwrap(),
        format!("container:{gw_id}")
    );
    assert_eq!(cli.config.as_ref().unwrap().tty, Some(true));
    assert!(cli.state.unwrap().running.unwrap());
    assert!(
        docker
            .inspect_volume(&format!("{}_cache", app.project))
            .await
            .is_ok()
    );

    // Recreating the gateway recreates the CLI that shares its network stack.
    app.write(
        ".env",
        &format!(
            "{env}BIND=loopback\n",
            env = std::fs::read_to_string(app.repo().join(".env")).unwrap()
        ),
    );
    let (result, events) = app.up(UpOptions::default()).await;
    let report = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    assert!(
        report
            .services
            .iter()
            .all(|s| s.action == Action::Recreated),
        "{:?}",
        report.services
    );
    let cli2 = docker
        .inspect_container(&app.container_name("openclaw-cli"), None)
        .await
        .unwrap();
    assert_ne!(cli2.id.unwrap(), cli_id);

    // Drop the CLI from the file: it becomes an orphan, reported, then removed on request.
    let without_cli =
        MULTI.split("  openclaw-cli:").next().unwrap().to_owned() + "volumes:\n  cache: {}\n";
    app.write("compose.yaml", &without_cli);
    let (result, events) = app.up(UpOptions::default()).await;
    let report = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    let cli_name = app.container_name("openclaw-cli");
    assert_eq!(report.orphans, vec![cli_name.clone()]);
    assert!(!report.orphans_removed);
    assert!(
        warnings(&events)
            .iter()
            .any(|w| w.contains(&cli_name) && w.contains("--remove-orphans"))
    );
    assert!(docker.inspect_container(&cli_name, None).await.is_ok());
    let (result, events) = app
        .up(UpOptions {
            remove_orphans: true,
            ..Default::default()
        })
        .await;
    let report = result.unwrap();
    assert!(report.orphans_removed);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Phase(p) if p.message.contains("removed orphan")))
    );
    assert!(docker.inspect_container(&cli_name, None).await.is_err());

    // Selecting a service that does not exist is an error naming the services.
    let (result, _) = app
        .up(UpOptions {
            services: vec!["nope".into()],
            ..Default::default()
        })
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("openclaw-gateway"),
        "{err}"
    );
}
