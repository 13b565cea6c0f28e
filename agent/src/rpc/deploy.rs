//! Domain progress events → `DeployEvent` messages, shared by Up, Update and Rollback.
use clawops_proto::v1 as pb;

use super::convert::now;
use crate::events::{Event, LogStream, Phase, PhaseStatus, PhaseUpdate};

pub fn phase(p: Phase) -> pb::Phase {
    match p {
        Phase::Lock => pb::Phase::Lock,
        Phase::Fetch => pb::Phase::Fetch,
        Phase::Merge => pb::Phase::Merge,
        Phase::Build => pb::Phase::Build,
        Phase::Preflight => pb::Phase::Preflight,
        Phase::Snapshot => pb::Phase::Snapshot,
        Phase::Stop => pb::Phase::Stop,
        Phase::Create => pb::Phase::Create,
        Phase::Start => pb::Phase::Start,
        Phase::Readiness => pb::Phase::Readiness,
        Phase::Cleanup => pb::Phase::Cleanup,
        Phase::Rollback => pb::Phase::Rollback,
        Phase::Pull => pb::Phase::Pull,
        Phase::Resolve => pb::Phase::Resolve,
    }
}

pub fn phase_status(s: PhaseStatus) -> pb::PhaseStatus {
    match s {
        PhaseStatus::Started => pb::PhaseStatus::Started,
        PhaseStatus::Done => pb::PhaseStatus::Done,
        PhaseStatus::Skipped => pb::PhaseStatus::Skipped,
        PhaseStatus::Failed => pb::PhaseStatus::Failed,
    }
}

/// A phase change as its proto message (shared by Build and the deploy streams).
pub fn phase_event(p: PhaseUpdate) -> pb::PhaseEvent {
    pb::PhaseEvent {
        phase: phase(p.phase) as i32,
        status: phase_status(p.status) as i32,
        service: p.service,
        message: p.message,
        elapsed_ms: p.elapsed.as_millis() as u64,
    }
}

/// A build output line as its proto message.
pub fn build_progress(b: crate::events::BuildLine) -> pb::BuildProgress {
    pb::BuildProgress {
        step: b.step,
        total_steps: b.total_steps,
        step_name: b.step_name,
        line: b.line,
    }
}

/// One progress event as a `DeployEvent`, stamped now.
pub fn deploy_event(e: Event) -> pb::DeployEvent {
    use pb::deploy_event::Event as E;
    let event = match e {
        Event::Phase(p) => E::Phase(phase_event(p)),
        Event::Build(b) => E::Build(build_progress(b)),
        Event::Pull(p) => E::Pull(pb::PullProgress {
            reference: p.reference,
            layers_done: p.layers_done,
            layers_total: p.layers_total,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
        }),
        Event::Log {
            container,
            stream,
            line,
        } => {
            let mut data = line.into_bytes();
            data.push(b'\n');
            E::Log(pb::LogLine {
                stream: match stream {
                    LogStream::Stdout => pb::OutputStream::Stdout,
                    LogStream::Stderr => pb::OutputStream::Stderr,
                } as i32,
                data: data.into(),
                timestamp: None,
                container,
            })
        }
        Event::Warning(w) => E::Warning(w),
    };
    pb::DeployEvent {
        at: now(),
        event: Some(event),
    }
}

/// The final `result` event.
pub fn result_event(result: pb::DeployResult) -> pb::DeployEvent {
    pb::DeployEvent {
        at: now(),
        event: Some(pb::deploy_event::Event::Result(result)),
    }
}
