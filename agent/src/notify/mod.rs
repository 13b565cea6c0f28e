//! Notifications to webhooks (`[[notify]]`): deploy outcomes, watch paused, OOM kills, changed
//! machine-type advice. `Notifier::send` never waits: each target has its own small bounded
//! queue and worker that delivers with retry and backoff (`deliver.rs`), so a hanging receiver
//! delays nothing but its own later messages, and a full queue drops (and logs) the newest.
//! Webhook URLs are secrets (Slack and Discord put the credential in the path): logs and
//! replies show only scheme and host (`redact`).
use std::{collections::BTreeMap, sync::Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub mod deliver;
pub mod format;

pub use deliver::{Delivery, NotifyError};

/// Messages a target may have waiting; more are dropped (and logged).
const QUEUE: usize = 16;

/// `[[notify]]` in agent.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `https://…` (or `http://`) webhook; treated as a secret.
    pub url: String,
    #[serde(default)]
    pub format: Format,
    /// Which events to send; default: all of them.
    #[serde(default = "EventName::all")]
    pub events: Vec<EventName>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Json,
    Slack,
    Discord,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
            Format::Discord => "discord",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventName {
    UpdateSucceeded,
    UpdateRolledBack,
    UpdateFailed,
    WatchPaused,
    OomKill,
    AdviceChanged,
    /// `clawops notify test`; always delivered, never configured.
    #[serde(skip_deserializing)]
    Test,
}

impl EventName {
    pub fn all() -> Vec<EventName> {
        // Every event a target can ask for; Test is sent only on request.
        vec![
            Self::UpdateSucceeded,
            Self::UpdateRolledBack,
            Self::UpdateFailed,
            Self::WatchPaused,
            Self::OomKill,
            Self::AdviceChanged,
        ]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventName::UpdateSucceeded => "update_succeeded",
            EventName::UpdateRolledBack => "update_rolled_back",
            EventName::UpdateFailed => "update_failed",
            EventName::WatchPaused => "watch_paused",
            EventName::OomKill => "oom_kill",
            EventName::AdviceChanged => "advice_changed",
            EventName::Test => "test",
        }
    }
}

/// One message, whatever the format.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub event: EventName,
    pub at: DateTime<Utc>,
    /// One line for people.
    pub text: String,
    /// Details for machines (the json format), e.g. sha, outcome.
    pub details: BTreeMap<String, String>,
}

impl Notification {
    pub fn new(event: EventName, text: String) -> Self {
        Self {
            event,
            at: Utc::now(),
            text,
            details: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// Only `scheme://host[:port]`: the path and query of a webhook are its credential.
pub fn redact(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(auth)) => {
                // Drop any user:password@ too.
                let host = auth.as_str().rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host}/…")
            }
            _ => "(unparseable URL)".into(),
        },
        Err(_) => "(unparseable URL)".into(),
    }
}

/// What is wrong with a `[[notify]] url`; never the URL itself (it is a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is not a URL: give the webhook's https:// address")]
    NotUrl,
    #[error("must start with https:// (or http://)")]
    Scheme,
    #[error("has no host")]
    NoHost,
}

/// Checks a `[[notify]] url`: http(s) with a host.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    let uri: hyper::Uri = url.parse().map_err(|_| UrlError::NotUrl)?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(UrlError::Scheme),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    Ok(())
}

#[derive(Debug)]
struct Target {
    config: NotifyConfig,
    tx: mpsc::Sender<Notification>,
}

/// Fans notifications out to the configured targets' queues.
#[derive(Debug)]
pub struct Notifier {
    project: String,
    targets: Vec<Target>,
    /// Taken by `start`, which gives each to its target's worker.
    pending: Mutex<Vec<(NotifyConfig, mpsc::Receiver<Notification>)>>,
}

/// What `clawops notify test` reports per target.
#[derive(Debug)]
pub struct TestResult {
    pub target: String,
    pub format: Format,
    pub result: Result<Delivery, deliver::NotifyError>,
}

impl Notifier {
    pub fn new(configs: &[NotifyConfig], project: &str) -> Self {
        let mut targets = Vec::new();
        let mut pending = Vec::new();
        for config in configs {
            let (tx, rx) = mpsc::channel(QUEUE);
            targets.push(Target {
                config: config.clone(),
                tx,
            });
            pending.push((config.clone(), rx));
        }
        Self {
            project: project.to_owned(),
            targets,
            pending: Mutex::new(pending),
        }
    }

    /// Spawns one delivery worker per target. Needs a tokio runtime; false without one.
    pub fn start(&self) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (config, rx) in pending {
            runtime.spawn(deliver::worker(config, self.project.clone(), rx));
        }
        true
    }

    /// Whether any target wants `event` (so callers can skip work nobody reads).
    pub fn wants(&self, event: EventName) -> bool {
        self.targets
            .iter()
            .any(|t| t.config.events.contains(&event))
    }

    /// Queues `n` for every target that wants it; never waits.
    pub fn send(&self, n: Notification) {
        for t in self
            .targets
            .iter()
            .filter(|t| t.config.events.contains(&n.event))
        {
            match t.tx.try_send(n.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(
                    target = %redact(&t.config.url),
                    event = n.event.as_str(),
                    "notification dropped: the target's queue is full (it is slow or down)"
                ),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Sends one test message to every target at once, one attempt each.
    pub async fn test(&self) -> Vec<TestResult> {
        let n = Notification::new(
            EventName::Test,
            format!("clawops test notification from project {}", self.project),
        );
        let sends = self.targets.iter().map(|t| {
            let n = &n;
            async move {
                TestResult {
                    target: redact(&t.config.url),
                    format: t.config.format,
                    result: deliver::once(&t.config, &self.project, n).await,
                }
            }
        });
        futures::future::join_all(sends).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_to_scheme_and_host() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact("http://user:pw@127.0.0.1:8080/x?token=y"),
            "http://127.0.0.1:8080/…"
        );
        assert!(!redact("not a url with secret").contains("secret"));
    }

    #[test]
    fn url_check() {
        check_url("https://discord.com/api/webhooks/1/abc").unwrap();
        check_url("http://127.0.0.1:9/x").unwrap();
        assert!(check_url("ftp://example.com/x").is_err());
        assert!(check_url("hooks.slack.com/services/x").is_err());
        assert!(
            !check_url("gopher://secret")
                .unwrap_err()
                .to_string()
                .contains("secret")
        );
    }

    #[test]
    fn events_default_to_all_and_unknown_names_fail() {
        let c: NotifyConfig = toml::from_str("url = \"https://x.example/\"").unwrap();
        assert_eq!(c.events, EventName::all());
        assert_eq!(c.format, Format::Json);
        let err = toml::from_str::<NotifyConfig>("url = \"https://x/\"\nevents = [\"deploy\"]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("deploy") && err.contains("update_succeeded"),
            "{err}"
        );
        let err = toml::from_str::<NotifyConfig>("url = \"https://x/\"\nevents = [\"test\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("test"), "{err}");
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_waiting() {
        let config: NotifyConfig = toml::from_str("url = \"http://127.0.0.1:9/\"").unwrap();
        // Not started: nothing drains the queue.
        let n = Notifier::new(&[config], "p");
        for _ in 0..QUEUE + 5 {
            n.send(Notification::new(EventName::OomKill, "x".into()));
        }
        assert!(n.wants(EventName::OomKill) && !n.wants(EventName::Test));
    }
}
