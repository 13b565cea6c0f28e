//! Start-up reconciliation: operations that were running when the agent died (kill -9, OOM,
//! reboot) are closed in the journal as interrupted, so the lock is free and history is honest.
use crate::journal::{Finish, Journal, JournalError, Outcome};

/// Closes every unfinished journal entry; returns how many there were.
pub fn close_interrupted(journal: &Journal) -> Result<usize, JournalError> {
    let open = journal.unfinished();
    for entry in &open {
        tracing::warn!(
            operation = %entry.id,
            kind = %entry.kind,
            "operation was interrupted by an agent restart"
        );
        let last_phase = entry
            .phases
            .last()
            .map(|p| format!(" during {} ({})", p.phase, p.status))
            .unwrap_or_default();
        journal.finish(
            &entry.id,
            Outcome::Interrupted,
            Finish {
                from_sha: entry.from_sha.clone(),
                message: format!("the agent stopped{last_phase}; closed at restart"),
                ..Default::default()
            },
        )?;
    }
    Ok(open.len())
}
