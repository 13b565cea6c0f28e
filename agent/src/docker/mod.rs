//! The one place that talks to the Docker engine (through bollard). The rest of the agent uses
//! [`Engine`]'s operations and [`DockerError`]'s classes (not found, conflict, unreachable).
//!
//! The API version is negotiated on first use, because the engines we meet range from Debian's
//! 20.10 (API 1.41) to Docker 28+ and bollard defaults to a newer API than 20.10 accepts. A
//! dockerd that is down at agent start is not fatal: the next call retries.
use std::{collections::HashMap, sync::Arc};

use bollard::Docker;
use tokio::sync::Mutex;

mod archive;
mod build;
mod containers;
mod error;
mod events;
mod images;
pub mod models;
mod networks;
mod registry;
mod session;

pub use archive::{ExecOutput, PathStat, TempContainer};
pub use build::BuildRequest;
pub use containers::{ListFilter, LogChunk, LogsRequest, first_name as container_name};
pub use error::DockerError;
pub use events::EventsRequest;
pub use registry::{PullRequest, PullStatus, RegistryCredentials};
pub use session::{Attached, ExecSpec, TtySize};

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";

/// Cheap to clone: clones share the negotiated connection.
#[derive(Debug, Clone)]
pub struct DockerHandle {
    endpoint: Option<String>,
    negotiated: Arc<Mutex<Option<Engine>>>,
}

impl DockerHandle {
    /// `endpoint`: a unix socket path or `unix://…`; `None` → `DOCKER_HOST` or the default socket.
    pub fn new(endpoint: Option<String>) -> Self {
        Self {
            endpoint,
            negotiated: Arc::new(Mutex::new(None)),
        }
    }

    pub fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
    }

    /// A client speaking the highest API version both sides support.
    pub async fn get(&self) -> Result<Engine, DockerError> {
        let mut slot = self.negotiated.lock().await;
        if let Some(engine) = slot.as_ref() {
            return Ok(engine.clone());
        }
        let unreachable = |source| DockerError::Unreachable {
            endpoint: self.endpoint(),
            source: Box::new(source),
        };
        let docker = match &self.endpoint {
            Some(ep) => {
                let path = ep.strip_prefix("unix://").unwrap_or(ep);
                Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            }
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        let engine = Engine {
            docker,
            endpoint: self.endpoint().into(),
        };
        *slot = Some(engine.clone());
        Ok(engine)
    }
}

/// A negotiated connection to the engine, cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: Arc<str>,
}

impl Engine {
    /// Wraps a connection made elsewhere (tests, the CLI's demo cleanup).
    pub fn new(docker: Docker) -> Self {
        let endpoint = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
            .into();
        Self { docker, endpoint }
    }

    /// Connects to `DOCKER_HOST` or the default socket and negotiates the API version.
    pub async fn connect() -> Result<Self, DockerError> {
        DockerHandle::new(None).get().await
    }

    /// The classifier for one call's failure.
    fn err(&self, action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
        let action = action.into();
        let endpoint = self.endpoint.clone();
        move |e| DockerError::classify(action, &endpoint, e)
    }
}

/// A container of the compose project, as `docker compose ps` would list it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    pub state: String,
    pub image: String,
    pub labels: HashMap<String, String>,
}

impl ProjectContainer {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
}

/// `call`, or [`DockerError::NoAnswer`] after `limit`: for reports, which show engine trouble
/// rather than wait on a hung dockerd.
pub async fn within<T>(
    limit: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, DockerError>>,
) -> Result<T, DockerError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(DockerError::NoAnswer(limit)))
}

/// The first 12 characters of an id, as docker prints it.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}
