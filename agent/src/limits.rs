//! Bounds on what one client can make the agent hold: request fields that end up in the journal
//! and in lock messages, and long-lived log follows and run/exec sessions (each holds Docker
//! streams and a task).
use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::context::CountGuard;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest `requested_by` accepted (it is journaled and shown in lock messages).
    pub max_requested_by_bytes: usize,
    /// Log follows (`clawops logs -f`) open at once, across all clients.
    pub max_log_follows: u32,
    /// `clawops run` / `clawops exec` sessions open at once, across all clients.
    pub max_sessions: u32,
    /// HTTP/2 streams one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Requests one connection may have in flight at once (streams included).
    pub max_requests_per_connection: usize,
    /// The journal is rotated to journal.1.jsonl past this size.
    pub journal_max_mb: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_requested_by_bytes: 256,
            max_log_follows: 8,
            max_sessions: 8,
            max_streams_per_connection: 32,
            max_requests_per_connection: 32,
            journal_max_mb: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("requested_by is {len} bytes; at most {max} are accepted")]
    RequestedByTooLong { len: usize, max: usize },
    #[error(
        "{max} log follows are already open (limits.max_log_follows); close one (or raise the limit in agent.toml) and retry"
    )]
    TooManyFollows { max: u32 },
    #[error(
        "{max} run/exec sessions are already open (limits.max_sessions); end one (or raise the limit in agent.toml) and retry"
    )]
    TooManySessions { max: u32 },
}

pub fn check_requested_by(requested_by: &str, max: usize) -> Result<(), LimitError> {
    if requested_by.len() > max {
        return Err(LimitError::RequestedByTooLong {
            len: requested_by.len(),
            max,
        });
    }
    Ok(())
}

/// Counts one more log follow, unless `max` are already open.
pub fn follow_slot(counter: &Arc<AtomicU32>, max: u32) -> Result<CountGuard, LimitError> {
    slot(counter, max).ok_or(LimitError::TooManyFollows { max })
}

/// Counts one more run/exec session, unless `max` are already open.
pub fn session_slot(counter: &Arc<AtomicU32>, max: u32) -> Result<CountGuard, LimitError> {
    slot(counter, max).ok_or(LimitError::TooManySessions { max })
}

fn slot(counter: &Arc<AtomicU32>, max: u32) -> Option<CountGuard> {
    // Reserve first, then hand the slot to a guard (which gives it back on drop).
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
    Some(CountGuard::adopt(counter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_slots_are_bounded_and_returned() {
        let counter = Arc::new(AtomicU32::new(0));
        let a = follow_slot(&counter, 2).unwrap();
        let _b = follow_slot(&counter, 2).unwrap();
        let err = follow_slot(&counter, 2).unwrap_err();
        assert!(err.to_string().contains("max_log_follows"), "{err}");
        drop(a);
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        follow_slot(&counter, 2).unwrap();
    }

    #[test]
    fn requested_by_is_bounded() {
        check_requested_by(&"x".repeat(256), 256).unwrap();
        assert!(check_requested_by(&"x".repeat(257), 256).is_err());
    }
}
