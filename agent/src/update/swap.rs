//! Replacing the running service container by one of a new image, with automatic rollback.
//! Only one container can hold the gateway's published port, so this is stop-then-start: the
//! old container is stopped and kept (renamed aside) until the new one is ready; if the new
//! one fails in any way, it is removed and the old one is put back and started. The new
//! container is created while the old one still serves (a running container can be renamed,
//! and creating binds no port), so the gateway is down only for stop + start + readiness.
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::{
    compose::Project,
    docker::{ProjectContainer, project_containers},
    events::{EventSink, Phase, PhaseStatus},
    journal::Journal,
    readiness::{self, Readiness},
    up::containers,
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

#[derive(Debug)]
pub struct SwapFailed {
    pub reason: String,
    pub last_logs: Vec<String>,
    /// Whether anything was stopped (if not, the old container never stopped serving).
    pub stopped_old: bool,
    /// `Ok` when the old container serves again (or never stopped); else why not.
    pub restored: Result<(), String>,
    pub downtime: Duration,
}

/// The name a kept container carries while its replacement starts: compose's own convention.
pub fn aside_name(old: &ProjectContainer) -> String {
    format!("{}_{}", &old.id[..old.id.len().min(12)], old.name)
}

/// The service's current container, if any (running or not).
pub async fn current(
    docker: &Docker,
    project: &Project,
    service: &str,
) -> Result<Option<ProjectContainer>, crate::docker::DockerError> {
    let canonical = project.container_name(service);
    Ok(project_containers(docker, &project.name)
        .await?
        .into_iter()
        .find(|c| c.service == service && c.name == canonical))
}

/// Stops the current container of `service`, starts one running `image`, waits for readiness,
/// then removes the old one; on failure puts the old one back.
#[allow(clippy::too_many_arguments)]
pub async fn swap(
    docker: &Docker,
    project: &Project,
    service: &str,
    image: &str,
    readiness: &Readiness,
    journal: &Journal,
    op_id: &str,
    sink: &EventSink,
) -> Result<Swapped, SwapFailed> {
    let fail_early = |reason: String| SwapFailed {
        reason,
        last_logs: Vec::new(),
        stopped_old: false,
        restored: Ok(()),
        downtime: Duration::ZERO,
    };
    let spec = containers::service_spec(docker, project, service, Some(image))
        .await
        .map_err(|e| fail_early(e.to_string()))?;
    containers::ensure_resources(docker, project, &[service.to_owned()])
        .await
        .map_err(|e| fail_early(e.to_string()))?;
    let old = current(docker, project, service)
        .await
        .map_err(|e| fail_early(e.to_string()))?;

    let started = Instant::now();
    let step = |phase: Phase, status: PhaseStatus, message: String| {
        sink.phase(phase, status, service, message.clone(), started.elapsed());
        let _ = journal.phase(
            op_id,
            phase.as_str(),
            status.as_str(),
            started.elapsed().as_millis() as u64,
            &message,
        );
    };
    if let Some(old) = &old {
        // Renaming a running container is allowed; it keeps serving meanwhile.
        if let Err(e) = containers::rename(docker, &old.id, &aside_name(old)).await {
            return Err(fail_early(e.to_string()));
        }
        let _ = journal.phase(op_id, PHASE_KEPT, "done", 0, &old.id);
    }
    step(
        Phase::Create,
        PhaseStatus::Started,
        format!("{} from {image}", spec.name),
    );
    let new_id = match containers::create(docker, &spec, &spec.name).await {
        Ok(id) => id,
        Err(e) => {
            if let Some(old) = &old {
                let _ = containers::rename(docker, &old.id, &old.name).await;
            }
            return Err(fail_early(e.to_string()));
        }
    };

    // Downtime starts here.
    let started = Instant::now();
    if let Some(old) = &old {
        sink.phase(
            Phase::Stop,
            PhaseStatus::Started,
            service,
            format!("stopping {}", old.name),
            Duration::ZERO,
        );
        let timeout = containers::stop_timeout(project, service);
        if let Err(e) = containers::stop(docker, &old.id, timeout).await {
            let _ = containers::remove(docker, &new_id).await;
            let _ = containers::rename(docker, &old.id, &old.name).await;
            let _ = docker.start_container(&old.id, None).await;
            return Err(fail_early(e.to_string()));
        }
        step(Phase::Stop, PhaseStatus::Done, old.name.clone());
    }

    let attempt = async {
        if let Err(e) = docker.start_container(&new_id, None).await {
            let logs = readiness::last_logs(docker, &new_id).await;
            return Err((
                format!("starting {}: {e}", spec.name),
                logs,
                Some(new_id.clone()),
            ));
        }
        step(Phase::Start, PhaseStatus::Done, new_id.clone());
        match readiness::wait(docker, &new_id, service, readiness, sink).await {
            Ok(_) => Ok(new_id.clone()),
            Err(e) => {
                let logs = match e.last_logs() {
                    [] => readiness::last_logs(docker, &new_id).await,
                    l => l.to_vec(),
                };
                Err((e.to_string(), logs, Some(new_id.clone())))
            }
        }
    };
    match attempt.await {
        Ok(id) => {
            let downtime = started.elapsed();
            step(
                Phase::Readiness,
                PhaseStatus::Done,
                format!("ready after {:.1}s of downtime", downtime.as_secs_f64()),
            );
            if let Some(old) = &old
                && let Err(e) = containers::remove(docker, &old.id).await
            {
                sink.warning(format!(
                    "the previous container {} could not be removed: {e}",
                    aside_name(old)
                ));
            }
            step(Phase::Cleanup, PhaseStatus::Done, String::new());
            Ok(Swapped {
                container: id,
                downtime,
            })
        }
        Err((reason, last_logs, new_id)) => {
            step(Phase::Readiness, PhaseStatus::Failed, reason.clone());
            step(
                Phase::Rollback,
                PhaseStatus::Started,
                "removing the new container, starting the previous one".into(),
            );
            if let Some(id) = &new_id {
                let _ = containers::remove(docker, id).await;
            }
            let restored = match &old {
                Some(old) => put_back(docker, old, service, readiness, sink).await,
                None => Ok(()),
            };
            let downtime = started.elapsed();
            match &restored {
                Ok(()) => step(Phase::Rollback, PhaseStatus::Done, String::new()),
                Err(e) => step(Phase::Rollback, PhaseStatus::Failed, e.clone()),
            }
            Err(SwapFailed {
                reason,
                last_logs,
                stopped_old: old.is_some(),
                restored,
                downtime,
            })
        }
    }
}

/// Gives a kept container its name back, starts it, and waits for it to be ready again.
pub async fn put_back(
    docker: &Docker,
    old: &ProjectContainer,
    service: &str,
    readiness: &Readiness,
    sink: &EventSink,
) -> Result<(), String> {
    containers::rename(docker, &old.id, &old.name)
        .await
        .map_err(|e| e.to_string())?;
    if let Err(e) = docker.start_container(&old.id, None).await
        && !matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 304,
                ..
            }
        )
    {
        return Err(format!("starting {}: {e}", old.name));
    }
    readiness::wait(docker, &old.id, service, readiness, sink)
        .await
        .map(|_| ())
        .map_err(|e| format!("the previous container did not become ready again: {e}"))
}
