//! A week of hourly memory extremes, kept across agent restarts in the state dir, so the
//! advisor can say "this machine had plenty of headroom for a week" — a claim the 24-hour ring
//! cannot support. Hours where the host had a different amount of RAM (the machine type was
//! changed) do not count towards the week.
use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "memory-headroom.json";
const HOUR: i64 = 3600;
const WEEK_HOURS: usize = 7 * 24;
/// Hours allowed missing from a week (agent or VM restarts) before it no longer counts.
const MAX_MISSING_HOURS: usize = 12;

/// The extremes of one hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HourBucket {
    /// Start of the hour, unix seconds.
    pub hour: i64,
    pub total: u64,
    pub min_available: u64,
    pub max_pressure_some_avg10: f32,
    pub oom_kills: u64,
    pub samples: u32,
}

/// What a full week looked like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeekSummary {
    pub hours: usize,
    pub total: u64,
    /// Most memory in use at any sample: total − lowest available.
    pub peak_used: u64,
    pub max_pressure_some_avg10: f32,
    pub oom_kills: u64,
}

#[derive(Debug)]
pub struct Headroom {
    buckets: VecDeque<HourBucket>,
    path: Option<PathBuf>,
    last_oom_total: Option<u64>,
    warned: bool,
}

impl Headroom {
    /// Loads the file in `state_dir` (a missing or unreadable one starts a new week).
    pub fn load(state_dir: Option<&Path>) -> Self {
        let path = state_dir.map(|d| d.join(FILE_NAME));
        let buckets = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(
                |bytes| match serde_json::from_slice::<Vec<HourBucket>>(&bytes) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring an unreadable {FILE_NAME}");
                        None
                    }
                },
            )
            .unwrap_or_default();
        let mut headroom = Self {
            buckets: buckets.into(),
            path,
            last_oom_total: None,
            warned: false,
        };
        headroom.trim();
        headroom
    }

    /// Folds one sample in; writes the file when an hour has been completed.
    pub fn record(
        &mut self,
        at: i64,
        total: u64,
        available: u64,
        pressure: Option<f32>,
        oom_total: Option<u64>,
    ) {
        let hour = at - at.rem_euclid(HOUR);
        let kills = match (self.last_oom_total, oom_total) {
            (Some(prev), Some(now)) if now >= prev => now - prev,
            // The counter restarts at boot.
            (Some(_), Some(now)) => now,
            _ => 0,
        };
        if oom_total.is_some() {
            self.last_oom_total = oom_total;
        }
        let pressure = pressure.unwrap_or(0.0);
        match self.buckets.back_mut() {
            Some(b) if b.hour == hour && b.total == total => {
                b.min_available = b.min_available.min(available);
                b.max_pressure_some_avg10 = b.max_pressure_some_avg10.max(pressure);
                b.oom_kills += kills;
                b.samples += 1;
            }
            _ => {
                let completed = !self.buckets.is_empty();
                self.buckets.push_back(HourBucket {
                    hour,
                    total,
                    min_available: available,
                    max_pressure_some_avg10: pressure,
                    oom_kills: kills,
                    samples: 1,
                });
                self.trim();
                if completed {
                    self.save();
                }
            }
        }
    }

    fn trim(&mut self) {
        // One day more than a week, so a just-completed week still has all its hours.
        while self.buckets.len() > WEEK_HOURS + 24 {
            self.buckets.pop_front();
        }
    }

    fn save(&mut self) {
        let Some(path) = &self.path else { return };
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec(&self.buckets)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result
            && !self.warned
        {
            // Once: the week is then only as long as the agent's uptime.
            tracing::warn!(path = %path.display(), error = %e, "cannot save memory headroom");
            self.warned = true;
        }
    }

    /// The last seven days, if they are covered (at the current RAM size) well enough to judge.
    pub fn week(&self, now: i64, total: u64) -> Option<WeekSummary> {
        let since = now - (WEEK_HOURS as i64) * HOUR;
        let week: Vec<&HourBucket> = self
            .buckets
            .iter()
            .filter(|b| b.hour >= since && same_ram(b.total, total))
            .collect();
        let oldest = week.first()?;
        // The oldest hour must be a week back, and few hours may be missing.
        if oldest.hour > since + HOUR || week.len() + MAX_MISSING_HOURS < WEEK_HOURS {
            return None;
        }
        Some(WeekSummary {
            hours: week.len(),
            total,
            peak_used: week
                .iter()
                .map(|b| total.saturating_sub(b.min_available))
                .max()
                .unwrap_or(0),
            max_pressure_some_avg10: week
                .iter()
                .map(|b| b.max_pressure_some_avg10)
                .fold(0.0, f32::max),
            oom_kills: week.iter().map(|b| b.oom_kills).sum(),
        })
    }

    pub fn buckets(&self) -> impl Iterator<Item = &HourBucket> {
        self.buckets.iter()
    }
}

/// MemTotal moves by a few MiB across kernels; a machine type change moves it by GiBs.
fn same_ram(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= a.max(b) / 20
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn fill(h: &mut Headroom, hours: i64, total: u64, available: u64) -> i64 {
        let start = 1_700_000_000 - 1_700_000_000 % HOUR;
        for i in 0..hours {
            for m in [0, 1800] {
                h.record(start + i * HOUR + m, total, available, Some(0.5), Some(3));
            }
        }
        start + hours * HOUR
    }

    #[test]
    fn a_covered_week_is_summarised() {
        let mut h = Headroom::load(None);
        let now = fill(&mut h, 170, 4 * GIB, 3 * GIB);
        let w = h.week(now, 4 * GIB).unwrap();
        assert_eq!(w.peak_used, GIB);
        assert_eq!(w.oom_kills, 0);
        assert!(w.hours >= WEEK_HOURS);
    }

    #[test]
    fn less_than_a_week_is_not_enough() {
        let mut h = Headroom::load(None);
        let now = fill(&mut h, 100, 4 * GIB, 3 * GIB);
        assert!(h.week(now, 4 * GIB).is_none());
    }

    #[test]
    fn hours_on_other_ram_do_not_count() {
        let mut h = Headroom::load(None);
        let now = fill(&mut h, 170, 2 * GIB, GIB);
        assert!(h.week(now, 4 * GIB).is_none());
    }

    #[test]
    fn kills_are_counted_and_file_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Headroom::load(Some(dir.path()));
        h.record(0, GIB, GIB / 2, None, Some(5));
        h.record(10, GIB, GIB / 4, None, Some(7));
        h.record(HOUR, GIB, GIB / 2, None, Some(7));
        let reloaded = Headroom::load(Some(dir.path()));
        let first = *reloaded.buckets().next().unwrap();
        assert_eq!(first.oom_kills, 2);
        assert_eq!(first.min_available, GIB / 4);
    }
}
