//! Containers that look like a compose service's (compose labels), created directly on the
//! engine so tests of logs, memory and verify need no compose file.
use std::collections::HashMap;

use bollard::{
    models::{ContainerCreateBody, HostConfig},
    query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions},
};

use crate::docker;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ServiceContainer {
    pub project: String,
    pub service: String,
    pub image: String,
    /// argv; empty: the image's CMD.
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub memory_limit: Option<i64>,
    /// Container name; default `<project>-<service>-1`.
    pub name: Option<String>,
    /// Bind mounts, `host:container[:ro]`.
    pub binds: Vec<String>,
}

impl ServiceContainer {
    pub fn new(project: &str, service: &str, image: &str) -> Self {
        Self {
            project: project.into(),
            service: service.into(),
            image: image.into(),
            ..Default::default()
        }
    }

    pub fn cmd(mut self, argv: &[&str]) -> Self {
        self.cmd = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    /// `/bin/sh -c SCRIPT` (test scripts are fixed strings, not user data).
    pub fn script(self, script: &str) -> Self {
        self.cmd(&["/bin/sh", "-c", script])
    }

    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Bind-mounts host directory `host` at `container` (read-write).
    pub fn bind(mut self, host: &std::path::Path, container: &str) -> Self {
        self.binds.push(format!("{}:{container}", host.display()));
        self
    }

    /// Creates and starts it; returns the container id. Remove it with the project's
    /// [`crate::cleanup::ProjectGuard`].
    pub async fn start(&self) -> String {
        let docker = docker::connect().await;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}-1", self.project, self.service));
        let labels = HashMap::from([
            (
                "com.docker.compose.project".to_string(),
                self.project.clone(),
            ),
            (
                "com.docker.compose.service".to_string(),
                self.service.clone(),
            ),
            (
                "com.docker.compose.container-number".to_string(),
                "1".to_string(),
            ),
            ("com.docker.compose.oneoff".to_string(), "False".to_string()),
            ("clawops.test".to_string(), "1".to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: (!self.cmd.is_empty()).then(|| self.cmd.clone()),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                memory: self.memory_limit,
                // No swap beyond the limit, so the OOM killer acts at the limit.
                memory_swap: self.memory_limit,
                binds: (!self.binds.is_empty()).then(|| self.binds.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        created.id
    }
}

/// What a container runs: its id and the registry digests (`repo@sha256:…`) of its image.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub id: String,
    pub repo_digests: Vec<String>,
}

/// Inspects the container `name` and the image it runs.
pub async fn inspect(name: &str) -> Running {
    let docker = docker::connect().await;
    let c = docker
        .inspect_container(name, None)
        .await
        .unwrap_or_else(|e| panic!("inspect {name}: {e}"));
    let image = c.image.unwrap_or_default();
    let repo_digests = docker
        .inspect_image(&image)
        .await
        .ok()
        .and_then(|i| i.repo_digests)
        .unwrap_or_default();
    Running {
        id: c.id.unwrap_or_default(),
        repo_digests,
    }
}
