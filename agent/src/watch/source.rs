//! Where the watcher learns what the newest deployable version is. Git asks the remote with
//! `git ls-remote` (nothing is fetched until a deploy); the registry digest of image mode plugs
//! in here as another variant whose `latest` answers with what the update path deploys.
use crate::{
    config::{AppConfig, ResolvedApp},
    git::{GitError, Repo},
};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("git ls-remote: {0}")]
    Git(#[from] GitError),
    #[error("the branch {branch:?} does not exist on {remote:?}")]
    NoBranch { remote: String, branch: String },
}

#[derive(Debug)]
pub enum Source {
    Git(GitSource),
}

#[derive(Debug)]
pub struct GitSource {
    repo: Repo,
    remote: String,
    branch: String,
}

impl Source {
    /// The source the configured app deploys from.
    pub fn for_app(app: &ResolvedApp, cfg: &AppConfig) -> Self {
        Source::Git(GitSource {
            repo: Repo::new(&app.repo, &app.owner, app.uid, app.gid, &app.home),
            remote: cfg.remote.clone(),
            branch: cfg.branch.clone(),
        })
    }

    /// The newest version (a commit sha for git), as the update path names it in the journal.
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
        }
    }

    /// What `watch status` shows as the thing watched.
    pub fn describe(&self) -> String {
        match self {
            Source::Git(g) => format!("git {}/{}", g.remote, g.branch),
        }
    }
}
