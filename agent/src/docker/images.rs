//! Image operations (inspect, look up, tag, list, remove) and what the engine says about itself.
use std::collections::HashMap;

use bollard::query_parameters::{
    ListImagesOptionsBuilder, RemoveImageOptions, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};

use super::{
    DockerError, Engine, ListFilter,
    containers::first_name,
    models::{ImageInspect, ImageSummary, SystemInfo, SystemVersion},
};

/// `repo:tag` → (`repo`, `tag`); `latest` when no tag is given (a `:` before a `/` is a
/// registry port, not a tag).
fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    }
}

impl Engine {
    pub async fn inspect_image(&self, reference: &str) -> Result<ImageInspect, DockerError> {
        self.docker
            .inspect_image(reference)
            .await
            .map_err(self.err(format!("inspecting image {reference}")))
    }

    /// The image, or `None` when it is not on this machine (nothing is pulled here).
    pub async fn find_image(&self, reference: &str) -> Result<Option<ImageInspect>, DockerError> {
        match self.inspect_image(reference).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Points `target` (e.g. `openclaw:latest`) at the image `source` names.
    pub async fn tag(&self, source: &str, target: &str) -> Result<(), DockerError> {
        let (repo, tag) = split_tag(target);
        let options = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker
            .tag_image(source, Some(options))
            .await
            .map_err(self.err(format!("tagging {source} as {target}")))
    }

    /// Images carrying `label` (`key` or `key=value`), or all tagged ones; `intermediate`: the
    /// untagged layers of builds too.
    pub async fn list_images(
        &self,
        label: Option<&str>,
        intermediate: bool,
    ) -> Result<Vec<ImageSummary>, DockerError> {
        let mut options = ListImagesOptionsBuilder::default().all(intermediate);
        if let Some(label) = label {
            let filters = HashMap::from([("label".to_string(), vec![label.to_owned()])]);
            options = options.filters(&filters);
        }
        let options = options.build();
        self.docker
            .list_images(Some(options))
            .await
            .map_err(self.err("listing images"))
    }

    /// Image id → names of the containers (running or not) created from it.
    pub async fn image_users(&self) -> Result<HashMap<String, Vec<String>>, DockerError> {
        let containers = self.list_containers(ListFilter::All).await?;
        let mut users: HashMap<String, Vec<String>> = HashMap::new();
        for c in containers {
            let name = match first_name(c.names) {
                n if n.is_empty() => c.id.unwrap_or_default(),
                n => n,
            };
            if let Some(id) = c.image_id {
                users.entry(id).or_default().push(name);
            }
        }
        Ok(users)
    }

    /// Untags `reference` (a tag) or removes the image (an id); the engine deletes an image
    /// when its last tag goes and no container uses it.
    pub async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        self.docker
            .remove_image(reference, None::<RemoveImageOptions>, None)
            .await
            .map(drop)
            .map_err(self.err(format!("removing image {reference}")))
    }

    /// Removes an image even when containers use it (tearing a demo down).
    pub async fn force_remove_image(&self, reference: &str) -> Result<(), DockerError> {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        self.docker
            .remove_image(reference, Some(options), None)
            .await
            .map(drop)
            .map_err(self.err(format!("removing image {reference}")))
    }

    pub async fn info(&self) -> Result<SystemInfo, DockerError> {
        self.docker
            .info()
            .await
            .map_err(self.err("asking for the engine's info"))
    }

    pub async fn version(&self) -> Result<SystemVersion, DockerError> {
        self.docker
            .version()
            .await
            .map_err(self.err("asking for the engine's version"))
    }

    /// The API version negotiated with the engine: (major, minor).
    pub fn api_version(&self) -> (usize, usize) {
        let v = self.docker.client_version();
        (v.major_version, v.minor_version)
    }

    pub async fn inspect_network(&self, name: &str) -> Result<(), DockerError> {
        self.docker
            .inspect_network(name, None)
            .await
            .map(drop)
            .map_err(self.err(format!("inspecting network {name}")))
    }

    pub async fn create_network(
        &self,
        request: super::models::NetworkCreateRequest,
    ) -> Result<(), DockerError> {
        let action = format!("creating network {}", request.name);
        self.docker
            .create_network(request)
            .await
            .map(drop)
            .map_err(self.err(action))
    }

    /// Removes a network; one already gone is fine.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err(format!("removing network {name}"))(e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    pub async fn inspect_volume(&self, name: &str) -> Result<(), DockerError> {
        self.docker
            .inspect_volume(name)
            .await
            .map(drop)
            .map_err(self.err(format!("inspecting volume {name}")))
    }

    pub async fn create_volume(
        &self,
        request: super::models::VolumeCreateRequest,
    ) -> Result<(), DockerError> {
        let action = format!(
            "creating volume {}",
            request.name.as_deref().unwrap_or_default()
        );
        self.docker
            .create_volume(request)
            .await
            .map(drop)
            .map_err(self.err(action))
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn tags_are_split_off_but_registry_ports_are_not() {
        assert_eq!(split_tag("openclaw:latest"), ("openclaw", "latest"));
        assert_eq!(split_tag("openclaw"), ("openclaw", "latest"));
        assert_eq!(
            split_tag("reg.example:5000/oc:abc"),
            ("reg.example:5000/oc", "abc")
        );
        assert_eq!(
            split_tag("reg.example:5000/oc"),
            ("reg.example:5000/oc", "latest")
        );
    }
}
