//! The compose keys upstream files and users write beyond the basics: named and external
//! networks with aliases, profiles, file-based configs and secrets, deploy resource limits and
//! pull_policy, on the real engine and compared with what Debian's docker-compose creates.
mod up_support;

use std::{collections::HashMap, path::Path, process::Command};

use clawops_agent::{
    compose::{self, LoadOptions},
    events::Event,
    up::{UpError, UpOptions, UpReport},
};
use testkit::cleanup::ProjectGuard;
use up_support::{App, app, app_with};

const COMPOSE: &str = r#"services:
  web:
    image: ${IMAGE}
    stop_signal: SIGKILL
    networks:
      back:
        aliases: [db-alias]
      default:
    secrets: [token]
    configs:
      - source: app_config
        target: /etc/app.conf
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64m}
        reservations: {memory: 32m}
    pull_policy: never
  client:
    image: ${IMAGE}
    stop_signal: SIGKILL
    networks: [back]
  extra:
    image: ${IMAGE}
    stop_signal: SIGKILL
    profiles: [debug]
networks:
  back:
    driver: bridge
    driver_opts:
      com.docker.network.bridge.enable_icc: "true"
secrets:
  token:
    file: ./token.txt
configs:
  app_config:
    file: ./app.conf
"#;

/// An image whose containers sleep for an hour.
async fn sleeper() -> testkit::image::TestImage {
    testkit::image::build(
        &testkit::unique("clawops-keys"),
        &[],
        r#"["sleep", "3600"]"#,
    )
    .await
}

async fn up_no_wait(app: &App) -> (Result<UpReport, UpError>, Vec<Event>) {
    let opts = UpOptions {
        no_wait: true,
        ..Default::default()
    };
    app.up(opts).await
}

/// `COMPOSE` with its files and `image`, brought up.
async fn up_keys(app: &App, image: &str) -> UpReport {
    app.write("docker-compose.yml", COMPOSE);
    app.write(".env", &format!("IMAGE={image}\n"));
    app.write("token.txt", "s3cret\n");
    app.write("app.conf", "level=debug\n");
    let (result, events) = up_no_wait(app).await;
    result.unwrap_or_else(|e| panic!("up failed: {e}\n{events:#?}"))
}

fn docker_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What the comparison with docker-compose looks at in a container.
#[derive(Debug, PartialEq)]
struct Created {
    nano_cpus: Option<i64>,
    memory: Option<i64>,
    memory_reservation: Option<i64>,
    /// Mount destination → (source, read-write).
    mounts: HashMap<String, (String, bool)>,
    /// Aliases on the `back` network include the user's alias and the service name.
    back_aliases_ok: bool,
}

async fn created(docker: &bollard::Docker, container: &str, back: &str) -> Created {
    let c = docker.inspect_container(container, None).await.unwrap();
    let host = c.host_config.unwrap();
    let mounts = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let rw = m.rw.unwrap_or(true);
            (m.destination.unwrap(), (m.source.unwrap(), rw))
        })
        .collect();
    let nets = c.network_settings.unwrap().networks.unwrap();
    let aliases = nets[back].aliases.clone().unwrap_or_default();
    Created {
        nano_cpus: host.nano_cpus,
        memory: host.memory,
        memory_reservation: host.memory_reservation,
        mounts,
        back_aliases_ok: aliases.iter().any(|a| a == "db-alias")
            && aliases.iter().any(|a| a == "web"),
    }
}

async fn network_labels(docker: &bollard::Docker, name: &str) -> HashMap<String, String> {
    let n = docker.inspect_network(name, None).await.unwrap();
    n.labels.unwrap_or_default()
}

#[tokio::test]
async fn networks_secrets_configs_limits_and_profiles_as_docker_compose_makes_them() {
    let image = sleeper().await;
    let app = app("url = \"\"");
    let report = up_keys(&app, &image.tag).await;
    let mut services: Vec<&str> = report.services.iter().map(|s| s.service.as_str()).collect();
    services.sort();
    assert_eq!(
        services,
        ["client", "web"],
        "extra is only in the debug profile"
    );
    assert!(report.orphans.is_empty(), "{:?}", report.orphans);

    // The alias and the service name resolve from another container on `back`.
    let client = app.container_name("client");
    for name in ["db-alias", "web"] {
        let (ok, out) = docker_cli(&["exec", &client, "nslookup", name, "127.0.0.11"]);
        assert!(ok && out.contains("Address"), "{name}: {out}");
    }
    let web = app.container_name("web");
    let (ok, out) = docker_cli(&["exec", &web, "cat", "/run/secrets/token", "/etc/app.conf"]);
    assert!(ok, "{out}");
    assert_eq!(out, "s3cret\nlevel=debug\n");

    let docker = app.docker().await;
    let back = format!("{}_back", app.project);
    let ours = created(&docker, &web, &back).await;
    assert_eq!(ours.nano_cpus, Some(500_000_000));
    assert_eq!(ours.memory, Some(64 << 20));
    assert_eq!(ours.memory_reservation, Some(32 << 20));
    let repo = std::fs::canonicalize(app.repo()).unwrap();
    let token = repo.join("token.txt").display().to_string();
    assert_eq!(ours.mounts["/run/secrets/token"], (token, false));
    assert!(ours.back_aliases_ok);
    let labels = network_labels(&docker, &back).await;
    assert_eq!(labels["com.docker.compose.network"], "back");
    assert_eq!(labels["com.docker.compose.project"], app.project);

    // Debian's docker-compose, same file, another project: the same container settings.
    let theirs_project = format!("{}dc", app.project);
    let _theirs_guard = ProjectGuard::new(theirs_project.clone());
    let up = Command::new("/usr/bin/docker-compose")
        .args([
            "-p",
            &theirs_project,
            "-f",
            "docker-compose.yml",
            "up",
            "-d",
            "web",
        ])
        .current_dir(app.repo())
        .output()
        .expect("docker-compose is installed (bash .ci/run installs it)");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let theirs_back = format!("{theirs_project}_back");
    let theirs = created(&docker, &format!("{theirs_project}_web_1"), &theirs_back).await;
    // docker-compose 1.29 drops file-based configs outside swarm; compose v2 (and clawops)
    // bind-mount them read-only like secrets.
    let mut ours = ours;
    let config = ours.mounts.remove("/etc/app.conf").unwrap();
    assert_eq!(config, (repo.join("app.conf").display().to_string(), false));
    assert_eq!(ours, theirs);
    let their_labels = network_labels(&docker, &theirs_back).await;
    assert_eq!(their_labels["com.docker.compose.network"], "back");

    // Enabling the profile starts the service.
    let debug = app_with("url = \"\"", "profiles = [\"debug\"]");
    let report = up_keys(&debug, &image.tag).await;
    assert!(report.services.iter().any(|s| s.service == "extra"));
}

#[tokio::test]
async fn a_missing_external_network_is_a_clear_error() {
    let image = sleeper().await;
    let app = app("url = \"\"");
    let missing = testkit::unique("clawops-ext");
    app.write(
        "docker-compose.yml",
        &format!(
            "services:\n  web:\n    image: {}\n    networks: [outside]\nnetworks:\n  outside:\n    external: true\n    name: {missing}\n",
            image.tag
        ),
    );
    let (result, _) = up_no_wait(&app).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&format!("external network {missing} does not exist"))
            && err.contains("docker network create"),
        "{err}"
    );
    let docker = app.docker().await;
    assert!(
        docker.inspect_network(&missing, None).await.is_err(),
        "not created"
    );
    assert!(
        docker
            .inspect_container(&app.container_name("web"), None)
            .await
            .is_err()
    );
}

fn load(dir: &Path, compose: &str) -> Result<compose::Project, compose::ComposeError> {
    std::fs::write(dir.join("docker-compose.yml"), compose).unwrap();
    compose::load(&LoadOptions {
        dir: dir.to_owned(),
        ..Default::default()
    })
}

/// The error loading `compose` gives, as the user sees it.
fn refused(dir: &Path, compose: &str) -> String {
    load(dir, compose).unwrap_err().to_string()
}

#[test]
fn secrets_outside_the_checkout_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = "services:\n  web:\n    image: x\n    secrets: [token]\n";
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("token")).unwrap();
    let secret = |definition: &str| format!("{base}secrets:\n  token:\n    {definition}\n");
    for (compose, any_of) in [
        (secret("file: ./token"), &["outside the checkout"][..]),
        (secret("file: ../x"), &["does not exist", "outside"]),
        (
            secret("environment: X"),
            &["unsupported key `secrets.token.environment`"],
        ),
        (
            "services:\n  web:\n    image: x\n    secrets: [nope]\n".to_owned(),
            &["undefined secret \"nope\""],
        ),
    ] {
        let err = refused(dir.path(), &compose);
        assert!(any_of.iter().any(|n| err.contains(n)), "{compose}: {err}");
    }
    for (key, needle) in [
        (
            "deploy:\n      replicas: 2",
            "unsupported key `deploy.replicas`",
        ),
        ("pull_policy: sometimes", "pull_policy"),
        ("networks: [nowhere]", "undefined network \"nowhere\""),
        (
            "profiles: [a]\n  other:\n    image: x\n    depends_on: [web]",
            "profiles are not enabled",
        ),
        (
            "mem_limit: 1g\n    deploy:\n      resources:\n        limits:\n          memory: 2g",
            "differs from `mem_limit`",
        ),
    ] {
        let err = refused(
            dir.path(),
            &format!("services:\n  web:\n    image: x\n    {key}\n"),
        );
        assert!(err.contains(needle), "{key}: {err}");
    }
    // Unset, the new keys leave the loaded model (and so the config hash) as before.
    let plain = load(dir.path(), "services:\n  web:\n    image: x\n").unwrap();
    let json = serde_json::to_string(&plain.services["web"]).unwrap();
    for key in [
        "networks",
        "profiles",
        "secrets",
        "configs",
        "pull_policy",
        "mem_reservation",
    ] {
        assert!(!json.contains(key), "{key} in {json}");
    }
}
