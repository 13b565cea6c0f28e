//! The one place where domain errors become gRPC statuses.
use tonic::{Code, Status};

use crate::{docker::DockerError, journal::JournalError, lock::LockError, logs::LogsError};

pub fn not_yet_implemented() -> Status {
    Status::unimplemented("not yet implemented")
}

impl From<LockError> for Status {
    fn from(e: LockError) -> Self {
        Status::new(Code::Aborted, e.to_string())
    }
}

impl From<JournalError> for Status {
    fn from(e: JournalError) -> Self {
        Status::new(Code::Internal, e.to_string())
    }
}

impl From<DockerError> for Status {
    fn from(e: DockerError) -> Self {
        match e {
            DockerError::Unreachable { .. } => Status::new(Code::Unavailable, e.to_string()),
            DockerError::Api(_) => Status::new(Code::Internal, e.to_string()),
        }
    }
}

impl From<LogsError> for Status {
    fn from(e: LogsError) -> Self {
        match e {
            LogsError::BadTime { .. }
            | LogsError::BadRegex { .. }
            | LogsError::EmptyRange { .. } => Status::invalid_argument(e.to_string()),
            LogsError::NoContainer { .. } => Status::not_found(e.to_string()),
            LogsError::Docker(d) => d.into(),
        }
    }
}

impl From<crate::memory::MemoryError> for Status {
    fn from(e: crate::memory::MemoryError) -> Self {
        // /proc missing or hidden is a property of how the agent is deployed, not a bug.
        Status::new(Code::FailedPrecondition, e.to_string())
    }
}

impl From<crate::verify::VerifyError> for Status {
    fn from(e: crate::verify::VerifyError) -> Self {
        use crate::verify::VerifyError as V;
        match e {
            V::InvalidName { .. } => Status::invalid_argument(e.to_string()),
            V::NoContainer { .. } => Status::failed_precondition(e.to_string()),
            V::ImageNotFound { .. } => Status::not_found(e.to_string()),
            V::Docker(d) => d.into(),
            V::Inspect { .. }
            | V::Scratch { .. }
            | V::Archive { .. }
            | V::Exec { .. }
            | V::Diff { .. }
            | V::Task(_) => Status::internal(e.to_string()),
        }
    }
}
