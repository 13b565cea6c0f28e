//! The one place where domain errors become gRPC statuses.
use tonic::{Code, Status};

use crate::{docker::DockerError, journal::JournalError, lock::LockError, logs::LogsError};

pub fn not_yet_implemented() -> Status {
    Status::unimplemented("not yet implemented")
}

impl From<crate::limits::LimitError> for Status {
    fn from(e: crate::limits::LimitError) -> Self {
        use crate::limits::LimitError as L;
        match e {
            L::RequestedByTooLong { .. } => Status::invalid_argument(e.to_string()),
            L::TooManyFollows { .. } | L::TooManySessions { .. } => {
                Status::resource_exhausted(e.to_string())
            }
        }
    }
}

impl From<crate::pull::RefError> for Status {
    fn from(e: crate::pull::RefError) -> Self {
        use crate::pull::RefError as R;
        match e {
            R::Invalid { .. } | R::BadDigest { .. } | R::BadOverride { .. } => {
                Status::invalid_argument(e.to_string())
            }
        }
    }
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

/// An engine failure's code: what is missing is NOT_FOUND, what is in the way (a name taken,
/// an image in use) FAILED_PRECONDITION, an engine that is down or hung UNAVAILABLE.
fn docker_code(e: &DockerError) -> Code {
    match e {
        DockerError::Unreachable { .. } | DockerError::NoAnswer(_) => Code::Unavailable,
        DockerError::NotFound { .. } => Code::NotFound,
        DockerError::Conflict { .. } => Code::FailedPrecondition,
        DockerError::Other { .. } => Code::Internal,
    }
}

/// `e`'s message under the code of the engine failure behind it.
fn engine_status(source: &DockerError, e: &impl std::fmt::Display) -> Status {
    Status::new(docker_code(source), e.to_string())
}

impl From<DockerError> for Status {
    fn from(e: DockerError) -> Self {
        engine_status(&e, &e)
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
        match &e {
            V::InvalidName { .. } => Status::invalid_argument(e.to_string()),
            V::NoContainer { .. } => Status::failed_precondition(e.to_string()),
            V::ImageNotFound { .. } => Status::not_found(e.to_string()),
            V::Docker(d) => engine_status(d, &e),
            V::Inspect { source, .. }
            | V::Scratch { source, .. }
            | V::Archive { source, .. }
            | V::Exec { source, .. }
            | V::Diff { source, .. } => engine_status(source, &e),
            V::Task(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<crate::compose::ComposeError> for Status {
    fn from(e: crate::compose::ComposeError) -> Self {
        use crate::compose::ComposeError as C;
        match e {
            C::Read { .. } | C::NoComposeFile { .. } => Status::failed_precondition(e.to_string()),
            C::UnknownService { .. } => Status::not_found(e.to_string()),
            // The compose file or .env is wrong: the operator has to edit it.
            C::Yaml { .. }
            | C::UnsupportedKey { .. }
            | C::Invalid { .. }
            | C::Interpolation { .. }
            | C::EnvFile { .. }
            | C::MissingEnvFile { .. }
            | C::EnvFileOutside { .. }
            | C::FileOutside { .. }
            | C::Untrusted(_)
            | C::Project(_) => Status::failed_precondition(e.to_string()),
        }
    }
}

impl From<crate::readiness::ReadinessError> for Status {
    fn from(e: crate::readiness::ReadinessError) -> Self {
        use crate::readiness::ReadinessError as R;
        match &e {
            R::Timeout { .. } => Status::deadline_exceeded(e.to_string()),
            R::Config(_) => Status::invalid_argument(e.to_string()),
            R::Docker { source, .. } => engine_status(source, &e),
            R::Exited { .. }
            | R::CrashLoop { .. }
            | R::Unhealthy { .. }
            | R::NoHealthcheck { .. } => Status::failed_precondition(e.to_string()),
        }
    }
}

impl From<crate::up::UpError> for Status {
    fn from(e: crate::up::UpError) -> Self {
        use crate::up::UpError as U;
        match e {
            U::Compose(c) => c.into(),
            U::Policy(_) => Status::failed_precondition(e.to_string()),
            U::Docker(d) => d.into(),
            U::Readiness(r) => r.into(),
            U::Journal(j) => j.into(),
            U::ImageMissing { .. }
            | U::Preflight(_)
            | U::NetworkMissing { .. }
            | U::BindMissing { .. }
            | U::BindNotWritable { .. }
            | U::PortInUse { .. }
            | U::Dependency { .. } => Status::failed_precondition(e.to_string()),
        }
    }
}

impl From<crate::session::SessionError> for Status {
    fn from(e: crate::session::SessionError) -> Self {
        use crate::session::SessionError as S;
        match e {
            S::NoCommand | S::CommandTooLong { .. } | S::BadEnv { .. } => {
                Status::invalid_argument(e.to_string())
            }
            S::NotRunning { .. } => Status::failed_precondition(e.to_string()),
            S::Up(u) => (*u).into(),
            S::Docker(d) => d.into(),
        }
    }
}

impl From<crate::build::service::PrepareError> for Status {
    fn from(e: crate::build::service::PrepareError) -> Self {
        use crate::build::service::PrepareError as P;
        match e {
            P::Compose(c) => c.into(),
            P::NoBuild { .. } | P::InvalidImage { .. } | P::Git(_) => {
                Status::failed_precondition(e.to_string())
            }
        }
    }
}

impl From<crate::build::BuildError> for Status {
    fn from(e: crate::build::BuildError) -> Self {
        use crate::build::BuildError as B;
        match &e {
            B::InvalidSpec(_) | B::Image(_) | B::Context(_) | B::Overlay(_) => {
                Status::failed_precondition(e.to_string())
            }
            B::Preflight(_) => Status::resource_exhausted(e.to_string()),
            B::Docker(d) => engine_status(d, &e),
            // A failing step is the Dockerfile's or the repository's doing, not the agent's.
            B::Failed(_) => Status::failed_precondition(e.to_string()),
        }
    }
}

impl From<crate::watch::WatchError> for Status {
    fn from(e: crate::watch::WatchError) -> Self {
        use crate::watch::WatchError as W;
        match e {
            W::NotPaused | W::AlreadyPaused(_) => Status::failed_precondition(e.to_string()),
            W::State(_) => Status::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn engine_failures_keep_their_class() {
        let code = |e: DockerError| Status::from(e).code();
        assert_eq!(
            code(DockerError::fake(404, "no such container")),
            Code::NotFound
        );
        assert_eq!(
            code(DockerError::fake(409, "name in use")),
            Code::FailedPrecondition
        );
        assert_eq!(code(DockerError::fake(500, "boom")), Code::Internal);
        let silent = DockerError::NoAnswer(Duration::from_secs(3));
        assert_eq!(code(silent), Code::Unavailable);
        // Wrapped, the class still decides, and the wrapper's words are kept.
        let waiting = crate::readiness::ReadinessError::Docker {
            service: "gateway".into(),
            source: DockerError::fake(404, "no such container"),
        };
        let status = Status::from(waiting);
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().starts_with("while waiting for gateway"));
    }
}
