//! Start-up recovery. An operation still open in the journal means the agent died during it
//! (kill -9, OOM kill, reboot). Before serving anything, make sure one container of the service
//! runs — the new one if it had been found ready, else the previous one that the update kept
//! aside — then close the entry as interrupted, so the lock is free and history is honest.
use crate::{
    compose::ComposeError,
    context::AgentContext,
    docker::{DockerError, Engine, short_id},
    journal::{Entry, Finish, Outcome},
    operation::OperationKind,
    up,
    update::swap::PHASE_KEPT,
};

/// Why the service's containers could not be checked at restart.
#[derive(Debug, thiserror::Error)]
enum RecoverError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
}

/// Recovers every interrupted operation; returns how many there were.
pub async fn recover(ctx: &AgentContext) -> usize {
    let open = ctx.journal.unfinished();
    for entry in &open {
        tracing::warn!(operation = %entry.id, kind = %entry.kind, "operation was interrupted by an agent restart");
        let last_phase = entry
            .phases
            .last()
            .map(|p| format!(" during {} ({})", p.phase, p.status))
            .unwrap_or_default();
        let touched =
            OperationKind::parse(&entry.kind).is_some_and(OperationKind::touches_containers);
        let containers = match touched {
            true => match restore_service(ctx, entry).await {
                Ok(done) => done,
                Err(e) => format!("the service's containers could not be checked: {e}"),
            },
            false => String::new(),
        };
        let result = ctx.journal.finish(
            &entry.id,
            Outcome::Interrupted,
            Finish {
                from_sha: entry.from_sha.clone(),
                message: format!("the agent stopped{last_phase}; at restart: {containers}")
                    .trim_end_matches("; at restart: ")
                    .to_owned(),
                ..Default::default()
            },
        );
        if let Err(e) = result {
            tracing::error!(operation = %entry.id, error = %e, "cannot close the interrupted operation");
        }
    }
    open.len()
}

async fn restore_service(ctx: &AgentContext, entry: &Entry) -> Result<String, RecoverError> {
    let docker = ctx.docker.get().await?;
    let project = up::load_project(&ctx.config, &ctx.app)?;
    let service = ctx.config.app.service.as_str();
    let canonical = project.container_name(service);
    let kept = entry
        .phases
        .iter()
        .rev()
        .find(|p| p.phase == PHASE_KEPT && !p.message.is_empty())
        .map(|p| p.message.clone());
    // The journal line naming the kept container is written after the rename: an agent that
    // died in between left it under its aside name, which says the same.
    let kept = match kept {
        Some(id) => Some(id),
        None => aside(&docker, &project.name, service, &canonical).await,
    };
    let new_was_ready = entry
        .phases
        .iter()
        .any(|p| p.phase == "readiness" && p.status == "done");
    let exists = |id: &str| {
        let docker = docker.clone();
        let id = id.to_owned();
        async move { docker.inspect_container(&id).await.ok() }
    };

    if let Some(kept) = kept.as_deref()
        && exists(kept).await.is_some()
    {
        if new_was_ready {
            docker.remove(kept).await?;
            ensure_running(&docker, &canonical).await?;
            return Ok("the new container had become ready; removed the previous one".into());
        }
        // Put the previous container back under its name and start it. A create the dead
        // agent had sent can still land and take the name meanwhile: remove whatever else
        // holds it (the new, never ready container) and try again.
        let mut attempt = 0;
        loop {
            match exists(&canonical).await {
                Some(current) if current.id.as_deref() == Some(kept) => break,
                Some(_) => docker.remove(&canonical).await?,
                None => {}
            }
            match docker.rename(kept, &canonical).await {
                Ok(()) => break,
                Err(_) if attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        ensure_running(&docker, &canonical).await?;
        return Ok(format!("put the previous container back ({canonical})"));
    }
    match exists(&canonical).await {
        Some(_) => {
            ensure_running(&docker, &canonical).await?;
            Ok(format!("{canonical} is running"))
        }
        None => Ok(format!(
            "no container of {service} exists; run `clawops up`"
        )),
    }
}

/// A container of `service` renamed aside by an update (`<id12>_<canonical>`), if any.
async fn aside(docker: &Engine, project: &str, service: &str, canonical: &str) -> Option<String> {
    docker
        .project_containers(project)
        .await
        .ok()?
        .into_iter()
        .find(|c| c.service == service && c.name == format!("{}_{canonical}", short_id(&c.id)))
        .map(|c| c.id)
}

async fn ensure_running(docker: &Engine, name: &str) -> Result<(), DockerError> {
    let info = docker.inspect_container(name).await?;
    if info.state.and_then(|s| s.running).unwrap_or(false) {
        return Ok(());
    }
    docker.start(name).await
}
