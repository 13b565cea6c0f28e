//! `clawops exec [--service S] -- CMD…`: a process in the service's running container, as
//! `docker compose exec` runs it (the container's user and working directory).
use super::{Process, Session, SessionError, SessionRequest, Started};
use crate::docker::{Engine, ExecSpec};

/// Finds the service's running container and starts `req.argv` in it, attached.
pub async fn open(
    project: &str,
    engine: &Engine,
    req: &SessionRequest,
) -> Result<Session, SessionError> {
    let running: Vec<_> = engine
        .project_containers(project)
        .await?
        .into_iter()
        .filter(|c| c.is_running())
        .collect();
    let Some(container) = running.iter().find(|c| c.service == req.service).cloned() else {
        return Err(SessionError::NotRunning {
            service: req.service.clone(),
            project: project.to_owned(),
            running: running.into_iter().map(|c| c.service).collect(),
        });
    };
    let spec = ExecSpec {
        argv: req.argv.clone(),
        env: req.env.clone(),
        tty: req.tty,
        stdin: req.stdin,
    };
    let (exec_id, attached) = engine.exec_attached(&container.id, &spec).await?;
    if let (true, Some(size)) = (req.tty, req.size)
        && let Err(e) = engine.resize_exec(&exec_id, size).await
    {
        // It may already have exited; its output still comes.
        tracing::debug!(error = %e, "initial resize failed");
    }
    Ok(Session {
        engine: engine.clone(),
        started: Started {
            container_id: container.id,
            container_name: container.name,
            exec_id: Some(exec_id.clone()),
        },
        process: Process::Exec {
            exec_id,
            service: req.service.clone(),
        },
        attached,
    })
}
