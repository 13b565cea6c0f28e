//! Engine operations Up (and Update) are made of: the project network and volumes, image lookup,
//! create + start under a chosen name, and replacing a container without losing the old one
//! when the new one cannot be created.
use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use super::UpError;
use crate::{
    compose::{self, ContainerSpec, NetworkMode, Project, SpecInput},
    docker::{
        DockerError, Engine, LABEL_PROJECT, ProjectContainer,
        models::{NetworkCreateRequest, VolumeCreateRequest},
        short_id,
    },
};

/// docker's default stop timeout, which compose uses when `stop_grace_period` is unset.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The image a service runs (`image_override` or its `image:`): its id and its configured
/// `USER`. A missing image is an error that says how to get it; nothing is pulled here.
pub async fn image_info(
    docker: &Engine,
    project: &Project,
    service: &str,
    image_override: Option<&str>,
) -> Result<ImageInfo, UpError> {
    let svc = project.require_service(service)?;
    let reference = image_override
        .map(str::to_owned)
        .unwrap_or_else(|| svc.image_ref(&project.name));
    match docker.find_image(&reference).await? {
        Some(img) => Ok(ImageInfo {
            id: img.id.unwrap_or_default(),
            user: img.config.and_then(|c| c.user).unwrap_or_default(),
            reference,
        }),
        None => Err(UpError::ImageMissing {
            service: service.to_owned(),
            image: reference,
            has_build: svc.build.is_some(),
        }),
    }
}

#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub reference: String,
    pub id: String,
    /// The image's `USER` (empty: root).
    pub user: String,
}

/// Create options and config hash for `service`, running `image_override` (e.g. `openclaw:<sha>`)
/// or the service's image. Looks up the image id and, for `network_mode: service:X`, X's
/// container.
pub async fn service_spec(
    docker: &Engine,
    project: &Project,
    service: &str,
    image_override: Option<&str>,
) -> Result<ContainerSpec, UpError> {
    let image = image_info(docker, project, service, image_override).await?;
    let mut network_container = None;
    if let Some(NetworkMode::Service(target)) = project
        .service(service)
        .and_then(|s| s.network_mode.as_ref())
    {
        let name = project.container_name(target);
        network_container = docker.find_container(&name).await?.and_then(|c| c.id);
    }
    Ok(compose::container_spec(
        project,
        service,
        &SpecInput {
            image: Some(&image.reference),
            image_id: &image.id,
            network_container: network_container.as_deref(),
        },
    )?)
}

/// Creates the networks and named volumes the services use (the `<project>_default` network
/// included), labelled as compose does. External ones must exist. Returns what was created.
pub async fn ensure_resources(
    docker: &Engine,
    project: &Project,
    services: &[String],
) -> Result<Vec<String>, UpError> {
    let mut created = ensure_networks(docker, project, services).await?;
    created.extend(ensure_volumes(docker, project, services).await?);
    Ok(created)
}

/// The network keys the services join (`default` for those that list none).
fn used_networks<'p>(project: &'p Project, services: &[String]) -> BTreeSet<&'p str> {
    services
        .iter()
        .filter_map(|s| project.service(s))
        .filter(|svc| svc.network_mode.is_none())
        .flat_map(|svc| {
            let keys: Vec<&str> = svc.networks.keys().map(String::as_str).collect();
            if keys.is_empty() {
                vec![compose::DEFAULT_NETWORK]
            } else {
                keys
            }
        })
        .collect()
}

async fn ensure_networks(
    docker: &Engine,
    project: &Project,
    services: &[String],
) -> Result<Vec<String>, UpError> {
    let mut created = Vec::new();
    for key in used_networks(project, services) {
        let def = project.networks.get(key).cloned().unwrap_or_default();
        let name = project.network_name(key);
        match docker.inspect_network(&name).await {
            Ok(()) => continue,
            Err(e) if e.is_not_found() && def.external => {
                return Err(UpError::NetworkMissing { name });
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let mut labels: HashMap<String, String> = def.labels.into_iter().collect();
        labels.insert(LABEL_PROJECT.to_owned(), project.name.clone());
        labels.insert(compose::create::LABEL_NETWORK.to_owned(), key.to_owned());
        labels.insert(
            compose::create::LABEL_VERSION.to_owned(),
            compose::create::COMPOSE_VERSION.to_owned(),
        );
        docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some(def.driver.unwrap_or_else(|| "bridge".into())),
                options: (!def.driver_opts.is_empty())
                    .then(|| def.driver_opts.into_iter().collect()),
                labels: Some(labels),
                ..Default::default()
            })
            .await?;
        created.push(format!("network {name}"));
    }
    Ok(created)
}

async fn ensure_volumes(
    docker: &Engine,
    project: &Project,
    services: &[String],
) -> Result<Vec<String>, UpError> {
    let mut created = Vec::new();
    let used: Vec<&String> = services
        .iter()
        .filter_map(|s| project.service(s))
        .flat_map(|s| s.volumes.iter())
        .filter_map(|m| match &m.kind {
            compose::MountKind::Volume(v) => Some(v),
            _ => None,
        })
        .collect();
    for key in project.volumes.keys().filter(|k| used.contains(k)) {
        let def = &project.volumes[key];
        let name = project.volume_name(key);
        match docker.inspect_volume(&name).await {
            Ok(()) => continue,
            Err(e) if e.is_not_found() && def.external => {
                return Err(UpError::Preflight(format!(
                    "external volume {name} does not exist: create it with `docker volume create {name}`"
                )));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let mut labels: HashMap<String, String> = def.labels.clone().into_iter().collect();
        labels.insert(LABEL_PROJECT.into(), project.name.clone());
        labels.insert(compose::create::LABEL_VOLUME.into(), key.clone());
        labels.insert(
            compose::create::LABEL_VERSION.into(),
            compose::create::COMPOSE_VERSION.into(),
        );
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                driver: def.driver.clone(),
                driver_opts: Some(def.driver_opts.clone().into_iter().collect()),
                labels: Some(labels),
                ..Default::default()
            })
            .await?;
        created.push(format!("volume {name}"));
    }
    Ok(created)
}

/// Creates the container of `spec` named `name` (normally `spec.name`) and starts it.
/// Returns its id. A container that cannot start is removed again.
pub async fn create_and_start(
    docker: &Engine,
    spec: &ContainerSpec,
    name: &str,
) -> Result<String, DockerError> {
    let id = create(docker, spec, name).await?;
    if let Err(e) = docker.start(&id).await {
        let _ = docker.remove(&id).await;
        return Err(e);
    }
    Ok(id)
}

/// Creates (does not start) the container of `spec` named `name`, attached to all of its
/// networks. A container that cannot join one is removed again.
pub async fn create(
    docker: &Engine,
    spec: &ContainerSpec,
    name: &str,
) -> Result<String, DockerError> {
    let id = docker
        .create_container(Some(name), spec.body.clone())
        .await?;
    for (network, endpoint) in &spec.networks {
        if let Err(e) = docker.connect_network(network, &id, endpoint.clone()).await {
            let _ = docker.remove(&id).await;
            return Err(e);
        }
    }
    Ok(id)
}

/// Replaces `old` by a new container of `spec`, as compose does: stop the old one, move it aside
/// (`<short id>_<name>`), create + start the new one under the canonical name, then remove the
/// old one. If the new one cannot be created or started, the old one gets its name back and is
/// started again, so a failed recreate does not leave the service down.
pub async fn replace(
    docker: &Engine,
    spec: &ContainerSpec,
    old: &ProjectContainer,
    stop_timeout: Duration,
) -> Result<String, DockerError> {
    let was_running = old.is_running();
    docker.stop(&old.id, stop_timeout).await?;
    let aside = format!("{}_{}", short_id(&old.id), spec.name);
    docker.rename(&old.id, &aside).await?;
    match create_and_start(docker, spec, &spec.name).await {
        Ok(id) => {
            docker.remove(&old.id).await?;
            Ok(id)
        }
        Err(e) => {
            let _ = docker.rename(&old.id, &old.name).await;
            if was_running {
                let _ = docker.start(&old.id).await;
            }
            Err(e)
        }
    }
}

/// The stop timeout of a service: `stop_grace_period`, else docker's 10 s.
pub fn stop_timeout(project: &Project, service: &str) -> Duration {
    project
        .service(service)
        .and_then(|s| s.stop_grace_period)
        .unwrap_or(DEFAULT_STOP_TIMEOUT)
}
