//! Replacing the running service container by one of a new image, with automatic rollback.
//! Only one container can hold the gateway's published port, so this is stop-then-start: the
//! old container is stopped and kept (renamed aside) until the new one is ready; if the new
//! one fails in any way, it is removed and the old one is put back and started. The new
//! container is created while the old one still serves (a running container can be renamed,
//! and creating binds no port), so the gateway is down only for stop + start + readiness.
//!
//! The engine is reached through [`SwapEngine`], so that every failure path is tested without
//! one (see the tests below); [`Live`] is the real engine.
use std::{future::Future, time::Duration};

use crate::{
    compose::{ContainerSpec, Project},
    docker::{DockerError, Engine, ProjectContainer, short_id},
    events::{EventSink, Phase, PhaseStatus},
    operation::Reporter,
    readiness::{self, Readiness, ReadinessError},
    up::{UpError, containers},
};

/// Journal phase recording which container was moved aside (message = its id), so a restart
/// after a crash knows what to put back.
pub const PHASE_KEPT: &str = "kept";

#[derive(Debug)]
pub struct Swapped {
    pub container: String,
    /// From stopping the old container to the new one being ready.
    pub downtime: Duration,
}

/// Why the new container did not take over.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error(transparent)]
    Prepare(#[from] UpError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Readiness(#[from] ReadinessError),
}

/// Why the previous container could not be put back.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("the previous container did not become ready again: {0}")]
    NotReady(ReadinessError),
}

#[derive(Debug)]
pub struct SwapFailed {
    pub reason: SwapError,
    pub last_logs: Vec<String>,
    /// Whether anything was stopped (if not, the old container never stopped serving).
    pub stopped_old: bool,
    /// `Ok` when the old container serves again (or never stopped); else why not.
    pub restored: Result<(), RestoreError>,
    pub downtime: Duration,
}

impl SwapFailed {
    fn early(reason: impl Into<SwapError>) -> Self {
        Self {
            reason: reason.into(),
            last_logs: Vec::new(),
            stopped_old: false,
            restored: Ok(()),
            downtime: Duration::ZERO,
        }
    }
}

/// The engine operations a swap of one service is made of.
pub trait SwapEngine: Sync {
    /// Makes sure the project's network and volumes exist; returns the new container's spec
    /// (running `image`) and the service's current container.
    fn prepare(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<(ContainerSpec, Option<ProjectContainer>), UpError>> + Send;
    /// Creates (does not start) the container of `spec` under `spec.name`; its id.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, DockerError>> + Send;
    fn rename(&self, id: &str, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Stops with the service's stop timeout.
    fn stop(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn ready(
        &self,
        id: &str,
        sink: &EventSink,
    ) -> impl Future<Output = Result<(), ReadinessError>> + Send;
    fn last_logs(&self, id: &str) -> impl Future<Output = Vec<String>> + Send;
}

/// The real engine, for `service` of `project`, ready when `readiness` says so.
pub struct Live<'a> {
    pub docker: &'a Engine,
    pub project: &'a Project,
    pub service: &'a str,
    pub readiness: &'a Readiness,
}

impl SwapEngine for Live<'_> {
    async fn prepare(
        &self,
        image: &str,
    ) -> Result<(ContainerSpec, Option<ProjectContainer>), UpError> {
        let spec =
            containers::service_spec(self.docker, self.project, self.service, Some(image)).await?;
        containers::ensure_resources(self.docker, self.project, &[self.service.to_owned()]).await?;
        let old = current(self.docker, self.project, self.service).await?;
        Ok((spec, old))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        containers::create(self.docker, spec, &spec.name).await
    }

    async fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        self.docker.rename(id, name).await
    }

    async fn stop(&self, id: &str) -> Result<(), DockerError> {
        let timeout = containers::stop_timeout(self.project, self.service);
        self.docker.stop(id, timeout).await
    }

    async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.docker.start(id).await
    }

    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        self.docker.remove(id).await
    }

    async fn ready(&self, id: &str, sink: &EventSink) -> Result<(), ReadinessError> {
        readiness::wait(self.docker, id, self.service, self.readiness, sink)
            .await
            .map(drop)
    }

    async fn last_logs(&self, id: &str) -> Vec<String> {
        readiness::last_logs(self.docker, id).await
    }
}

/// The name a kept container carries while its replacement starts: compose's own convention.
pub fn aside_name(old: &ProjectContainer) -> String {
    format!("{}_{}", short_id(&old.id), old.name)
}

/// The service's current container, if any (running or not).
pub async fn current(
    docker: &Engine,
    project: &Project,
    service: &str,
) -> Result<Option<ProjectContainer>, DockerError> {
    let canonical = project.container_name(service);
    docker
        .service_container(&project.name, service, &canonical)
        .await
}

/// Stops the current container of the service, starts one running `image`, waits for
/// readiness, then removes the old one; on failure puts the old one back. Every step is told
/// and journaled through `report`.
pub async fn swap(
    engine: &impl SwapEngine,
    image: &str,
    report: &Reporter<'_>,
) -> Result<Swapped, SwapFailed> {
    let (spec, old) = engine.prepare(image).await.map_err(SwapFailed::early)?;
    let steps = report.restarted();
    if let Some(old) = &old {
        // Renaming a running container is allowed; it keeps serving meanwhile.
        engine
            .rename(&old.id, &aside_name(old))
            .await
            .map_err(SwapFailed::early)?;
        steps.record(PHASE_KEPT, "done", Duration::ZERO, &old.id);
    }
    let created = format!("{} from {image}", spec.name);
    steps.step(Phase::Create, PhaseStatus::Started, created);
    let new_id = match engine.create(&spec).await {
        Ok(id) => id,
        Err(e) => {
            if let Some(old) = &old {
                let _ = engine.rename(&old.id, &old.name).await;
            }
            return Err(SwapFailed::early(e));
        }
    };

    // Downtime starts here.
    let steps = report.restarted();
    if let Some(old) = &old {
        steps.phase(
            Phase::Stop,
            PhaseStatus::Started,
            format!("stopping {}", old.name),
        );
        if let Err(e) = engine.stop(&old.id).await {
            let _ = engine.remove(&new_id).await;
            let _ = engine.rename(&old.id, &old.name).await;
            let _ = engine.start(&old.id).await;
            return Err(SwapFailed::early(e));
        }
        steps.step(Phase::Stop, PhaseStatus::Done, old.name.clone());
    }
    match start_new(engine, &new_id, &steps).await {
        Ok(()) => {
            let downtime = steps.elapsed();
            let ready = format!("ready after {:.1}s of downtime", downtime.as_secs_f64());
            steps.step(Phase::Readiness, PhaseStatus::Done, ready);
            if let Some(old) = &old
                && let Err(e) = engine.remove(&old.id).await
            {
                steps.sink.warning(format!(
                    "the previous container {} could not be removed: {e}",
                    aside_name(old)
                ));
            }
            steps.step(Phase::Cleanup, PhaseStatus::Done, String::new());
            Ok(Swapped {
                container: new_id,
                downtime,
            })
        }
        Err((reason, last_logs)) => {
            Err(roll_back(engine, &new_id, old.as_ref(), &steps, reason, last_logs).await)
        }
    }
}

/// Starts the new container and waits for it; on failure, why and its last log lines.
async fn start_new(
    engine: &impl SwapEngine,
    new_id: &str,
    steps: &Reporter<'_>,
) -> Result<(), (SwapError, Vec<String>)> {
    if let Err(e) = engine.start(new_id).await {
        return Err((e.into(), engine.last_logs(new_id).await));
    }
    steps.step(Phase::Start, PhaseStatus::Done, new_id);
    match engine.ready(new_id, steps.sink).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let logs = match e.last_logs() {
                [] => engine.last_logs(new_id).await,
                l => l.to_vec(),
            };
            Err((e.into(), logs))
        }
    }
}

/// Removes the new container and puts the old one back.
async fn roll_back(
    engine: &impl SwapEngine,
    new_id: &str,
    old: Option<&ProjectContainer>,
    steps: &Reporter<'_>,
    reason: SwapError,
    last_logs: Vec<String>,
) -> SwapFailed {
    steps.step(Phase::Readiness, PhaseStatus::Failed, reason.to_string());
    steps.step(
        Phase::Rollback,
        PhaseStatus::Started,
        "removing the new container, starting the previous one",
    );
    let _ = engine.remove(new_id).await;
    let restored = match old {
        Some(old) => put_back(engine, old, steps.sink).await,
        None => Ok(()),
    };
    let downtime = steps.elapsed();
    match &restored {
        Ok(()) => steps.step(Phase::Rollback, PhaseStatus::Done, String::new()),
        Err(e) => steps.step(Phase::Rollback, PhaseStatus::Failed, e.to_string()),
    }
    SwapFailed {
        reason,
        last_logs,
        stopped_old: old.is_some(),
        restored,
        downtime,
    }
}

/// Gives a kept container its name back, starts it, and waits for it to be ready again.
pub async fn put_back(
    engine: &impl SwapEngine,
    old: &ProjectContainer,
    sink: &EventSink,
) -> Result<(), RestoreError> {
    engine.rename(&old.id, &old.name).await?;
    engine.start(&old.id).await?;
    engine
        .ready(&old.id, sink)
        .await
        .map_err(RestoreError::NotReady)
}

#[cfg(test)]
#[path = "swap_tests.rs"]
mod tests;
