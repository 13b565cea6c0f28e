//! What is checked: the service's container (found by its compose labels) and the image it was
//! created from, or an image named in the request. The container's config holds the effective
//! environment — the image's plus the service's `environment:` — so its PATH is the one the
//! gateway runs with.
use std::{collections::HashMap, time::Duration};

use super::{VerifyError, report::ContainerInfo, resolve::short};
use crate::{
    config::{Config, ResolvedApp},
    docker::{
        Engine, LABEL_SERVICE, TempContainer,
        models::{ContainerCreateBody, HostConfig},
    },
};

/// Docker's PATH for containers whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Marks the throwaway containers, so ones left by a killed agent can be found and removed.
pub const SCRATCH_LABEL: &str = "clawops.verify-scratch";
/// A throwaway container older than this belongs to no running verification.
const STALE_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Target {
    /// What the throwaway container is created from: the container's image id, or the name.
    pub image_ref: String,
    pub image_name: String,
    pub image_id: String,
    pub container: Option<ContainerInfo>,
    pub path_env: Option<String>,
    pub notes: Vec<String>,
}

pub async fn find(
    docker: &Engine,
    config: &Config,
    app: &ResolvedApp,
    service: &str,
    image: Option<&str>,
) -> Result<Target, VerifyError> {
    let project = app.project.as_str();
    if let Some(image) = image {
        let note = format!(
            "checked image {image} alone: PATH from its config, no container compared, nothing run"
        );
        return image_target(docker, image, None, note).await;
    }
    let mut candidates: Vec<_> = docker
        .project_containers(project)
        .await?
        .into_iter()
        .filter(|c| c.labels.get(LABEL_SERVICE).map(String::as_str) == Some(service))
        .collect();
    // A running one first; compose numbers replicas, the first is the one `exec` picks.
    candidates.sort_by_key(|c| c.state != "running");
    let Some(chosen) = candidates.first() else {
        return from_compose(docker, config, app, service).await;
    };
    let inspect = docker
        .inspect_container(&chosen.id)
        .await
        .map_err(|source| VerifyError::Inspect {
            what: format!("container {}", chosen.name),
            source,
        })?;
    let config = inspect.config.unwrap_or_default();
    let state = inspect.state.unwrap_or_default();
    let running = state.running == Some(true);
    let state_name = state.status.map(|s| s.to_string()).unwrap_or_default();
    let image_id = inspect.image.unwrap_or_default();
    let image_name = config.image.clone().unwrap_or_else(|| image_id.clone());
    let mut notes = Vec::new();
    if candidates.len() > 1 {
        notes.push(format!(
            "service {service} has {} containers; checked {}",
            candidates.len(),
            chosen.name
        ));
    }
    if !running {
        notes.push(format!(
            "container {} is {}: image checks only, nothing was run",
            chosen.name,
            if state_name.is_empty() {
                "not running"
            } else {
                &state_name
            }
        ));
    }
    Ok(Target {
        image_ref: image_id.clone(),
        image_name,
        image_id,
        container: Some(ContainerInfo {
            id: chosen.id.clone(),
            name: chosen.name.clone(),
            running,
            state: state_name,
            started_at: state.started_at.clone().unwrap_or_default(),
            mounts: inspect
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.destination)
                .collect(),
        }),
        path_env: path_of(&config.env.unwrap_or_default()),
        notes,
    })
}

/// No container: the compose file still names the service's image and its PATH.
async fn from_compose(
    docker: &Engine,
    config: &Config,
    app: &ResolvedApp,
    service: &str,
) -> Result<Target, VerifyError> {
    let no_container = |why: String| VerifyError::NoContainer {
        service: service.to_owned(),
        project: app.project.clone(),
        why,
    };
    let project = crate::up::load_project(config, app)
        .map_err(|e| no_container(format!("its image is unknown too: {e}")))?;
    let svc = project.service(service).ok_or_else(|| {
        no_container(format!(
            "and the compose project has no service {service:?} (it has: {})",
            project
                .services
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let image = svc.image_ref(&project.name);
    let note = format!(
        "no container of service {service}: checked its image {image} from the compose file, \
         nothing run"
    );
    image_target(docker, &image, svc.environment.get("PATH").cloned(), note).await
}

/// An image checked on its own. `path`: the service's `environment: PATH=…`, over the image's.
async fn image_target(
    docker: &Engine,
    image: &str,
    path: Option<String>,
    note: String,
) -> Result<Target, VerifyError> {
    let inspect = docker
        .inspect_image(image)
        .await
        .map_err(|source| match source {
            source if source.is_not_found() => VerifyError::ImageNotFound {
                image: image.to_owned(),
            },
            source => VerifyError::Inspect {
                what: format!("image {image}"),
                source,
            },
        })?;
    let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
    Ok(Target {
        image_ref: image.to_owned(),
        image_name: image.to_owned(),
        image_id: inspect.id.unwrap_or_default(),
        container: None,
        path_env: path.or_else(|| path_of(&env)),
        notes: vec![note],
    })
}

/// The base of an overlaid image (its `clawops.overlay-base` label), when that image is still
/// here to compare with; a note when it is gone.
pub async fn overlay_base(
    docker: &Engine,
    image_id: &str,
    notes: &mut Vec<String>,
) -> Option<String> {
    let base = docker
        .inspect_image(image_id)
        .await
        .ok()?
        .config?
        .labels?
        .remove(crate::build::overlay::LABEL_OVERLAY_BASE)?;
    if docker.inspect_image(&base).await.is_ok() {
        return Some(base);
    }
    notes.push(format!(
        "the image is a [build] overlay on {}, which is no longer on this machine, so what the \
         overlay adds cannot be told apart (provided_by says base for every binary)",
        short_id(&base)
    ));
    None
}

/// A rebuilt tag that is not deployed yet: what runs is still the old image, and that is the
/// one checked; say so.
pub async fn tag_note(docker: &Engine, target: &Target) -> Option<String> {
    target.container.as_ref()?;
    let tagged_id = docker.inspect_image(&target.image_name).await.ok()?.id?;
    (tagged_id != target.image_id).then(|| {
        format!(
            "{name} now points to {} but the container runs {}: checked the image the \
             container runs; `clawops update` (or `--image {name}`) for the new one",
            short_id(&tagged_id),
            short_id(&target.image_id),
            name = target.image_name,
        )
    })
}

fn path_of(env: &[String]) -> Option<String> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .map(str::to_owned)
}

fn short_id(id: &str) -> &str {
    short(id.strip_prefix("sha256:").unwrap_or(id))
}

/// The PATH directories to search. Relative and empty entries (the current directory) are
/// skipped: what they mean depends on where a process happens to run.
pub fn search_path(env: Option<&str>, notes: &mut Vec<String>) -> Vec<String> {
    let raw = match env {
        Some(p) => p,
        None => {
            notes.push(format!(
                "the container sets no PATH: Docker's default {DEFAULT_PATH}"
            ));
            DEFAULT_PATH
        }
    };
    let mut dirs: Vec<String> = Vec::new();
    for dir in raw.split(':') {
        if !dir.starts_with('/') {
            notes.push(format!(
                "PATH entry {dir:?} is not absolute and was not searched"
            ));
        } else if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_owned());
        }
    }
    dirs
}

/// A container created from an image and never started: its filesystem is the image's.
/// Removed by `remove`, or in the background when dropped before that.
pub struct Scratch(TempContainer);

impl Scratch {
    pub async fn create(docker: &Engine, image: &str) -> Result<Self, VerifyError> {
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            // Never started; a command is only needed because scratch images may lack one.
            cmd: Some(vec!["/clawops-verify-never-started".to_owned()]),
            labels: Some(HashMap::from([(SCRATCH_LABEL.to_owned(), "1".to_owned())])),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        TempContainer::create(docker, "clawops-verify", "verify scratch", body)
            .await
            .map(Self)
            .map_err(|source| VerifyError::Scratch {
                image: image.to_owned(),
                source,
            })
    }

    pub fn id(&self) -> &str {
        self.0.id()
    }

    pub async fn remove(self) {
        self.0.remove().await
    }
}

/// Removes throwaway containers that a killed agent left behind, in the background.
pub fn sweep_stale(docker: Engine) {
    tokio::spawn(async move {
        let label = format!("{SCRATCH_LABEL}=1");
        docker
            .remove_stale(&label, STALE_AFTER, "verify scratch")
            .await;
    });
}
