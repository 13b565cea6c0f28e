//! Drop guards that remove what a test created on the engine.
use std::collections::HashMap;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};

use crate::{block_on_fresh, docker};

/// Removes every container and network of a compose project on drop.
#[derive(Debug)]
pub struct ProjectGuard {
    pub project: String,
}

impl ProjectGuard {
    pub fn new(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
        }
    }
}

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        let project = self.project.clone();
        block_on_fresh(remove_project(project));
    }
}

pub async fn remove_project(project: String) {
    let docker = docker::connect().await;
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.compose.project={project}")],
    )]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    for c in list {
        if let Some(id) = c.id {
            let _ = docker
                .remove_container(
                    &id,
                    Some(
                        RemoveContainerOptionsBuilder::default()
                            .force(true)
                            .v(true)
                            .build(),
                    ),
                )
                .await;
        }
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    for n in networks {
        if let Some(id) = n.id {
            let _ = docker.remove_network(&id).await;
        }
    }
    let _ = docker.remove_network(&format!("{project}_default")).await;
}

/// Removes image references (tags) on drop.
#[derive(Debug, Default)]
pub struct ImageGuard {
    pub refs: Vec<String>,
}

impl ImageGuard {
    pub fn new(refs: impl IntoIterator<Item = String>) -> Self {
        Self {
            refs: refs.into_iter().collect(),
        }
    }

    pub fn add(&mut self, reference: impl Into<String>) {
        self.refs.push(reference.into());
    }
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let refs = std::mem::take(&mut self.refs);
        block_on_fresh(async move {
            let docker = docker::connect().await;
            for r in refs {
                let _ = docker
                    .remove_image(
                        &r,
                        Some(RemoveImageOptionsBuilder::default().force(true).build()),
                        None,
                    )
                    .await;
            }
        });
    }
}

/// Removes every image whose repository starts with `prefix` (for tags an operation created).
pub async fn remove_images_named(prefix: &str) {
    let docker = docker::connect().await;
    let images = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .unwrap_or_default();
    for image in images {
        for tag in image.repo_tags {
            if tag.starts_with(prefix) {
                let _ = docker
                    .remove_image(
                        &tag,
                        Some(RemoveImageOptionsBuilder::default().force(true).build()),
                        None,
                    )
                    .await;
            }
        }
    }
}

/// Removes, on drop, a compose project's containers and network and every image whose
/// repository is `image_repo` (the tags an app's builds created).
#[derive(Debug)]
pub struct AppGuard {
    _project: ProjectGuard,
    image_repo: String,
}

impl AppGuard {
    pub fn new(project: &str, image_repo: &str) -> Self {
        Self {
            _project: ProjectGuard::new(project),
            image_repo: image_repo.to_owned(),
        }
    }
}

impl Drop for AppGuard {
    fn drop(&mut self) {
        let prefix = format!("{}:", self.image_repo);
        let project = self._project.project.clone();
        block_on_fresh(async move {
            // Containers first: an image a container still uses cannot be removed.
            remove_project(project.clone()).await;
            remove_images_named(&prefix).await;
            remove_images_labelled(&format!("clawops.project={project}")).await;
        });
    }
}

/// Removes every image carrying `label` (`key=value`): the untagged leftovers of builds whose
/// tags moved on (or that were cut short).
pub async fn remove_images_labelled(label: &str) {
    let docker = docker::connect().await;
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let images = docker
        .list_images(Some(
            bollard::query_parameters::ListImagesOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    for image in images {
        let _ = docker
            .remove_image(
                &image.id,
                Some(RemoveImageOptionsBuilder::default().force(true).build()),
                None,
            )
            .await;
    }
}
