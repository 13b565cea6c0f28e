//! The foundation, end to end with real parts: an agent process on a random loopback port, the
//! CLI binary, a real sshd for the stdio tunnel, and the token rules.

mod support;

use std::{os::unix::fs::PermissionsExt, process::Command};

use clawops::proto;
use support::connect_with;
use testkit::{
    agent::{AgentProcess, TEST_TOKEN, agent_binary, client_binary},
    sshd::Sshd,
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(client_binary())
        .args(args)
        .env_remove("CLAWOPS_TOKEN")
        .env_remove("CLAWOPS_VIA")
        .env_remove("CLAWOPS_ADDR")
        .output()
        .expect("run clawops")
}

#[tokio::test]
async fn every_service_requires_the_token() {
    let agent = AgentProcess::start("");
    let mut good = connect_with(&agent, TEST_TOKEN).await;
    let status = good.agent.status(proto::StatusRequest {}).await.unwrap();
    assert_eq!(status.get_ref().agent_version, env!("CARGO_PKG_VERSION"));

    for token in ["wrong-token-0123456789", ""] {
        let mut bad = connect_with(&agent, token).await;
        let err = bad.agent.status(proto::StatusRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        let err = bad
            .agent
            .history(proto::HistoryRequest { limit: 1 })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let err = bad
            .health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    // Health answers SERVING for the server and for our service, with the token.
    for service in ["", "clawops.v1.Agent"] {
        let reply = good
            .health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
}

#[test]
fn non_loopback_listen_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TEST_TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "").unwrap();
    let out = Command::new(agent_binary())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .arg("--token-file")
        .arg(&token)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SSH tunnel"), "{stderr}");
    assert!(!dir.path().join("state").exists(), "nothing started");
}

#[test]
fn readable_token_file_and_bad_config_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TEST_TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n").unwrap();
    let out = Command::new(agent_binary())
        .args(["--config", config.to_str().unwrap(), "--token-file"])
        .arg(&token)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));

    std::fs::write(&config, "[readiness]\ntimeout = 5\n").unwrap();
    let out = Command::new(agent_binary())
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("timeout") && stderr.contains("agent.toml"),
        "{stderr}"
    );
}

#[test]
fn cli_exit_codes_say_what_to_fix() {
    let agent = AgentProcess::start("");
    let token_file = agent.token_file();
    let ok = cli(&[
        "--addr",
        &agent.url(),
        "--token-file",
        token_file.to_str().unwrap(),
        "status",
        "--json",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(json["app"]["service"], "openclaw-gateway");
    assert!(json["deployed"].is_null());

    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "not-the-token-0000").unwrap();
    let out = cli(&[
        "--addr",
        &agent.url(),
        "--token-file",
        wrong.path().to_str().unwrap(),
        "status",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"));

    let out = cli(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--via"));

    let out = cli(&[
        "--addr",
        "http://127.0.0.1:1",
        "--token-file",
        token_file.to_str().unwrap(),
        "status",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the agent"));
}

#[test]
fn status_through_a_real_sshd_stdio_tunnel() {
    let agent = AgentProcess::start("");
    let sshd = Sshd::start();
    let token_file = agent.token_file();
    let port = agent.addr.port().to_string();
    let mut args = vec![
        "--via".to_string(),
        sshd.url(),
        "--agent-port".into(),
        port.clone(),
        "--token-file".into(),
        token_file.display().to_string(),
    ];
    for opt in sshd.client_options() {
        args.push("--ssh-option".into());
        args.push(opt);
    }
    args.push("status".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&refs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}\nsshd: {}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert!(stdout.contains("clawops-agent"), "{stdout}");
    assert!(stdout.contains(&sshd.url()), "{stdout}");

    // A key the server does not know: ssh's own reason, exit code 3.
    let other_key = tempfile::tempdir().unwrap();
    let key = other_key.path().join("k");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let mut bad: Vec<String> = args[..6].to_vec();
    for opt in [
        format!("IdentityFile={}", key.display()),
        "IdentitiesOnly=yes".into(),
        "StrictHostKeyChecking=no".into(),
        "UserKnownHostsFile=/dev/null".into(),
    ] {
        bad.push("--ssh-option".into());
        bad.push(opt);
    }
    bad.push("status".into());
    let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
    let out = cli(&refs);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ssh exited") && stderr.contains("Permission denied"),
        "{stderr}"
    );
}

#[tokio::test]
async fn journal_survives_restart_and_interrupted_operations_are_closed() {
    let mut agent = AgentProcess::start("");
    // Write, with the agent stopped, what a crash mid-update leaves behind.
    agent.kill9();
    {
        let journal = clawops_agent::journal::Journal::open(&agent.state_dir()).unwrap();
        let done = clawops_agent::lock::Operation::new("update", "ci");
        journal.begin(&done, Some("aaaa".into())).unwrap();
        journal
            .finish(
                &done.id,
                clawops_agent::journal::Outcome::Succeeded,
                clawops_agent::journal::Finish {
                    to_sha: Some("bbbb".into()),
                    image: Some("openclaw:bbbb".into()),
                    message: "deployed".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let crashed = clawops_agent::lock::Operation::new("update", "ci");
        journal.begin(&crashed, Some("bbbb".into())).unwrap();
        journal
            .phase(&crashed.id, "readiness", "started", 0, "")
            .unwrap();
    }
    agent.restart();
    let mut client = connect_with(&agent, TEST_TOKEN).await;
    let history = client
        .agent
        .history(proto::HistoryRequest { limit: 10 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 2);
    assert_eq!(history.entries[0].result, "interrupted");
    assert!(history.entries[0].message.contains("readiness"));
    assert_eq!(history.entries[1].result, "succeeded");
    let status = client
        .agent
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.deployed_sha, "bbbb");
    assert!(status.lock_holder.is_none());

    // And again: the journal is read the same after a second restart.
    agent.restart();
    let mut client = connect_with(&agent, TEST_TOKEN).await;
    let again = client
        .agent
        .history(proto::HistoryRequest { limit: 10 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.entries, history.entries);
}

/// A Python grpcio client generated from the .proto (no Rust involved) gets in with the token
/// and is refused without it. `scripts/test` provides grpcio in target/pyenv.
#[test]
fn python_grpcio_client_uses_the_proto() {
    let agent = AgentProcess::start("");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let python = std::env::var("CLAWOPS_PYTHON").unwrap_or_else(|_| {
        let venv = root.join("target/pyenv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let out = Command::new(&python)
        .arg(root.join("client/tests/python/check_agent.py"))
        .arg(root.join("proto/proto"))
        .arg(agent.addr.to_string())
        .arg(TEST_TOKEN)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{python}: {}{}\n(install with: python3 -m venv target/pyenv && target/pyenv/bin/pip install grpcio grpcio-tools grpcio-health-checking)",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
