//! The Docker engine connection. The API version is negotiated on first use, because the engines
//! we meet range from Debian's 20.10 (API 1.41) to Docker 28+ and bollard defaults to a newer API
//! than 20.10 accepts. A dockerd that is down at agent start is not fatal: the next call retries.
use std::collections::HashMap;

use bollard::Docker;
use tokio::sync::Mutex;

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {endpoint}: {source}. Is dockerd running (`systemctl status docker`) and may this user use it (group `docker`)?"
    )]
    Unreachable {
        endpoint: String,
        source: bollard::errors::Error,
    },
    #[error("Docker engine: {0}")]
    Api(#[from] bollard::errors::Error),
}

#[derive(Debug)]
pub struct DockerHandle {
    endpoint: Option<String>,
    negotiated: Mutex<Option<Docker>>,
}

impl DockerHandle {
    /// `endpoint`: a unix socket path or `unix://…`; `None` → `DOCKER_HOST` or the default socket.
    pub fn new(endpoint: Option<String>) -> Self {
        Self {
            endpoint,
            negotiated: Mutex::new(None),
        }
    }

    pub fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
    }

    /// A client speaking the highest API version both sides support.
    pub async fn get(&self) -> Result<Docker, DockerError> {
        let mut slot = self.negotiated.lock().await;
        if let Some(docker) = slot.as_ref() {
            return Ok(docker.clone());
        }
        let unreachable = |source| DockerError::Unreachable {
            endpoint: self.endpoint(),
            source,
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
        *slot = Some(docker.clone());
        Ok(docker)
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

/// All containers (running or not) labelled as belonging to `project`, one-off ones excluded.
pub async fn project_containers(
    docker: &Docker,
    project: &str,
) -> Result<Vec<ProjectContainer>, DockerError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={project}")],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker.list_containers(Some(options)).await?;
    let mut out: Vec<ProjectContainer> = list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            if labels.get(LABEL_ONEOFF).map(String::as_str) == Some("True") {
                return None;
            }
            Some(ProjectContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
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
