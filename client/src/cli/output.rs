//! Shared output helpers: JSON vs human, time and size formatting.
use std::io::Write;

use chrono::{DateTime, Utc};
use clawops::ClientError;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// One JSON document (or one JSON line of a stream) on stdout.
    pub fn json_line(&self, value: &Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut stdout, value);
        let _ = stdout.write_all(b"\n");
        let _ = stdout.flush();
    }

    pub fn error(&self, e: &ClientError) {
        if self.json {
            self.json_line(&json!({"error": e.to_string(), "exit_code": e.exit_code()}));
        }
        eprintln!("clawops: {e}");
    }
}

pub fn time(ts: Option<&clawops_proto::Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

/// RFC 3339 or null.
pub fn time_json(ts: Option<&clawops_proto::Timestamp>) -> Value {
    time(ts).map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

pub fn time_human(ts: Option<&clawops_proto::Timestamp>) -> String {
    time(ts).map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// `3d 4h`, `12m 5s`, `850ms`.
pub fn duration_human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{:.1}s", ms as f64 / 1000.0),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// 12 digits of a git sha, or of a registry digest (image mode) after its `sha256:`.
pub fn short_sha(sha: &str) -> &str {
    let keep = if sha.starts_with("sha256:") {
        7 + 12
    } else {
        12
    };
    &sha[..sha.len().min(keep)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_human(850), "850ms");
        assert_eq!(duration_human(12_300), "12.3s");
        assert_eq!(duration_human(725_000), "12m 5s");
        assert_eq!(duration_human(2 * 86_400_000 + 3_600_000), "2d 1h");
    }
}
