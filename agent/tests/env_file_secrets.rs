//! Issue 13.3's reproduction through the Up RPC: a compose `env_file` naming a token file
//! outside the checkout and the owner's home is refused, and neither the error the client gets
//! nor the journal holds the token.
use std::path::Path;

use clawops_agent::{config::Config, context::AgentContext, journal::Journal, rpc::AgentService};
use clawops_proto::v1::{self as pb, agent_server::Agent};
use futures::StreamExt;
use tonic::Request;

const TOKEN: &str = "3f9a0c1d2e3f4a5b6c7d8e9f00112233";

#[tokio::test]
async fn up_with_a_token_env_file_never_echoes_it() {
    let root = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("docker-compose.yml"),
        format!(
            "services:\n  openclaw-gateway:\n    image: busybox\n    env_file: [\"{}\"]\n",
            token.display()
        ),
    )
    .unwrap();
    let toml = format!(
        "state_dir = \"{}\"\n[app]\nrepo = \"{}\"\nproject = \"{}\"\n",
        root.path().join("state").display(),
        repo.display(),
        testkit::unique("envsec"),
    );
    let config = Config::parse(&toml, Path::new("agent.toml")).unwrap();
    let app = config.resolve_app().unwrap();
    let journal = Journal::open(&config.state_dir).unwrap();
    let ctx = AgentContext::new(config, app, journal);
    let svc = AgentService::new(ctx.clone());

    let mut seen = String::new();
    match svc
        .up(Request::new(pb::UpRequest {
            requested_by: "test".into(),
            ..Default::default()
        }))
        .await
    {
        Err(status) => seen.push_str(&format!("{status:?}")),
        Ok(response) => {
            let mut stream = response.into_inner();
            while let Some(item) = stream.next().await {
                seen.push_str(&format!("{item:?}\n"));
            }
        }
    }
    assert!(seen.contains("outside the checkout"), "{seen}");
    assert!(!seen.contains("3f9a"), "{seen}");
    let journaled = std::fs::read_to_string(ctx.journal.path()).unwrap_or_default();
    assert!(!journaled.contains("3f9a"), "{journaled}");
}
