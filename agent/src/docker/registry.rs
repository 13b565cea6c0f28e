//! Registry operations through the engine (image mode): which digest a tag points at
//! (`GET /distribution/{name}/json`), and pulling an image with its progress.
use bollard::{auth::DockerCredentials, errors::Error as Bollard, query_parameters};
use futures::StreamExt;

use super::{DockerError, Engine};

/// A user and password for one registry, handed to the engine per call. Never printed: its
/// `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
    /// The registry as the engine names it, e.g. `ghcr.io` or `127.0.0.1:5000`.
    pub server: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("server", &self.server)
            .finish()
    }
}

impl RegistryCredentials {
    fn bollard(&self) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.server.clone()),
            ..Default::default()
        }
    }
}

/// One status line of a pull, as the engine sends it (per layer, or for the whole image).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullStatus {
    /// The layer's short id, or the tag/digest for whole-image lines.
    pub id: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

/// What to pull: `reference` is `repo@sha256:…` or `repo:tag`.
#[derive(Debug, Clone, Copy)]
pub struct PullRequest<'a> {
    pub reference: &'a str,
    pub credentials: Option<&'a RegistryCredentials>,
}

impl Engine {
    /// The digest the registry serves for `reference` (`repo:tag`), without pulling.
    pub async fn registry_digest(
        &self,
        reference: &str,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<String, DockerError> {
        let action = format!("asking the registry for {reference}");
        let inspect = self
            .docker
            .inspect_registry_image(reference, credentials.map(RegistryCredentials::bollard))
            .await
            .map_err(self.err(action.clone()))?;
        inspect.descriptor.digest.ok_or_else(|| {
            let error = format!("the registry sent no digest for {reference}");
            DockerError::classify(action, &self.endpoint, Bollard::DockerStreamError { error })
        })
    }

    /// Pulls `request.reference`, handing each status line to `progress`; an error the engine
    /// reports inside the stream (registry gone mid-pull, unknown manifest) ends it as an error.
    pub async fn pull(
        &self,
        request: PullRequest<'_>,
        mut progress: impl FnMut(PullStatus),
    ) -> Result<(), DockerError> {
        let action = format!("pulling {}", request.reference);
        let options = query_parameters::CreateImageOptionsBuilder::default()
            .from_image(request.reference)
            .build();
        let credentials = request.credentials.map(RegistryCredentials::bollard);
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(self.err(action.clone()))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                let source = Bollard::DockerStreamError { error };
                return Err(DockerError::classify(action, &self.endpoint, source));
            }
            let detail = info.progress_detail.unwrap_or_default();
            let positive = |v: Option<i64>| v.filter(|v| *v > 0).map(|v| v as u64);
            progress(PullStatus {
                id: info.id,
                status: info.status.unwrap_or_default(),
                current: positive(detail.current),
                total: positive(detail.total),
            });
        }
        Ok(())
    }

    /// `repo@sha256:…` names this image has from the registries it was pulled from.
    pub async fn repo_digests(&self, reference: &str) -> Result<Vec<String>, DockerError> {
        Ok(self
            .inspect_image(reference)
            .await?
            .repo_digests
            .unwrap_or_default())
    }
}

impl DockerError {
    /// Did the registry refuse our credentials (or want some)?
    pub fn registry_unauthorized(&self) -> bool {
        let says = |m: &str| {
            let m = m.to_ascii_lowercase();
            [
                "unauthorized",
                "authentication required",
                "denied",
                "no basic auth",
            ]
            .iter()
            .any(|k| m.contains(k))
        };
        self.status_code() == Some(401) || self.engine_message().is_some_and(says)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_the_password() {
        let c = RegistryCredentials {
            username: "me".into(),
            password: "s3cret".into(),
            server: "ghcr.io".into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("me"), "{shown}");
    }

    #[test]
    fn refusals_by_the_registry_are_recognised() {
        assert!(
            DockerError::fake(500, "unauthorized: authentication required").registry_unauthorized()
        );
        assert!(DockerError::fake(401, "x").registry_unauthorized());
        assert!(!DockerError::fake(500, "connection refused").registry_unauthorized());
    }
}
