//! Container operations: list, inspect, create, start, stop, restart, rename, remove, wait,
//! changes, logs and one-shot stats.
use std::{collections::HashMap, time::Duration};

use bollard::{
    container::LogOutput,
    query_parameters::{
        CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, StatsOptionsBuilder,
        StopContainerOptionsBuilder,
    },
};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{
    DockerError, Engine, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE, ProjectContainer,
    error::not_modified,
    models::{
        ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerSummary,
        FilesystemChange,
    },
};
use crate::events::LogStream;

/// Which containers to list.
#[derive(Debug, Clone, Copy)]
pub enum ListFilter<'a> {
    /// Running ones only, as `docker ps`.
    Running,
    /// All, running or not.
    All,
    /// All carrying this label (`key=value` or `key`).
    Label(&'a str),
}

/// What part of a container's log to read.
#[derive(Debug, Clone, Default)]
pub struct LogsRequest {
    pub follow: bool,
    pub timestamps: bool,
    /// Unix seconds; 0: from the start.
    pub since: i32,
    /// Unix seconds; 0: no end.
    pub until: i32,
    /// The last n lines; `None`: all.
    pub tail: Option<u64>,
}

/// One piece of a container's output, as the engine frames it (not necessarily a whole line).
#[derive(Debug, Clone, PartialEq)]
pub struct LogChunk {
    pub stream: LogStream,
    pub data: Bytes,
}

/// The name docker lists first, without its leading `/`.
pub fn first_name(names: Option<Vec<String>>) -> String {
    names
        .unwrap_or_default()
        .first()
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default()
}

/// A log frame as a chunk; stdin echoes are not output.
pub(super) fn chunk(output: LogOutput) -> Option<LogChunk> {
    match output {
        LogOutput::StdErr { message } => Some(LogChunk {
            stream: LogStream::Stderr,
            data: message,
        }),
        LogOutput::StdOut { message } | LogOutput::Console { message } => Some(LogChunk {
            stream: LogStream::Stdout,
            data: message,
        }),
        LogOutput::StdIn { .. } => None,
    }
}

impl Engine {
    pub async fn list_containers(
        &self,
        filter: ListFilter<'_>,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let mut options = ListContainersOptionsBuilder::default();
        match filter {
            ListFilter::Running => {}
            ListFilter::All => options = options.all(true),
            ListFilter::Label(label) => {
                let filters = HashMap::from([("label".to_string(), vec![label.to_owned()])]);
                options = options.all(true).filters(&filters);
            }
        }
        self.docker
            .list_containers(Some(options.build()))
            .await
            .map_err(self.err("listing containers"))
    }

    /// All containers (running or not) of the compose `project`, one-off ones excluded,
    /// sorted by name.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<ProjectContainer>, DockerError> {
        let label = format!("{LABEL_PROJECT}={project}");
        let list = self.list_containers(ListFilter::Label(&label)).await?;
        let mut out: Vec<ProjectContainer> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                if labels.get(LABEL_ONEOFF).map(String::as_str) == Some("True") {
                    return None;
                }
                Some(ProjectContainer {
                    id: c.id.unwrap_or_default(),
                    name: first_name(c.names),
                    service: labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    labels,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The current container of `service` named `name` (running or not), if any.
    pub async fn service_container(
        &self,
        project: &str,
        service: &str,
        name: &str,
    ) -> Result<Option<ProjectContainer>, DockerError> {
        Ok(self
            .project_containers(project)
            .await?
            .into_iter()
            .find(|c| c.service == service && c.name == name))
    }

    /// The name of the container publishing host `port`, if a running one does.
    pub async fn port_holder(&self, port: u16) -> Option<String> {
        let list = self.list_containers(ListFilter::Running).await.ok()?;
        list.into_iter().find_map(|c| {
            let publishes = c
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|p| p.public_port == Some(port));
            publishes.then(|| first_name(c.names))
        })
    }

    pub async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<ContainerInspectResponse, DockerError> {
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(self.err(format!("inspecting {id}")))
    }

    /// The container, or `None` when it does not exist.
    pub async fn find_container(
        &self,
        id: &str,
    ) -> Result<Option<ContainerInspectResponse>, DockerError> {
        match self.inspect_container(id).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates (does not start) a container; `name: None` lets the engine pick one.
    pub async fn create_container(
        &self,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let options = name.map(|n| CreateContainerOptionsBuilder::default().name(n).build());
        let action = match name {
            Some(n) => format!("creating {n}"),
            None => format!(
                "creating a container from {}",
                body.image.as_deref().unwrap_or("?")
            ),
        };
        self.docker
            .create_container(options, body)
            .await
            .map(|c| c.id)
            .map_err(self.err(action))
    }

    /// Starts a container; one already running is fine.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        match self.docker.start_container(id, None).await {
            Err(e) if !not_modified(&e) => Err(self.err(format!("starting {id}"))(e)),
            _ => Ok(()),
        }
    }

    /// Stops a container, giving it `timeout` to exit after SIGTERM (or its stop signal); one
    /// already stopped is fine.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), DockerError> {
        let opts = StopContainerOptionsBuilder::default()
            .t(timeout.as_secs().min(i32::MAX as u64) as i32)
            .build();
        match self.docker.stop_container(id, Some(opts)).await {
            Err(e) if !not_modified(&e) => Err(self.err(format!("stopping {id}"))(e)),
            _ => Ok(()),
        }
    }

    pub async fn restart(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .restart_container(id, None)
            .await
            .map_err(self.err(format!("restarting {id}")))
    }

    pub async fn rename(&self, id: &str, new_name: &str) -> Result<(), DockerError> {
        let opts = RenameContainerOptionsBuilder::default()
            .name(new_name)
            .build();
        self.docker
            .rename_container(id, opts)
            .await
            .map_err(self.err(format!("renaming {id} to {new_name}")))
    }

    /// Removes a container, running or not; one already gone is fine.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        self.remove_with(id, false).await
    }

    /// Removes a container with the anonymous volumes its image declared (helpers).
    pub async fn remove_with_volumes(&self, id: &str) -> Result<(), DockerError> {
        self.remove_with(id, true).await
    }

    async fn remove_with(&self, id: &str, volumes: bool) -> Result<(), DockerError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(volumes)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err(format!("removing {id}"))(e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Waits for the container to exit; its exit code.
    pub async fn wait(&self, id: &str) -> Result<Option<i64>, DockerError> {
        let mut wait = self.docker.wait_container(id, None);
        match wait.next().await {
            Some(Ok(r)) => Ok(Some(r.status_code)),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Ok(Some(code))
            }
            Some(Err(e)) => Err(self.err(format!("waiting for {id}"))(e)),
            None => Ok(None),
        }
    }

    /// What changed in the container's filesystem since it was created.
    pub async fn changes(&self, id: &str) -> Result<Vec<FilesystemChange>, DockerError> {
        self.docker
            .container_changes(id)
            .await
            .map(Option::unwrap_or_default)
            .map_err(self.err(format!("diffing {id}")))
    }

    pub fn logs(
        &self,
        id: &str,
        req: &LogsRequest,
    ) -> impl Stream<Item = Result<LogChunk, DockerError>> + Send + 'static + use<> {
        let options = LogsOptionsBuilder::default()
            .follow(req.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(req.timestamps)
            .since(req.since)
            .until(req.until)
            .tail(
                &req.tail
                    .map_or_else(|| "all".to_string(), |n| n.to_string()),
            )
            .build();
        let endpoint = self.endpoint.clone();
        let action = format!("reading the logs of {id}");
        self.docker.logs(id, Some(options)).filter_map(move |item| {
            std::future::ready(match item {
                Ok(o) => chunk(o).map(Ok),
                Err(e) => Some(Err(DockerError::classify(action.clone(), &endpoint, e))),
            })
        })
    }

    /// One-shot stats through the API; `None` when the engine does not answer within
    /// `timeout`.
    pub async fn stats_once(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<ContainerStatsResponse>, DockerError> {
        let options = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stream = self.docker.stats(id, Some(options));
        match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Some(Ok(s))) => Ok(Some(s)),
            Ok(Some(Err(e))) => Err(self.err(format!("reading stats of {id}"))(e)),
            Ok(None) | Err(_) => Ok(None),
        }
    }
}
