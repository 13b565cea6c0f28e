//! What the watcher remembers across restarts, in `<state_dir>/watch.json`: whether it is
//! paused (and why), the consecutive failures, the sha (or digest) that rolled back, the last
//! result. Written to a temporary file and renamed, so a crash leaves the old or the new state.
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "watch.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The last deploy the watcher started, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastResult {
    pub sha: String,
    pub outcome: String,
    pub at: DateTime<Utc>,
    pub message: String,
    pub operation_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    pub paused: Option<Pause>,
    pub consecutive_failures: u32,
    /// A commit sha, or a digest in image mode (the journal's `to_sha` either way); not
    /// deployed again until the branch or the tag moves past it.
    pub rolled_back_sha: Option<String>,
    pub last: Option<LastResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot save the watch state to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Persisted {
    /// Loads the state; a file that cannot be read or parsed pauses watching rather than
    /// silently resuming it (the operator may have paused it for a reason).
    pub fn load(path: &Path) -> Self {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => return Self::unreadable(path, &e.to_string()),
        };
        serde_json::from_str(&text).unwrap_or_else(|e| Self::unreadable(path, &e.to_string()))
    }

    fn unreadable(path: &Path, why: &str) -> Self {
        tracing::warn!(path = %path.display(), error = why, "watch state unreadable; watching paused");
        Self {
            paused: Some(Pause {
                reason: format!(
                    "{} could not be read ({why}); `clawops watch resume` starts afresh",
                    path.display()
                ),
                by: "agent".into(),
                at: Utc::now(),
            }),
            ..Self::default()
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let err = |source| StateError::Save {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(e.into()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unreadable_means_paused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        assert_eq!(Persisted::load(&path), Persisted::default());
        let state = Persisted {
            consecutive_failures: 2,
            rolled_back_sha: Some("abc".into()),
            ..Persisted::default()
        };
        state.save(&path).unwrap();
        assert_eq!(Persisted::load(&path), state);
        std::fs::write(&path, "{not json").unwrap();
        let broken = Persisted::load(&path);
        assert!(broken.paused.unwrap().reason.contains("watch resume"));
    }
}
