//! Memory of the project's containers: state and OOM facts from `inspect`, usage from the
//! container's cgroup (fast) or docker's one-shot stats (fallback).
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::cgroup::{self, CgroupMounts};
use crate::docker::{DockerError, Engine, ProjectContainer};

/// dockerd 20.10 answers a one-shot stats request at its next collection tick (≤ 1 s).
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a container's usage figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    Cgroup,
    DockerStats,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Cgroup => "cgroup",
            UsageSource::DockerStats => "docker-stats",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerMemory {
    pub name: String,
    pub id: String,
    pub service: String,
    /// docker's state: running, exited, restarting, …
    pub state: String,
    pub running: bool,
    /// The main process's pid on the host; 0 when not running.
    pub pid: i64,
    /// Usage without inactive page cache; `None` when not running or unreadable.
    pub usage: Option<u64>,
    /// The configured limit (`mem_limit`); `None` when unlimited.
    pub limit: Option<u64>,
    /// What usage is measured against: the limit, else the host's RAM.
    pub effective_limit: u64,
    pub source: Option<UsageSource>,
    pub oom_killed: bool,
    pub exit_code: i64,
    pub restart_count: u64,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ContainerMemory {
    pub fn percent(&self) -> Option<f64> {
        let usage = self.usage?;
        (self.effective_limit > 0).then(|| usage as f64 * 100.0 / self.effective_limit as f64)
    }
}

/// All containers of `project`, concurrently.
pub async fn snapshot(
    docker: &Engine,
    project: &str,
    mounts: &CgroupMounts,
    host_total: u64,
) -> Result<Vec<ContainerMemory>, DockerError> {
    let list = docker.project_containers(project).await?;
    Ok(
        futures::future::join_all(list.into_iter().map(|c| one(docker, c, mounts, host_total)))
            .await,
    )
}

async fn one(
    docker: &Engine,
    c: ProjectContainer,
    mounts: &CgroupMounts,
    host_total: u64,
) -> ContainerMemory {
    // A container removed between list and inspect is reported with what the list said.
    let inspect = docker.inspect_container(&c.id).await.ok();
    let state = inspect.as_ref().and_then(|i| i.state.as_ref());
    let running = state
        .and_then(|s| s.running)
        .unwrap_or(c.state == "running");
    let configured_limit = inspect
        .as_ref()
        .and_then(|i| i.host_config.as_ref())
        .and_then(|h| h.memory)
        .filter(|&m| m > 0)
        .map(|m| m as u64);
    let mut memory = ContainerMemory {
        state: state
            .and_then(|s| s.status)
            .map_or_else(|| c.state.clone(), |s| s.to_string()),
        running,
        pid: state.and_then(|s| s.pid).filter(|_| running).unwrap_or(0),
        usage: None,
        limit: configured_limit,
        effective_limit: configured_limit.unwrap_or(host_total),
        source: None,
        oom_killed: state.and_then(|s| s.oom_killed).unwrap_or(false),
        exit_code: state.and_then(|s| s.exit_code).unwrap_or(0),
        restart_count: inspect
            .as_ref()
            .and_then(|i| i.restart_count)
            .unwrap_or(0)
            .max(0) as u64,
        finished_at: state
            .and_then(|s| s.finished_at.as_deref())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| t.timestamp() > 0),
        name: c.name,
        id: c.id,
        service: c.service,
    };
    if !running {
        return memory;
    }
    let pid = memory.pid;
    let measured = match (pid > 0).then(|| cgroup::read_for_pid(mounts, pid)) {
        Some(Ok(m)) => Some((m, UsageSource::Cgroup)),
        other => {
            if let Some(Err(e)) = other {
                tracing::debug!(container = %memory.name, error = %e, "falling back to docker stats");
            }
            docker_stats(docker, &memory.id)
                .await
                .map(|m| (m, UsageSource::DockerStats))
        }
    };
    if let Some((m, source)) = measured {
        memory.usage = Some(m.usage);
        memory.source = Some(source);
        if memory.limit.is_none()
            && let Some(l) = m.limit.filter(|&l| l < host_total)
        {
            // A limit set on a parent cgroup (e.g. a systemd slice) still bounds the container.
            memory.effective_limit = l;
        }
    }
    memory
}

/// One-shot stats through the API: works whatever the cgroup layout or namespace.
pub async fn docker_stats(docker: &Engine, id: &str) -> Option<cgroup::CgroupMemory> {
    let stats = match docker.stats_once(id, STATS_TIMEOUT).await {
        Ok(s) => s?,
        Err(e) => {
            tracing::debug!(container = id, error = %e, "docker stats failed");
            return None;
        }
    };
    let m = stats.memory_stats?;
    cgroup::from_docker_stats(m.usage, m.limit, m.stats.as_ref())
}
