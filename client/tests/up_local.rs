//! `clawops local up --config agent.toml` on this machine's engine: the CLI runs the agent
//! in-process, streams JSON lines, and a second run leaves the container untouched.
use std::process::Command;

use serde_json::Value;
use testkit::cleanup::ProjectGuard;

fn up_json(config: &std::path::Path, extra: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(testkit::agent::client_binary())
        .args(["local", "up", "--config"])
        .arg(config)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn local_up_streams_json_and_is_idempotent() {
    let image = testkit::node_image::build("ok").await;
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let port = testkit::free_port();
    let project = testkit::unique("uplocal").replace('-', "");
    let _guard = ProjectGuard::new(project.clone());
    std::fs::write(repo.join("docker-compose.yml"), testkit::seed::SEED_COMPOSE).unwrap();
    std::fs::write(
        repo.join(".env"),
        format!(
            "OPENCLAW_IMAGE={}\nOPENCLAW_GATEWAY_BIND=lan\nOPENCLAW_GATEWAY_PORT={port}\nOPENCLAW_CONFIG_DIR={root}/state/.openclaw\nOPENCLAW_WORKSPACE_DIR={root}/state/.openclaw/workspace\n",
            image.tag,
            root = root.path().display()
        ),
    )
    .unwrap();
    let config = root.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{root}/agent-state\"\ntoken_file = \"{root}/token\"\n[app]\nrepo = \"{repo}\"\nproject = \"{project}\"\n\
             [snapshots]\ndirs = [\"{root}/state\"]\n[readiness]\nurl = \"http://127.0.0.1:{port}/healthz\"\ntimeout_secs = 60\n",
            root = root.path().display(),
            repo = repo.display(),
        ),
    )
    .unwrap();

    let (code, lines, stderr) = up_json(&config, &[]);
    assert_eq!(code, 0, "{stderr}\n{lines:#?}");
    let result = lines.last().unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["outcome"], "succeeded");
    assert_eq!(result["services"][0]["action"], "created");
    let id = result["services"][0]["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "phase" && l["phase"] == "readiness" && l["status"] == "done"),
        "{lines:#?}"
    );
    let healthz = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(healthz.is_ok(), "the gateway serves on the published port");

    let (code, lines, stderr) = up_json(&config, &[]);
    assert_eq!(code, 0, "{stderr}");
    let result = lines.last().unwrap();
    assert_eq!(result["outcome"], "up_to_date");
    assert_eq!(result["services"][0]["action"], "unchanged");
    assert_eq!(result["services"][0]["container_id"], id.as_str());

    // A failure exits 1 with the reason in the result.
    let env = std::fs::read_to_string(repo.join(".env")).unwrap();
    std::fs::write(
        repo.join(".env"),
        env.replace(&image.tag, "clawops-not-built:x"),
    )
    .unwrap();
    let (code, lines, _) = up_json(&config, &[]);
    assert_eq!(code, 1);
    let result = lines.last().unwrap();
    assert_eq!(result["outcome"], "failed");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("clawops build"),
        "{result}"
    );
}
