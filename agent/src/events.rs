//! Progress events of long operations (build, up, update, rollback), as plain Rust values.
//! Operations report through an [`EventSink`]; the rpc layer turns them into proto messages.
//! Sending never fails and never blocks the operation: when the client has gone, events are
//! dropped and the operation carries on (the journal keeps the record). The channel is unbounded
//! on purpose: an operation's output is finite (a build log), and a slow client must neither
//! stall a deploy half-way nor lose build lines.
use std::time::Duration;

use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Lock,
    Fetch,
    Merge,
    Build,
    Preflight,
    Snapshot,
    Stop,
    Create,
    Start,
    Readiness,
    Cleanup,
    Rollback,
    /// Image mode: pulling the resolved digest.
    Pull,
    /// Image mode: asking the registry which digest the tag points at.
    Resolve,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Lock => "lock",
            Phase::Fetch => "fetch",
            Phase::Merge => "merge",
            Phase::Build => "build",
            Phase::Preflight => "preflight",
            Phase::Snapshot => "snapshot",
            Phase::Stop => "stop",
            Phase::Create => "create",
            Phase::Start => "start",
            Phase::Readiness => "readiness",
            Phase::Cleanup => "cleanup",
            Phase::Rollback => "rollback",
            Phase::Pull => "pull",
            Phase::Resolve => "resolve",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseStatus {
    Started,
    Done,
    Skipped,
    Failed,
}

impl PhaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Started => "started",
            PhaseStatus::Done => "done",
            PhaseStatus::Skipped => "skipped",
            PhaseStatus::Failed => "failed",
        }
    }
}

/// One line of build output, attributed to a step when the builder says which.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildLine {
    pub step: u32,
    pub total_steps: u32,
    pub step_name: String,
    pub line: String,
}

/// How far an image pull is, summed over its layers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullProgress {
    /// `repo@digest` being pulled.
    pub reference: String,
    pub layers_done: u32,
    pub layers_total: u32,
    pub bytes_done: u64,
    /// Of the layers whose size the engine has announced so far.
    pub bytes_total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// A phase of an operation started, finished, failed or was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseUpdate {
    pub phase: Phase,
    pub status: PhaseStatus,
    pub service: String,
    pub message: String,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Phase(PhaseUpdate),
    Build(BuildLine),
    Pull(PullProgress),
    /// A container log line shown while waiting for readiness.
    Log {
        container: String,
        stream: LogStream,
        line: String,
    },
    Warning(String),
}

/// Where an operation reports progress. Cloneable; cheap.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl EventSink {
    pub fn new(tx: mpsc::UnboundedSender<Event>) -> Self {
        Self { tx: Some(tx) }
    }

    /// A sink that drops everything (in-process callers that do not watch).
    pub fn discard() -> Self {
        Self { tx: None }
    }

    pub fn emit(&self, event: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }

    pub fn phase(
        &self,
        phase: Phase,
        status: PhaseStatus,
        service: &str,
        message: impl Into<String>,
        elapsed: Duration,
    ) {
        self.emit(Event::Phase(PhaseUpdate {
            phase,
            status,
            service: service.to_owned(),
            message: message.into(),
            elapsed,
        }));
    }

    pub fn warning(&self, message: impl Into<String>) {
        self.emit(Event::Warning(message.into()));
    }
}
