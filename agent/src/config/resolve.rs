//! The `[app]` section resolved against this machine: the owner account, its home, the
//! checkout and the compose project name.
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};
use serde::Serialize;

use super::{Config, ConfigError};

impl Config {
    /// Resolves the owner, paths and project name against this machine.
    pub fn resolve_app(&self) -> Result<ResolvedApp, ConfigError> {
        let owner = match &self.app.owner {
            Some(name) => User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| ConfigError::UnknownUser(name.clone()))?,
            None => match &self.app.repo {
                Some(repo) => owner_of(repo)?,
                None => current_user(),
            },
        };
        let home = owner.dir.clone();
        let repo = self
            .app
            .repo
            .clone()
            .map(|p| expand_home(&p, &home))
            .unwrap_or_else(|| home.join("openclaw"));
        let project = self
            .app
            .project
            .clone()
            .unwrap_or_else(|| compose_project_name(&repo));
        let state_dirs = self
            .snapshots
            .dirs
            .iter()
            .map(|d| expand_home(d, &home))
            .collect();
        Ok(ResolvedApp {
            owner: owner.name,
            uid: owner.uid.as_raw(),
            gid: owner.gid.as_raw(),
            home,
            repo,
            project,
            state_dirs,
        })
    }
}

/// The app section with everything looked up: who owns the repo, where things are.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedApp {
    pub owner: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub repo: PathBuf,
    pub project: String,
    pub state_dirs: Vec<PathBuf>,
}

fn current_user() -> User {
    user_or_numeric(Uid::effective(), Gid::effective(), || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"))
    })
}

fn owner_of(path: &Path) -> Result<User, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Owner {
        path: path.to_owned(),
        source,
    })?;
    let (uid, gid) = (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()));
    Ok(user_or_numeric(uid, gid, || PathBuf::from("/")))
}

/// The account of `uid`; without a passwd entry (a uid from a container, a minimal image), one
/// named by the number, so resolving never fails on it.
fn user_or_numeric(uid: Uid, gid: Gid, home: impl FnOnce() -> PathBuf) -> User {
    User::from_uid(uid).ok().flatten().unwrap_or_else(|| User {
        name: uid.to_string(),
        passwd: Default::default(),
        uid,
        gid,
        gecos: Default::default(),
        dir: home(),
        shell: PathBuf::from("/bin/sh"),
    })
}

/// `~/x` → `<home>/x`; other paths unchanged.
pub fn expand_home(path: &Path, home: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home.join(rest),
        Err(_) => path.to_owned(),
    }
}

/// docker compose's default project name: the directory name, lowercased, keeping only
/// `[a-z0-9_-]` and not starting with `-` or `_`.
pub fn compose_project_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let trimmed = cleaned.trim_start_matches(['-', '_']);
    if trimmed.is_empty() {
        "default".into()
    } else {
        trimmed.into()
    }
}
