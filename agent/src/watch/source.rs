//! Where the watcher learns what the newest deployable version is, named as the update path
//! journals it. Git asks the remote with `git ls-remote` (nothing is fetched until a deploy);
//! image mode asks the registry which digest the configured tag points at (nothing is pulled
//! until a deploy). Which one is the update path's own decision (`update::image_mode`).
use std::path::PathBuf;

use crate::{
    config::{Config, ResolvedApp},
    docker::{DockerError, DockerHandle},
    git::{GitError, Repo},
    pull::{self, PullError, PullRef, RefError, auth::AuthError},
    update::image_mode,
};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("git ls-remote: {0}")]
    Git(#[from] GitError),
    #[error("the branch {branch:?} does not exist on {remote:?}")]
    NoBranch { remote: String, branch: String },
    #[error("the image to watch is not a valid reference: {0}")]
    Reference(#[from] RefError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Registry(#[from] PullError),
}

#[derive(Debug, Clone)]
pub enum Source {
    Git(GitSource),
    Image(ImageSource),
}

#[derive(Debug, Clone)]
pub struct GitSource {
    repo: Repo,
    remote: String,
    branch: String,
}

#[derive(Debug, Clone)]
pub struct ImageSource {
    /// As configured; parsed at each check, so a bad one is that check's error.
    image: String,
    auth_file: Option<PathBuf>,
    docker: DockerHandle,
}

impl Source {
    /// The source an update of the configured app deploys from now: the registry tag in image
    /// mode, else the branch.
    pub fn for_app(config: &Config, app: &ResolvedApp, docker: &DockerHandle) -> Self {
        match image_mode::configured(config, app) {
            Some(image) => Source::Image(ImageSource {
                image,
                auth_file: config.registry.auth_file.clone(),
                docker: docker.clone(),
            }),
            None => Source::Git(GitSource {
                repo: Repo::new(&app.repo, &app.owner, app.uid, app.gid, &app.home),
                remote: config.app.remote.clone(),
                branch: config.app.branch.clone(),
            }),
        }
    }

    /// The newest version: a commit sha (git) or the digest the registry serves for the tag.
    pub async fn latest(&self) -> Result<String, SourceError> {
        match self {
            Source::Git(g) => g
                .repo
                .remote_head(&g.remote, &g.branch)
                .await?
                .ok_or_else(|| SourceError::NoBranch {
                    remote: g.remote.clone(),
                    branch: g.branch.clone(),
                }),
            Source::Image(i) => {
                let reference = PullRef::parse(&i.image)?;
                let credentials = pull::auth::for_reference(i.auth_file.as_deref(), &reference)?;
                let docker = i.docker.get().await?;
                Ok(pull::resolve(&docker, &reference, credentials.as_ref()).await?)
            }
        }
    }

    /// What `watch status` shows as the thing watched.
    pub fn describe(&self) -> String {
        match self {
            Source::Git(g) => format!("git {}/{}", g.remote, g.branch),
            Source::Image(i) => {
                let shown = PullRef::parse(&i.image).map(|r| r.display());
                format!("registry {}", shown.as_deref().unwrap_or(&i.image))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "openclaw-gateway";

    /// A config whose checkout holds `compose` (none when `None`).
    fn app(dir: &std::path::Path, compose: Option<&str>) -> (Config, ResolvedApp) {
        if let Some(yaml) = compose {
            std::fs::write(dir.join("docker-compose.yml"), yaml).unwrap();
        }
        let mut config = Config::default();
        config.app.repo = Some(dir.to_owned());
        let app = config.resolve_app().unwrap();
        (config, app)
    }

    fn source(config: &Config, app: &ResolvedApp) -> String {
        // Never connected: choosing and describing a source asks nothing of the engine.
        let docker = DockerHandle::new(Some("/nonexistent/docker.sock".into()));
        Source::for_app(config, app, &docker).describe()
    }

    #[test]
    fn image_mode_watches_the_registry_and_built_mode_the_branch() {
        let dir = tempfile::tempdir().unwrap();
        let built = format!("services:\n  {SERVICE}:\n    build: .\n    image: oc:latest\n");
        let (config, resolved) = app(dir.path(), Some(&built));
        assert_eq!(source(&config, &resolved), "git origin/main");

        // `[app] image` wins over a compose file that builds.
        let mut pinned = config.clone();
        pinned.app.image = Some("127.0.0.1:5000/oc:stable".into());
        assert_eq!(
            source(&pinned, &resolved),
            "registry 127.0.0.1:5000/oc:stable"
        );

        // A service with only `image:` is pulled, so watched in the registry (no tag: latest)...
        let only = format!("services:\n  {SERVICE}:\n    image: ghcr.io/x/oc\n");
        let (config, resolved) = app(dir.path(), Some(&only));
        assert_eq!(source(&config, &resolved), "registry ghcr.io/x/oc:latest");
        // ...unless `[build] context` says what to build.
        let mut context = config.clone();
        context.build.context = Some(dir.path().to_owned());
        assert_eq!(source(&context, &resolved), "git origin/main");
    }

    #[test]
    fn no_compose_file_is_built_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (config, resolved) = app(dir.path(), None);
        assert_eq!(source(&config, &resolved), "git origin/main");
    }

    #[tokio::test]
    async fn a_bad_image_fails_the_check_before_asking_anyone() {
        let dir = tempfile::tempdir().unwrap();
        let bad = format!("services:\n  {SERVICE}:\n    image: \"Not/A:Tag\"\n");
        let (config, resolved) = app(dir.path(), Some(&bad));
        let docker = DockerHandle::new(Some("/nonexistent/docker.sock".into()));
        let watched = Source::for_app(&config, &resolved, &docker);
        assert_eq!(watched.describe(), "registry Not/A:Tag");
        let err = watched.latest().await.unwrap_err();
        assert!(matches!(err, SourceError::Reference(_)), "{err:?}");
        assert!(err.to_string().contains("Not/A:Tag"), "{err}");
    }
}
