//! Status and History.
use clawops_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert::{journal_entry, operation, timestamp};
use crate::{context::AgentContext, status};

const DEFAULT_HISTORY: usize = 20;

pub async fn status(
    ctx: &AgentContext,
    _req: Request<pb::StatusRequest>,
) -> Result<Response<pb::StatusReply>, Status> {
    let s = status::snapshot(ctx).await;
    let app = &ctx.app;
    let deployed = s.deployed.as_ref();
    Ok(Response::new(pb::StatusReply {
        agent_version: s.version.to_owned(),
        uptime_seconds: s.uptime.as_secs(),
        started_at: Some(timestamp(s.started_at)),
        app: Some(pb::App {
            repo: app.repo.display().to_string(),
            owner: app.owner.clone(),
            remote: ctx.config.app.remote.clone(),
            branch: ctx.config.app.branch.clone(),
            project: app.project.clone(),
            service: ctx.config.app.service.clone(),
            compose_files: ctx
                .config
                .app
                .compose_files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        }),
        deployed_sha: deployed.and_then(|e| e.to_sha.clone()).unwrap_or_default(),
        deployed_image: deployed.and_then(|e| e.image.clone()).unwrap_or_default(),
        deployed_at: deployed.and_then(|e| e.finished_at).map(timestamp),
        lock_holder: s.lock_holder.as_ref().map(operation),
        containers: s
            .containers
            .into_iter()
            .map(|c| pb::ContainerState {
                service: c.service,
                name: c.name,
                id: c.id,
                state: c.state,
                image: c.image,
                started_at: c.started_at.map(timestamp),
                health: c.health.unwrap_or_default(),
            })
            .collect(),
        docker_error: s.docker_error.unwrap_or_default(),
        active_log_follows: s.log_follows,
        active_streams: s.streams,
    }))
}

pub async fn history(
    ctx: &AgentContext,
    req: Request<pb::HistoryRequest>,
) -> Result<Response<pb::HistoryReply>, Status> {
    let limit = match req.into_inner().limit {
        0 => DEFAULT_HISTORY,
        n => n as usize,
    };
    Ok(Response::new(pb::HistoryReply {
        entries: ctx
            .journal
            .entries(limit)
            .iter()
            .map(journal_entry)
            .collect(),
    }))
}
