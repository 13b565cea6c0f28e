//! Message bodies: plain JSON for any receiver, Slack's and Discord's incoming-webhook shapes,
//! and the notifications the agent's parts raise.
use serde_json::{Value, json};

use super::{EventName, Format, Notification};
use crate::{
    journal::Outcome,
    memory::{advice::Advice, watcher::MemoryEvent},
    update::{DeployReport, short},
    watch::Pause,
};

/// The POST body for `format`.
pub fn body(format: Format, project: &str, n: &Notification) -> Value {
    let line = format!("[clawops {project}] {}", n.text);
    match format {
        Format::Json => json!({
            "event": n.event.as_str(),
            "at": n.at.to_rfc3339(),
            "project": project,
            "text": n.text,
            "details": n.details,
        }),
        Format::Slack => json!({ "text": line }),
        Format::Discord => json!({ "content": line, "allowed_mentions": { "parse": [] } }),
    }
}

impl Notification {
    /// An update's end (succeeded, rolled back, failed); `None` for "already up to date".
    pub fn deploy_finished(report: &DeployReport, requested_by: &str) -> Option<Self> {
        let sha = report
            .to_sha
            .as_deref()
            .map(short)
            .unwrap_or("?")
            .to_owned();
        let (event, text) = match report.outcome {
            Outcome::Succeeded => (
                EventName::UpdateSucceeded,
                format!("deployed {sha} (by {requested_by})"),
            ),
            Outcome::UpToDate => return None,
            Outcome::RolledBack => (
                EventName::UpdateRolledBack,
                format!("{sha} rolled back (by {requested_by}): {}", report.message),
            ),
            Outcome::Failed | Outcome::Interrupted | Outcome::Running => (
                EventName::UpdateFailed,
                format!(
                    "update to {sha} failed (by {requested_by}): {}",
                    report.message
                ),
            ),
        };
        let n = Self::new(event, text)
            .with("outcome", report.outcome.as_str())
            .with("to_sha", report.to_sha.clone().unwrap_or_default())
            .with("from_sha", report.from_sha.clone().unwrap_or_default())
            .with("operation_id", report.operation_id.clone())
            .with("requested_by", requested_by);
        Some(n)
    }

    pub fn watch_paused(pause: &Pause) -> Self {
        Self::new(
            EventName::WatchPaused,
            format!(
                "auto-update paused: {} (`clawops watch resume` resumes)",
                pause.reason
            ),
        )
        .with("reason", pause.reason.clone())
    }

    pub fn oom_kill(e: &MemoryEvent) -> Self {
        Self::new(
            EventName::OomKill,
            format!(
                "container {} (service {}) was killed: out of memory",
                e.container, e.service
            ),
        )
        .with("container", e.container.clone())
        .with("service", e.service.clone())
    }

    /// The advice now (empty: none any more).
    pub fn advice_changed(advice: &[Advice]) -> Self {
        let text = match advice {
            [] => "machine-type advice: none any more".to_owned(),
            list => format!(
                "machine-type advice: {}",
                list.iter()
                    .map(|a| a.summary.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        let mut n = Self::new(EventName::AdviceChanged, text);
        if let Some(to) = advice.iter().find_map(|a| a.to_machine_type.clone()) {
            n = n.with("to_machine_type", to);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_per_format() {
        let n = Notification::new(EventName::WatchPaused, "paused".into()).with("reason", "x");
        let j = body(Format::Json, "p", &n);
        assert_eq!(j["event"], "watch_paused");
        assert_eq!(j["details"]["reason"], "x");
        assert_eq!(body(Format::Slack, "p", &n)["text"], "[clawops p] paused");
        let d = body(Format::Discord, "p", &n);
        assert_eq!(d["content"], "[clawops p] paused");
    }
}
