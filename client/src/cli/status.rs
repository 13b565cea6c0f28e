//! `clawops status`
use clap::Args;
use clawops::{Client, ClientError, proto};
use serde_json::json;

use super::output::{Output, duration_human, short_sha, time_human, time_json};

/// Agent version and uptime, the app, the deployed sha, the lock holder and the containers.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  clawops --via ssh://me@my-vm status")]
pub struct StatusArgs {}

pub async fn run(mut client: Client, _args: StatusArgs, out: &Output) -> Result<u8, ClientError> {
    let reply = match client.agent.status(proto::StatusRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    if out.json {
        out.json_line(&to_json(&reply));
    } else {
        print_human(&reply, client.via());
    }
    Ok(0)
}

pub fn to_json(r: &proto::StatusReply) -> serde_json::Value {
    let app = r.app.clone().unwrap_or_default();
    json!({
        "agent_version": r.agent_version,
        "uptime_seconds": r.uptime_seconds,
        "started_at": time_json(r.started_at.as_ref()),
        "app": {
            "repo": app.repo, "owner": app.owner, "remote": app.remote, "branch": app.branch,
            "project": app.project, "service": app.service, "compose_files": app.compose_files,
        },
        "deployed": (!r.deployed_sha.is_empty()).then(|| json!({
            "sha": r.deployed_sha,
            "image": r.deployed_image,
            "at": time_json(r.deployed_at.as_ref()),
        })),
        "lock_holder": r.lock_holder.as_ref().map(|op| json!({
            "id": op.id, "kind": op.kind, "requested_by": op.requested_by,
            "started_at": time_json(op.started_at.as_ref()),
        })),
        "containers": r.containers.iter().map(|c| json!({
            "service": c.service, "name": c.name, "id": c.id, "state": c.state,
            "image": c.image, "started_at": time_json(c.started_at.as_ref()),
            "health": (!c.health.is_empty()).then_some(&c.health),
        })).collect::<Vec<_>>(),
        "docker_error": (!r.docker_error.is_empty()).then_some(&r.docker_error),
        "active_log_follows": r.active_log_follows,
        "active_streams": r.active_streams,
    })
}

fn print_human(r: &proto::StatusReply, via: &str) {
    let app = r.app.clone().unwrap_or_default();
    println!(
        "agent       clawops-agent {} at {via}, up {}",
        r.agent_version,
        duration_human(r.uptime_seconds * 1000)
    );
    println!(
        "app         service {} of project {} in {} ({}/{}, owner {})",
        app.service, app.project, app.repo, app.remote, app.branch, app.owner
    );
    if r.deployed_sha.is_empty() {
        println!("deployed    nothing yet");
    } else {
        println!(
            "deployed    {} ({}) at {}",
            short_sha(&r.deployed_sha),
            r.deployed_image,
            time_human(r.deployed_at.as_ref())
        );
    }
    match &r.lock_holder {
        None => println!("operation   none running"),
        Some(op) => println!(
            "operation   {} {} requested by {} since {}",
            op.kind,
            op.id,
            op.requested_by,
            time_human(op.started_at.as_ref())
        ),
    }
    if !r.docker_error.is_empty() {
        println!("containers  unknown: {}", r.docker_error);
    } else if r.containers.is_empty() {
        println!("containers  none");
    } else {
        println!("containers");
        for c in &r.containers {
            let health = if c.health.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.health)
            };
            println!(
                "  {:<40} {}{health}  {}  since {}",
                c.name,
                c.state,
                c.image,
                time_human(c.started_at.as_ref())
            );
        }
    }
}
