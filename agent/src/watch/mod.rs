//! Auto-update: the agent watches the deployed branch (or, in image mode, the digest the
//! registry serves for the configured tag) and deploys new versions through the same update
//! path as `clawops update`, only inside the configured window and never while another
//! operation holds the lock. A sha or digest that rolled back is not retried until a newer one
//! appears; after `max_failures` consecutive failures watching pauses until `clawops watch
//! resume`. The pause survives restarts (`state.rs`).
use std::{path::Path, sync::Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{journal::Outcome, update::DeployReport};

pub mod run;
pub mod source;
pub mod state;
pub mod window;

pub use run::{AfterCheck, start};
pub use source::Source;
pub use state::{LastResult, Pause, Persisted};
pub use window::Window;

/// What journal entries of the watcher's deploys carry as `requested_by`.
pub const REQUESTED_BY: &str = "watch";

/// `[watch]` in agent.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    pub enabled: bool,
    /// Seconds between two looks at the branch (or the registry tag).
    pub interval_secs: u64,
    /// `HH:MM-HH:MM`, optionally followed by a zone; default: the whole day.
    pub window: Option<String>,
    /// The window's zone when not written in `window` (default UTC).
    pub timezone: Option<String>,
    /// Consecutive failed or rolled-back deploys after which watching pauses.
    pub max_failures: u32,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_secs: 300,
            window: None,
            timezone: None,
            max_failures: 3,
        }
    }
}

impl WatchConfig {
    pub fn parsed_window(&self) -> Result<Window, window::WindowError> {
        Window::parse(self.window.as_deref(), self.timezone.as_deref())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watching is not paused; nothing to resume (`clawops watch status` shows its state)")]
    NotPaused,
    #[error("watching is already paused since {} by {}: {}", .0.at.format("%Y-%m-%d %H:%M:%S UTC"), .0.by, .0.reason)]
    AlreadyPaused(Pause),
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// What `clawops watch status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchStatus {
    pub enabled: bool,
    pub source: String,
    pub window: String,
    pub interval_secs: u64,
    pub max_failures: u32,
    pub next_check: Option<DateTime<Utc>>,
    pub last_check: Option<DateTime<Utc>>,
    pub last_check_error: Option<String>,
    pub state: Persisted,
}

/// The watcher's state, shared by its loop and the RPCs.
#[derive(Debug)]
pub struct Watcher {
    pub config: WatchConfig,
    pub window: Window,
    /// What the last check watched: the update path's choice can change with the compose
    /// file, so each check decides again (`Source::for_app`).
    source: Mutex<Source>,
    path: std::path::PathBuf,
    state: Mutex<Persisted>,
    schedule: Mutex<Schedule>,
    /// Wakes the loop early (resume).
    pub(crate) wake: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Schedule {
    next_check: Option<DateTime<Utc>>,
    last_check: Option<DateTime<Utc>>,
    last_check_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Watcher {
    pub fn new(config: WatchConfig, window: Window, source: Source, state_dir: &Path) -> Self {
        let path = state_dir.join(state::STATE_FILE);
        Self {
            state: Mutex::new(Persisted::load(&path)),
            config,
            window,
            source: Mutex::new(source),
            path,
            schedule: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn status(&self) -> WatchStatus {
        // One lock at a time: `update` holds the state's while it saves the file.
        let state = lock(&self.state).clone();
        let source = lock(&self.source).describe();
        let schedule = lock(&self.schedule);
        // A pause (by a deploy's failure, too) takes effect before the run loop reschedules:
        // the status never shows a next check while paused.
        let next_check = schedule.next_check.filter(|_| state.paused.is_none());
        WatchStatus {
            enabled: self.config.enabled,
            source,
            window: self.window.to_string(),
            interval_secs: self.config.interval_secs,
            max_failures: self.config.max_failures,
            next_check,
            last_check: schedule.last_check,
            last_check_error: schedule.last_check_error.clone(),
            state,
        }
    }

    pub fn paused(&self) -> Option<Pause> {
        lock(&self.state).paused.clone()
    }

    pub fn rolled_back_sha(&self) -> Option<String> {
        lock(&self.state).rolled_back_sha.clone()
    }

    pub fn pause(&self, by: &str, reason: &str) -> Result<WatchStatus, WatchError> {
        self.update(|s| match &s.paused {
            Some(p) => Err(WatchError::AlreadyPaused(p.clone())),
            None => {
                s.paused = Some(Pause {
                    reason: reason.to_owned(),
                    by: by.to_owned(),
                    at: Utc::now(),
                });
                Ok(())
            }
        })?;
        lock(&self.schedule).next_check = None;
        Ok(self.status())
    }

    /// Resumes watching with the failure count reset; the rolled-back sha stays skipped.
    pub fn resume(&self) -> Result<WatchStatus, WatchError> {
        self.update(|s| match s.paused.take() {
            Some(_) => {
                s.consecutive_failures = 0;
                Ok(())
            }
            None => Err(WatchError::NotPaused),
        })?;
        self.wake.notify_one();
        Ok(self.status())
    }

    /// Records a deploy the watcher ran; returns the pause it caused, if any.
    pub fn record(&self, report: &DeployReport) -> Result<Option<Pause>, WatchError> {
        let max = self.config.max_failures;
        self.update(|s| {
            let sha = report.to_sha.clone().unwrap_or_default();
            match report.outcome {
                Outcome::Succeeded | Outcome::UpToDate => {
                    s.consecutive_failures = 0;
                    s.rolled_back_sha = None;
                }
                Outcome::RolledBack => {
                    s.consecutive_failures += 1;
                    s.rolled_back_sha = Some(sha.clone());
                }
                Outcome::Failed | Outcome::Interrupted | Outcome::Running => {
                    s.consecutive_failures += 1;
                }
            }
            s.last = Some(LastResult {
                sha: sha.clone(),
                outcome: report.outcome.as_str().to_owned(),
                at: Utc::now(),
                message: report.message.clone(),
                operation_id: report.operation_id.clone(),
            });
            if s.consecutive_failures >= max && s.paused.is_none() {
                s.paused = Some(Pause {
                    reason: format!(
                        "{} consecutive failed deploys (last: {} {}: {})",
                        s.consecutive_failures,
                        crate::update::short(&sha),
                        report.outcome.as_str(),
                        report.message
                    ),
                    by: REQUESTED_BY.into(),
                    at: Utc::now(),
                });
                return Ok(s.paused.clone());
            }
            Ok(None)
        })
    }

    /// Watches `source` from now on; returns it.
    pub(crate) fn watching(&self, source: Source) -> Source {
        *lock(&self.source) = source.clone();
        source
    }

    pub(crate) fn set_next_check(&self, at: Option<DateTime<Utc>>) {
        lock(&self.schedule).next_check = at;
    }

    pub(crate) fn checked(&self, error: Option<String>) {
        let mut schedule = lock(&self.schedule);
        schedule.last_check = Some(Utc::now());
        schedule.last_check_error = error;
    }

    /// Changes the state and saves it; nothing changes in memory when saving fails.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Persisted) -> Result<T, WatchError>,
    ) -> Result<T, WatchError> {
        let mut state = lock(&self.state);
        let mut next = state.clone();
        let out = change(&mut next)?;
        next.save(&self.path)?;
        *state = next;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn watcher(dir: &Path, max_failures: u32) -> Watcher {
        let config = WatchConfig {
            enabled: true,
            max_failures,
            ..WatchConfig::default()
        };
        let app = crate::config::Config::default();
        let resolved = app.resolve_app().unwrap();
        let docker = crate::docker::DockerHandle::new(None);
        let source = Source::for_app(&app, &resolved, &docker);
        Watcher::new(config, Window::always(), source, dir)
    }

    fn report(sha: &str, outcome: Outcome) -> DeployReport {
        DeployReport {
            to_sha: Some(sha.into()),
            outcome,
            duration: Duration::ZERO,
            ..DeployReport::new("op", None)
        }
    }

    #[test]
    fn failures_pause_and_the_pause_persists() {
        let dir = tempfile::tempdir().unwrap();
        let w = watcher(dir.path(), 2);
        assert!(
            w.record(&report("a", Outcome::RolledBack))
                .unwrap()
                .is_none()
        );
        assert_eq!(w.rolled_back_sha().as_deref(), Some("a"));
        w.set_next_check(Some(Utc::now()));
        assert!(w.status().next_check.is_some());
        let pause = w.record(&report("b", Outcome::Failed)).unwrap().unwrap();
        assert!(pause.reason.contains("2 consecutive"), "{}", pause.reason);
        // Before the run loop reschedules, the status already shows no next check.
        assert_eq!(w.status().next_check, None);
        // A new agent on the same state dir is still paused.
        let again = watcher(dir.path(), 2);
        assert_eq!(again.paused(), Some(pause));
        assert!(matches!(
            again.pause("me", "x"),
            Err(WatchError::AlreadyPaused(_))
        ));
        let status = again.resume().unwrap();
        assert_eq!(status.state.consecutive_failures, 0);
        assert!(matches!(again.resume(), Err(WatchError::NotPaused)));
        again.record(&report("c", Outcome::Succeeded)).unwrap();
        assert_eq!(again.rolled_back_sha(), None);
    }
}
