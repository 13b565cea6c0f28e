//! The steps of one Up, each on its own: preflight of every service, orphans, bringing one
//! service's container up to date, and waiting for the app's service.
use std::{collections::HashMap, time::Duration};

use super::{Action, UpError, containers, preflight};
use crate::{
    compose::{ContainerSpec, Project},
    config::ResolvedApp,
    context::AgentContext,
    docker::{Engine, LABEL_CONFIG_HASH, ProjectContainer, short_id},
    events::{Phase, PhaseStatus},
    operation::Reporter,
    readiness::{self, Readiness},
};

/// Looks up every service's image (no pull) and checks its mounts and ports.
pub(super) async fn preflight_all(
    docker: &Engine,
    app: &ResolvedApp,
    project: &Project,
    order: &[String],
    existing: &HashMap<String, ProjectContainer>,
    progress: &Reporter<'_>,
) -> Result<(), UpError> {
    let mut images = HashMap::new();
    for s in order {
        let image = containers::image_info(docker, project, s, None).await?;
        images.insert(s.clone(), image);
    }
    for s in order {
        let notes =
            preflight::preflight(docker, app, project, s, &images[s], existing.get(s)).await?;
        for n in notes {
            progress.service_phase(Phase::Preflight, PhaseStatus::Started, s, n);
        }
    }
    let checked = format!("{} service(s) checked", order.len());
    progress.service_phase(Phase::Preflight, PhaseStatus::Done, "", checked);
    Ok(())
}

/// Removes the containers whose service left the compose file, or warns about them.
pub(super) async fn orphans(
    docker: &Engine,
    orphans: &[ProjectContainer],
    remove: bool,
    progress: &Reporter<'_>,
) -> Result<(), UpError> {
    if orphans.is_empty() {
        return Ok(());
    }
    if !remove {
        let names: Vec<&str> = orphans.iter().map(|c| c.name.as_str()).collect();
        progress.sink.warning(format!(
            "orphan containers (their service is not in the compose file): {}; run up with --remove-orphans to remove them",
            names.join(", ")
        ));
        return Ok(());
    }
    for c in orphans {
        docker.stop(&c.id, containers::DEFAULT_STOP_TIMEOUT).await?;
        docker.remove(&c.id).await?;
        let removed = format!("removed orphan {}", c.name);
        progress.service_phase(Phase::Cleanup, PhaseStatus::Done, &c.service, removed);
    }
    Ok(())
}

/// One service's container and what Up decided for it.
pub(super) struct Bring<'a> {
    pub docker: &'a Engine,
    pub project: &'a Project,
    pub spec: &'a ContainerSpec,
    pub current: Option<&'a ProjectContainer>,
    pub force_recreate: bool,
    /// A dependency with `restart: true` was recreated.
    pub deps_recreated: bool,
}

impl Bring<'_> {
    /// Leaves, starts, restarts, recreates or creates the container; its id and what was done.
    pub(super) async fn up(&self, progress: &Reporter<'_>) -> Result<(String, Action), UpError> {
        let (docker, spec, s) = (self.docker, self.spec, self.spec.service.as_str());
        let same = self
            .current
            .is_some_and(|c| c.labels.get(LABEL_CONFIG_HASH) == Some(&spec.config_hash));
        let (id, action) = match self.current {
            Some(c) if same && !self.force_recreate => {
                if !c.is_running() {
                    docker.start(&c.id).await?;
                    (c.id.clone(), Action::Started)
                } else if self.deps_recreated {
                    docker.restart(&c.id).await?;
                    (c.id.clone(), Action::Restarted)
                } else {
                    let message = format!("{} is up to date", c.name);
                    progress.service_phase(Phase::Create, PhaseStatus::Skipped, s, message);
                    return Ok((c.id.clone(), Action::Unchanged));
                }
            }
            Some(c) => {
                let why = if same {
                    "--force-recreate"
                } else {
                    "its configuration changed"
                };
                let message = format!("recreating {} ({why})", spec.name);
                progress.service_phase(Phase::Create, PhaseStatus::Started, s, message);
                let timeout = containers::stop_timeout(self.project, s);
                let id = containers::replace(docker, spec, c, timeout).await?;
                (id, Action::Recreated)
            }
            None => {
                let message = format!("creating {}", spec.name);
                progress.service_phase(Phase::Create, PhaseStatus::Started, s, message);
                let id = containers::create_and_start(docker, spec, &spec.name).await?;
                (id, Action::Created)
            }
        };
        let message = format!("{} {} ({})", spec.name, action.as_str(), short_id(&id));
        progress.service_phase(Phase::Start, PhaseStatus::Done, s, message);
        Ok((id, action))
    }
}

/// Waits for the app's service to be ready (unless `no_wait`); how long it took.
pub(super) async fn wait_ready(
    ctx: &AgentContext,
    docker: &Engine,
    project: &Project,
    ids: &HashMap<String, String>,
    no_wait: bool,
    progress: &Reporter<'_>,
) -> Result<Option<Duration>, UpError> {
    let app_service = &ctx.config.app.service;
    if no_wait {
        progress.service_phase(
            Phase::Readiness,
            PhaseStatus::Skipped,
            app_service,
            "--no-wait",
        );
        return Ok(None);
    }
    let Some(id) = ids.get(app_service) else {
        if !project.services.contains_key(app_service) {
            progress.sink.warning(format!(
                "[app] service {app_service:?} is not in the compose project (services: {}): no readiness check was done; set [app] service in agent.toml",
                project.services.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        return Ok(None);
    };
    let check = Readiness::from_config(&ctx.config.readiness)?;
    match readiness::wait(docker, id, app_service, &check, progress.sink).await {
        Ok(ready) => {
            let message = format!("ready after {:.1}s", ready.waited.as_secs_f64());
            progress.journal(Phase::Readiness, PhaseStatus::Done, &message);
            Ok(Some(ready.waited))
        }
        Err(e) => {
            progress.journal(Phase::Readiness, PhaseStatus::Failed, &e.to_string());
            Err(e.into())
        }
    }
}
