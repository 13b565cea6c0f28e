//! The deploy window: `HH:MM-HH:MM` in UTC or a named zone, e.g. `02:00-05:00 Europe/Berlin`.
//! A window may wrap midnight (`22:00-04:00`); `00:00-24:00` is the whole day. Zone names are
//! looked up in the system's time zone database (/usr/share/zoneinfo), so nothing is bundled
//! and the VM's tzdata updates apply.
use chrono::{DateTime, Utc};
use jiff::tz::TimeZone;

const DAY_MINUTES: u16 = 24 * 60;

#[derive(Debug, Clone)]
pub struct Window {
    /// Minutes after local midnight, `start` included, `end` excluded.
    start: u16,
    end: u16,
    zone_name: String,
    zone: TimeZone,
}

/// Why a window or zone was refused (the config error names the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "{0:?} is not a window: write HH:MM-HH:MM with an optional zone, e.g. \"02:00-05:00\" or \"02:00-05:00 Europe/Berlin\""
    )]
    Malformed(String),
    #[error("{0:?} is outside 00:00–24:00")]
    OutOfRange(String),
    #[error(
        "{0:?} is empty (start = end); for the whole day write \"00:00-24:00\" or leave window out"
    )]
    Empty(String),
    #[error(
        "unknown time zone {0:?}: use \"UTC\" or a name from /usr/share/zoneinfo such as \"Europe/Berlin\""
    )]
    UnknownZone(String),
    #[error(
        "the zone is given twice (in window and in timezone): keep one, e.g. window = \"02:00-05:00\" and timezone = \"Europe/Berlin\""
    )]
    TwoZones,
}

impl Window {
    /// The whole day, UTC.
    pub fn always() -> Self {
        Self {
            start: 0,
            end: DAY_MINUTES,
            zone_name: "UTC".into(),
            zone: TimeZone::UTC,
        }
    }

    /// `window` (default: the whole day) in `timezone` (default: UTC, or the zone written after
    /// the times).
    pub fn parse(window: Option<&str>, timezone: Option<&str>) -> Result<Self, WindowError> {
        let text = window.unwrap_or("00:00-24:00").trim();
        let mut parts = text.split_whitespace();
        let range = parts.next().unwrap_or_default();
        let inline_zone = parts.next();
        if parts.next().is_some() {
            return Err(WindowError::Malformed(text.to_owned()));
        }
        let zone_name = match (inline_zone, timezone) {
            (Some(_), Some(_)) => return Err(WindowError::TwoZones),
            (Some(z), None) | (None, Some(z)) => z.trim(),
            (None, None) => "UTC",
        };
        let (from, to) = range
            .split_once('-')
            .ok_or_else(|| WindowError::Malformed(text.to_owned()))?;
        let start = minutes(from, text)?;
        let end = minutes(to, text)?;
        if start == DAY_MINUTES {
            return Err(WindowError::OutOfRange(text.to_owned()));
        }
        if start == end || (start == 0 && end == 0) {
            return Err(WindowError::Empty(text.to_owned()));
        }
        Ok(Self {
            start,
            end,
            zone: zone(zone_name)?,
            zone_name: zone_name.to_owned(),
        })
    }

    /// Whether deploying is allowed at `at`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let m = self.local_minute(at);
        if self.start < self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }

    /// The first instant at or after `at` inside the window.
    pub fn next_open(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.contains(at) {
            return at;
        }
        let Ok(ts) = jiff::Timestamp::from_second(at.timestamp()) else {
            return at;
        };
        let date = ts.to_zoned(self.zone.clone()).date();
        let (h, m) = ((self.start / 60) as i8, (self.start % 60) as i8);
        // Today's opening if still ahead, else tomorrow's (a DST gap moves it forward).
        for day in [Ok(date), date.tomorrow()] {
            let Ok(day) = day else { continue };
            let Ok(opening) = self.zone.to_zoned(day.at(h, m, 0, 0)) else {
                continue;
            };
            let secs = opening.timestamp().as_second();
            if secs > at.timestamp()
                && let Some(t) = DateTime::from_timestamp(secs, 0)
            {
                return t;
            }
        }
        at
    }

    fn local_minute(&self, at: DateTime<Utc>) -> u16 {
        match jiff::Timestamp::from_second(at.timestamp()) {
            Ok(ts) => {
                let local = ts.to_zoned(self.zone.clone());
                local.hour() as u16 * 60 + local.minute() as u16
            }
            Err(_) => 0,
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{} {}", hm(self.start), hm(self.end), self.zone_name)
    }
}

/// `HH:MM` → minutes after midnight, 00:00 to 24:00.
fn minutes(hm: &str, whole: &str) -> Result<u16, WindowError> {
    let malformed = || WindowError::Malformed(whole.to_owned());
    let (h, m) = hm.split_once(':').ok_or_else(malformed)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(malformed());
    }
    let (h, m): (u16, u16) = (
        h.parse().map_err(|_| malformed())?,
        m.parse().map_err(|_| malformed())?,
    );
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(WindowError::OutOfRange(whole.to_owned()));
    }
    Ok(h * 60 + m)
}

fn zone(name: &str) -> Result<TimeZone, WindowError> {
    if name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| WindowError::UnknownZone(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            Window::parse(Some("02:00-05:00"), None)
                .unwrap()
                .to_string(),
            "02:00-05:00 UTC"
        );
        assert_eq!(
            Window::parse(Some("22:00-04:30 Europe/Berlin"), None)
                .unwrap()
                .to_string(),
            "22:00-04:30 Europe/Berlin"
        );
        let err = |w: &str| Window::parse(Some(w), None).unwrap_err();
        assert!(matches!(err("25:00-26:00"), WindowError::OutOfRange(_)));
        assert!(matches!(err("02:60-05:00"), WindowError::OutOfRange(_)));
        assert!(matches!(err("24:00-05:00"), WindowError::OutOfRange(_)));
        assert!(matches!(err("2-5"), WindowError::Malformed(_)));
        assert!(matches!(err("02:00"), WindowError::Malformed(_)));
        assert!(matches!(err("03:00-03:00"), WindowError::Empty(_)));
        assert!(matches!(
            err("02:00-05:00 Mars/Base"),
            WindowError::UnknownZone(_)
        ));
        assert_eq!(
            Window::parse(Some("02:00-05:00 UTC"), Some("UTC")).unwrap_err(),
            WindowError::TwoZones
        );
        Window::parse(None, Some("Europe/Berlin")).unwrap();
    }

    #[test]
    fn contains_and_next_open_in_utc() {
        let w = Window::parse(Some("02:00-05:00"), None).unwrap();
        assert!(w.contains(at("2026-01-10T02:00:00Z")));
        assert!(!w.contains(at("2026-01-10T05:00:00Z")));
        assert_eq!(
            w.next_open(at("2026-01-10T03:00:00Z")),
            at("2026-01-10T03:00:00Z")
        );
        assert_eq!(
            w.next_open(at("2026-01-10T01:00:00Z")),
            at("2026-01-10T02:00:00Z")
        );
        assert_eq!(
            w.next_open(at("2026-01-10T06:00:00Z")),
            at("2026-01-11T02:00:00Z")
        );
        let wrap = Window::parse(Some("22:00-04:00"), None).unwrap();
        assert!(wrap.contains(at("2026-01-10T23:00:00Z")));
        assert!(wrap.contains(at("2026-01-10T01:00:00Z")));
        assert!(!wrap.contains(at("2026-01-10T12:00:00Z")));
        assert!(Window::always().contains(at("2026-01-10T23:59:59Z")));
    }

    #[test]
    fn named_zone_follows_daylight_saving() {
        let w = Window::parse(Some("02:00-05:00"), Some("Europe/Berlin")).unwrap();
        // Winter: UTC+1, so 02:00 Berlin is 01:00 UTC.
        assert!(w.contains(at("2026-01-10T01:30:00Z")));
        assert_eq!(
            w.next_open(at("2026-01-10T12:00:00Z")),
            at("2026-01-11T01:00:00Z")
        );
        // Summer: UTC+2.
        assert!(w.contains(at("2026-07-10T00:30:00Z")));
        assert!(!w.contains(at("2026-07-10T03:30:00Z")));
    }
}
