//! What every streamed operation shares: its kind, the phase reporter that tells the caller and
//! the journal, and the journaled run (begin, work, finish, release the lock).
use std::{
    future::Future,
    time::{Duration, Instant},
};

use crate::{
    events::{EventSink, Phase, PhaseStatus},
    journal::{Finish, Journal, JournalError, Outcome},
    lock::{LockGuard, Operation},
};

/// The operations that take the lock and stream their progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Build,
    Up,
    Update,
    Rollback,
}

impl OperationKind {
    /// As journaled and shown in `clawops history`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Build => "build",
            OperationKind::Up => "up",
            OperationKind::Update => "update",
            OperationKind::Rollback => "rollback",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        [Self::Build, Self::Up, Self::Update, Self::Rollback]
            .into_iter()
            .find(|k| k.as_str() == kind)
    }

    /// Whether it replaces containers, so that an interrupted one leaves something to repair.
    pub fn touches_containers(self) -> bool {
        !matches!(self, OperationKind::Build)
    }

    /// A new operation of this kind, to take the lock with.
    pub fn operation(self, requested_by: &str) -> Operation {
        Operation::new(self.as_str(), requested_by)
    }
}

/// Tells the caller of an operation's phases and records them in its journal entry. Elapsed
/// times count from `started`.
#[derive(Clone)]
pub struct Reporter<'a> {
    pub sink: &'a EventSink,
    journal: &'a Journal,
    op_id: String,
    /// The service phases are about unless one is named.
    service: &'a str,
    started: Instant,
}

impl<'a> Reporter<'a> {
    pub fn new(sink: &'a EventSink, journal: &'a Journal, op_id: &str, service: &'a str) -> Self {
        Self {
            sink,
            journal,
            op_id: op_id.to_owned(),
            service,
            started: Instant::now(),
        }
    }

    pub fn op_id(&self) -> &str {
        &self.op_id
    }

    /// The same reporter with its clock restarted (a swap times its downtime on its own).
    pub fn restarted(&self) -> Self {
        Self {
            started: Instant::now(),
            ..self.clone()
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Tells the caller; records finished phases in the journal.
    pub fn phase(&self, phase: Phase, status: PhaseStatus, message: impl Into<String>) {
        self.service_phase(phase, status, self.service, message);
    }

    /// [`Reporter::phase`] about another service than the operation's.
    pub fn service_phase(
        &self,
        phase: Phase,
        status: PhaseStatus,
        service: &str,
        message: impl Into<String>,
    ) {
        let message = message.into();
        if status != PhaseStatus::Started {
            self.journal(phase, status, &message);
        }
        self.sink
            .phase(phase, status, service, message, self.elapsed());
    }

    /// Tells the caller and records the phase, started ones too: the steps of a swap, so a
    /// restart after a crash can tell how far it got.
    pub fn step(&self, phase: Phase, status: PhaseStatus, message: impl Into<String>) {
        let message = message.into();
        self.journal(phase, status, &message);
        self.sink
            .phase(phase, status, self.service, message, self.elapsed());
    }

    /// Records a phase in the journal only (the caller already heard of it).
    pub fn journal(&self, phase: Phase, status: PhaseStatus, message: &str) {
        self.record(phase.as_str(), status.as_str(), self.elapsed(), message);
    }

    /// Records a journal-only marker (not a phase the caller sees).
    pub fn record(&self, phase: &str, status: &str, elapsed: Duration, message: &str) {
        let elapsed = elapsed.as_millis() as u64;
        let result = self
            .journal
            .phase(&self.op_id, phase, status, elapsed, message);
        if let Err(e) = result {
            tracing::error!(operation = %self.op_id, error = %e, "cannot journal a phase");
        }
    }
}

/// Runs `work` as the operation holding `guard`: journals its beginning (with the sha deployed
/// then), hands it a [`Reporter`], journals how it ended as `ended` says, and only then
/// releases the lock.
pub async fn journaled<'a, T, W, Fut>(
    journal: &'a Journal,
    guard: LockGuard,
    from_sha: Option<String>,
    sink: &'a EventSink,
    service: &'a str,
    work: W,
    ended: impl FnOnce(&T) -> (Outcome, Finish),
) -> Result<T, JournalError>
where
    W: FnOnce(Reporter<'a>) -> Fut,
    Fut: Future<Output = T>,
{
    let op = guard.operation().clone();
    journal.begin(&op, from_sha)?;
    let result = work(Reporter::new(sink, journal, &op.id, service)).await;
    let (outcome, finish) = ended(&result);
    tracing::info!(
        operation = %op.id,
        kind = %op.kind,
        outcome = outcome.as_str(),
        message = %finish.message,
        "operation finished"
    );
    if let Err(e) = journal.finish(&op.id, outcome, finish) {
        tracing::error!(operation = %op.id, kind = %op.kind, error = %e, "cannot journal the end of an operation");
    }
    drop(guard);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_as_journaled() {
        for k in [
            OperationKind::Build,
            OperationKind::Up,
            OperationKind::Update,
            OperationKind::Rollback,
        ] {
            assert_eq!(OperationKind::parse(k.as_str()), Some(k));
            assert_eq!(k.operation("me").kind, k.as_str());
        }
        assert_eq!(OperationKind::parse("verify"), None);
        assert!(!OperationKind::Build.touches_containers());
    }

    #[tokio::test]
    async fn phases_are_told_and_their_ends_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let lock = crate::lock::OperationLock::default();
        let guard = lock
            .try_acquire(OperationKind::Up.operation("test"))
            .unwrap();
        let id = guard.operation().id.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = EventSink::new(tx);
        let work = async |r: Reporter<'_>| {
            r.phase(Phase::Create, PhaseStatus::Started, "creating");
            r.phase(Phase::Create, PhaseStatus::Done, "created");
            r.step(Phase::Stop, PhaseStatus::Started, "stopping");
            7
        };
        let ended = |n: &i32| {
            let finish = Finish {
                message: format!("did {n}"),
                ..Default::default()
            };
            (Outcome::Succeeded, finish)
        };
        let n = journaled(&journal, guard, None, &sink, "gw", work, ended).await;
        assert_eq!(n.unwrap(), 7);
        assert!(lock.holder().is_none(), "the lock is released");
        let entry = journal.entry(&id).unwrap();
        assert_eq!(entry.outcome, Outcome::Succeeded);
        assert_eq!(entry.message, "did 7");
        let phases: Vec<_> = entry
            .phases
            .iter()
            .map(|p| (p.phase.as_str(), p.status.as_str()))
            .collect();
        assert_eq!(phases, [("create", "done"), ("stop", "started")]);
        drop(sink);
        let mut told = 0;
        while rx.recv().await.is_some() {
            told += 1;
        }
        assert_eq!(told, 3);
    }
}
