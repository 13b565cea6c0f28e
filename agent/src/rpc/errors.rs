//! The one place where domain errors become gRPC statuses.
use tonic::{Code, Status};

use crate::{docker::DockerError, journal::JournalError, lock::LockError};

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
