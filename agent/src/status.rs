//! What `Status` reports, gathered from the agent's own state and the Docker engine.
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    context::AgentContext,
    docker::{self, DockerError},
    journal::Entry,
    lock::Operation,
};

/// How long Status waits for dockerd before reporting it as unreachable.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub service: String,
    pub name: String,
    pub id: String,
    pub state: String,
    pub image: String,
    pub started_at: Option<DateTime<Utc>>,
    pub health: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    pub uptime: Duration,
    pub deployed: Option<Entry>,
    pub lock_holder: Option<Operation>,
    pub containers: Vec<ContainerStatus>,
    pub docker_error: Option<String>,
    pub log_follows: u32,
    pub streams: u32,
}

pub async fn snapshot(ctx: &AgentContext) -> StatusSnapshot {
    let (containers, docker_error) = match docker::within(DOCKER_TIMEOUT, containers(ctx)).await {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    StatusSnapshot {
        version: env!("CARGO_PKG_VERSION"),
        started_at: ctx.started_at,
        uptime: ctx.started.elapsed(),
        deployed: ctx.journal.deployed(),
        lock_holder: ctx.lock.holder(),
        containers,
        docker_error,
        log_follows: ctx.counters.log_follows(),
        streams: ctx.counters.streams(),
    }
}

async fn containers(ctx: &AgentContext) -> Result<Vec<ContainerStatus>, DockerError> {
    let docker = ctx.docker.get().await?;
    let list = docker.project_containers(&ctx.app.project).await?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let inspect = docker.inspect_container(&c.id).await.ok();
        let state = inspect.as_ref().and_then(|i| i.state.as_ref());
        out.push(ContainerStatus {
            started_at: state
                .and_then(|s| s.started_at.as_deref())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| t.timestamp() > 0),
            health: state
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.status)
                .map(|h| h.to_string()),
            service: c.service,
            name: c.name,
            id: c.id,
            state: c.state,
            image: c.image,
        });
    }
    Ok(out)
}
