//! What Up works from: the project's current containers (and orphans), and the `depends_on`
//! conditions a service waits for before it starts.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::UpError;
use crate::{
    compose::{Condition, Project},
    context::AgentContext,
    docker::{Engine, ProjectContainer},
    events::EventSink,
    readiness::{self, Readiness},
};

/// The project's containers by service (the canonical `-1` one preferred) and the orphans.
pub(super) async fn current_containers(
    docker: &Engine,
    project: &Project,
    sink: &EventSink,
) -> Result<(HashMap<String, ProjectContainer>, Vec<ProjectContainer>), UpError> {
    let mut by_service: HashMap<String, ProjectContainer> = HashMap::new();
    let mut orphans = Vec::new();
    for c in docker.project_containers(&project.name).await? {
        if !project.services.contains_key(&c.service) {
            // A service whose profiles are not enabled is left alone, as compose does.
            if !project.disabled_services.contains(&c.service) {
                orphans.push(c);
            }
            continue;
        }
        let canonical = project.container_name(&c.service);
        match by_service.get(&c.service) {
            Some(prev) if prev.name == canonical => {
                sink.warning(format!(
                    "service {} also has container {}; clawops manages {}",
                    c.service, c.name, canonical
                ));
            }
            Some(prev) => {
                sink.warning(format!(
                    "service {} also has container {}; clawops manages {}",
                    c.service, prev.name, c.name
                ));
                by_service.insert(c.service.clone(), c);
            }
            None => {
                by_service.insert(c.service.clone(), c);
            }
        }
    }
    Ok((by_service, orphans))
}

/// Waits for `depends_on` conditions: `service_healthy` (the dependency's healthcheck) and
/// `service_completed_successfully` (it exited 0), within the readiness timeout.
pub(super) async fn wait_dependencies(
    docker: &Engine,
    project: &Project,
    service: &str,
    ids: &HashMap<String, String>,
    ctx: &AgentContext,
    sink: &EventSink,
) -> Result<(), UpError> {
    let timeout = Duration::from_secs(ctx.config.readiness.timeout_secs);
    for (dep, d) in &project.services[service].depends_on {
        let Some(id) = ids.get(dep) else { continue };
        let fail = |message: String| UpError::Dependency {
            service: service.to_owned(),
            dependency: dep.clone(),
            message,
        };
        match d.condition {
            Condition::Started => {}
            Condition::Healthy => {
                let check = Readiness {
                    url: None,
                    log_regex: None,
                    healthcheck: true,
                    timeout,
                };
                readiness::wait(docker, id, dep, &check, sink)
                    .await
                    .map_err(|e| fail(format!("did not become healthy: {e}")))?;
            }
            Condition::CompletedSuccessfully => {
                let deadline = Instant::now() + timeout;
                loop {
                    let info = docker.inspect_container(id).await?;
                    let st = info.state.unwrap_or_default();
                    if st.running != Some(true) {
                        match st.exit_code.unwrap_or(0) {
                            0 => break,
                            code => {
                                return Err(fail(format!(
                                    "exited with code {code}, but service_completed_successfully requires 0"
                                )));
                            }
                        }
                    }
                    if Instant::now() > deadline {
                        return Err(fail(format!(
                            "did not complete within {}s",
                            timeout.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
    Ok(())
}
