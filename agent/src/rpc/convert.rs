//! Small conversions between domain values and proto messages.
use chrono::{DateTime, Utc};
use clawops_proto::{Timestamp, v1 as pb};

use crate::{journal, lock};

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn now() -> Option<Timestamp> {
    Some(timestamp(Utc::now()))
}

pub fn operation(op: &lock::Operation) -> pb::Operation {
    pb::Operation {
        id: op.id.clone(),
        kind: op.kind.clone(),
        requested_by: op.requested_by.clone(),
        started_at: Some(timestamp(op.started_at)),
    }
}

pub fn journal_entry(e: &journal::Entry) -> pb::JournalEntry {
    pb::JournalEntry {
        id: e.id.clone(),
        kind: e.kind.clone(),
        requested_by: e.requested_by.clone(),
        started_at: Some(timestamp(e.started_at)),
        finished_at: e.finished_at.map(timestamp),
        result: e.outcome.as_str().to_owned(),
        from_sha: e.from_sha.clone().unwrap_or_default(),
        to_sha: e.to_sha.clone().unwrap_or_default(),
        image: e.image.clone().unwrap_or_default(),
        message: e.message.clone(),
        phases: e
            .phases
            .iter()
            .map(|p| pb::PhaseTiming {
                phase: p.phase.clone(),
                status: p.status.clone(),
                elapsed_ms: p.elapsed_ms,
                message: p.message.clone(),
            })
            .collect(),
        last_logs: e.last_logs.clone(),
    }
}
