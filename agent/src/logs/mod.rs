//! Container logs like `docker logs`, streamed with backpressure, filtered on the agent, and —
//! when following — carried across a recreate (Update replaces the container under the same
//! service; the follower switches to the new one and says so).
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use regex::Regex;

mod follow;

pub use follow::{LogItem, LogLine, find_container, stream_logs};

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(
        "{value:?} is not a time: use RFC 3339 (2026-11-26T10:00:00Z), a date (2026-11-26), a Unix timestamp, or a relative time like 30s, 10m, 2h, 1d"
    )]
    BadTime { value: String },
    #[error("--grep {pattern:?}: {message}")]
    BadRegex { pattern: String, message: String },
    #[error("--since {since} is after --until {until}")]
    EmptyRange { since: String, until: String },
    #[error(
        "service {service:?} of project {project:?} has no container; start it with `clawops up`"
    )]
    NoContainer { service: String, project: String },
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
}

/// What to show, parsed and validated.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub service: String,
    /// `None`: everything.
    pub tail: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub follow: bool,
    /// The caller wants each line's timestamp.
    pub timestamps: bool,
    pub grep: Option<Regex>,
    /// When following: switch to the service's new container after a recreate.
    pub reattach: bool,
}

impl LogQuery {
    /// Validates raw options as the client sent them.
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        service: String,
        tail: Option<u64>,
        since: &str,
        until: &str,
        follow: bool,
        timestamps: bool,
        grep: &str,
        reattach: bool,
        now: DateTime<Utc>,
    ) -> Result<Self, LogsError> {
        let since = (!since.is_empty())
            .then(|| parse_time(since, now))
            .transpose()?;
        let until = (!until.is_empty())
            .then(|| parse_time(until, now))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(LogsError::EmptyRange {
                since: s.to_rfc3339(),
                until: u.to_rfc3339(),
            });
        }
        let grep = (!grep.is_empty())
            .then(|| {
                Regex::new(grep).map_err(|e| LogsError::BadRegex {
                    pattern: grep.to_owned(),
                    message: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            service,
            tail,
            since,
            until,
            follow,
            timestamps,
            grep,
            reattach,
        })
    }

    /// Whether docker must stamp the lines: to show them, to cut at sub-second `since`/`until`
    /// bounds, or to resume after the last line when a followed container restarts. Parsing
    /// a stamp per line is the costliest part of a plain `--tail`, so it is skipped there.
    pub fn needs_timestamps(&self) -> bool {
        self.timestamps || self.since.is_some() || self.until.is_some() || self.follow
    }
}

/// RFC 3339, a plain date, Unix seconds (with fraction), or a relative time before `now`
/// (`30s`, `10m`, `2h`, `1d`, `1h30m`), as `docker logs --since` accepts.
pub fn parse_time(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, LogsError> {
    let bad = || LogsError::BadTime {
        value: value.to_owned(),
    };
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S") {
        return Ok(t.and_utc());
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        let whole = secs.trunc() as i64;
        let nanos = ((secs - secs.trunc()) * 1e9) as u32;
        return DateTime::from_timestamp(whole, nanos).ok_or_else(bad);
    }
    let ago = parse_relative(v).ok_or_else(bad)?;
    now.checked_sub_signed(ago).ok_or_else(bad)
}

/// `1h30m`, `10m`, `45s`, `2d`, `500ms`.
fn parse_relative(v: &str) -> Option<ChronoDuration> {
    if v.is_empty() {
        return None;
    }
    let mut total = ChronoDuration::zero();
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => ChronoDuration::try_milliseconds(n)?,
            "s" => ChronoDuration::try_seconds(n)?,
            "m" => ChronoDuration::try_minutes(n)?,
            "h" => ChronoDuration::try_hours(n)?,
            "d" => ChronoDuration::try_days(n)?,
            _ => return None,
        };
        total = total.checked_add(&part)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_like_docker_logs() {
        let t = |s| parse_time(s, now()).unwrap().to_rfc3339();
        assert_eq!(t("10m"), "2026-11-26T11:50:00+00:00");
        assert_eq!(t("1h30m"), "2026-11-26T10:30:00+00:00");
        assert_eq!(t("2d"), "2026-11-24T12:00:00+00:00");
        assert_eq!(t("2026-11-26T10:00:00Z"), "2026-11-26T10:00:00+00:00");
        assert_eq!(t("2026-11-26T11:00:00+01:00"), "2026-11-26T10:00:00+00:00");
        assert_eq!(t("2026-11-25"), "2026-11-25T00:00:00+00:00");
        assert_eq!(t("1795694400"), "2026-11-26T12:00:00+00:00");
        for bad in [
            "",
            "yesterday",
            "10x",
            "m10",
            "-5m",
            "10m-",
            "99999999999999999999d",
        ] {
            assert!(parse_time(bad, now()).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn query_validation_names_the_problem() {
        let q = |since: &str, until: &str, grep: &str| {
            LogQuery::parse(
                "s".into(),
                Some(1),
                since,
                until,
                false,
                false,
                grep,
                true,
                now(),
            )
        };
        assert!(matches!(q("", "", "("), Err(LogsError::BadRegex { .. })));
        assert!(matches!(
            q("1m", "2h", ""),
            Err(LogsError::EmptyRange { .. })
        ));
        assert!(q("2h", "1m", "listening on").unwrap().grep.is_some());
    }
}
