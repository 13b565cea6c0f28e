//! Engine failures, classified once: the rest of the agent asks "not found?", "conflict?",
//! "unreachable?" instead of matching bollard's status codes.
use bollard::errors::Error as Bollard;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {endpoint}: {source}. Is dockerd running (`systemctl status docker`) and may this user use it (group `docker`)?"
    )]
    Unreachable {
        endpoint: String,
        source: Box<Bollard>,
    },
    /// The engine took longer than a report may wait (a hung dockerd).
    #[error("the Docker engine did not answer within {}s", .0.as_secs())]
    NoAnswer(std::time::Duration),
    /// 404: the container, image, network, volume or path does not exist.
    #[error("Docker engine, {action}: {source}")]
    NotFound {
        action: String,
        source: Box<Bollard>,
    },
    /// 409: a name is taken, a container is in the way, an image is in use.
    #[error("Docker engine, {action}: {source}")]
    Conflict {
        action: String,
        source: Box<Bollard>,
    },
    #[error("Docker engine, {action}: {source}")]
    Other {
        action: String,
        source: Box<Bollard>,
    },
}

impl DockerError {
    /// Sorts a bollard error by what the caller can do about it.
    pub(crate) fn classify(action: impl Into<String>, endpoint: &str, source: Bollard) -> Self {
        let action = action.into();
        let boxed = Box::new;
        match &source {
            Bollard::DockerResponseServerError {
                status_code: 404, ..
            } => DockerError::NotFound {
                action,
                source: boxed(source),
            },
            Bollard::DockerResponseServerError {
                status_code: 409, ..
            } => DockerError::Conflict {
                action,
                source: boxed(source),
            },
            Bollard::IOError { .. }
            | Bollard::SocketNotFoundError(_)
            | Bollard::HyperResponseError { .. }
            | Bollard::HyperLegacyError { .. } => DockerError::Unreachable {
                endpoint: endpoint.to_owned(),
                source: boxed(source),
            },
            _ => DockerError::Other {
                action,
                source: boxed(source),
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, DockerError::Conflict { .. })
    }

    /// The engine could not be reached or did not answer.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DockerError::Unreachable { .. } | DockerError::NoAnswer(_)
        )
    }

    fn source_error(&self) -> Option<&Bollard> {
        match self {
            DockerError::Unreachable { source, .. }
            | DockerError::NotFound { source, .. }
            | DockerError::Conflict { source, .. }
            | DockerError::Other { source, .. } => Some(source),
            DockerError::NoAnswer(_) => None,
        }
    }

    /// The engine's HTTP status, when it answered with an error.
    pub fn status_code(&self) -> Option<u16> {
        match self.source_error()? {
            Bollard::DockerResponseServerError { status_code, .. } => Some(*status_code),
            _ => None,
        }
    }

    /// What the engine said, without bollard's framing: the server's message or the error a
    /// stream (build, exec) ended with.
    pub fn engine_message(&self) -> Option<&str> {
        match self.source_error()? {
            Bollard::DockerResponseServerError { message, .. } => Some(message),
            Bollard::DockerStreamError { error } => Some(error),
            _ => None,
        }
    }

    /// Did the engine refuse BuildKit itself (rather than the build failing)?
    pub fn buildkit_unavailable(&self) -> bool {
        let mentions = |m: &str| {
            let m = m.to_ascii_lowercase();
            [
                "buildkit",
                "session",
                "builder version",
                "unsupported builder",
            ]
            .iter()
            .any(|k| m.contains(k))
        };
        let Some(source) = self.source_error() else {
            return false;
        };
        match source {
            Bollard::DockerResponseServerError {
                status_code,
                message,
            } => matches!(status_code, 404 | 501) || mentions(message),
            Bollard::DockerStreamError { error } => mentions(error),
            Bollard::MissingSessionBuildkitError {} | Bollard::MissingVersionBuildkitError {} => {
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
impl DockerError {
    /// An engine answer with `status_code`, for tests of code that handles failures.
    pub(crate) fn fake(status_code: u16, message: &str) -> Self {
        Self::classify(
            "testing",
            "unix:///fake.sock",
            Bollard::DockerResponseServerError {
                status_code,
                message: message.into(),
            },
        )
    }
}

/// 304 "not modified": starting a running or stopping a stopped container.
pub(super) fn not_modified(e: &Bollard) -> bool {
    matches!(
        e,
        Bollard::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> DockerError {
        DockerError::classify(
            "doing",
            "unix:///x",
            Bollard::DockerResponseServerError {
                status_code,
                message: message.into(),
            },
        )
    }

    fn stream(error: &str) -> DockerError {
        DockerError::classify(
            "building",
            "unix:///x",
            Bollard::DockerStreamError {
                error: error.into(),
            },
        )
    }

    #[test]
    fn statuses_are_classified() {
        assert!(server(404, "no such container").is_not_found());
        assert!(server(409, "name in use").is_conflict());
        assert!(matches!(server(500, "boom"), DockerError::Other { .. }));
        let e = server(404, "no such image: x");
        assert_eq!(e.status_code(), Some(404));
        assert_eq!(e.engine_message(), Some("no such image: x"));
        assert!(e.to_string().starts_with("Docker engine, doing: "), "{e}");
    }

    #[test]
    fn buildkit_refusals_are_told_apart_from_build_failures() {
        assert!(server(400, "buildkit not supported by daemon").buildkit_unavailable());
        assert!(server(404, "page not found").buildkit_unavailable());
        assert!(
            stream("no active session for abc: context deadline exceeded").buildkit_unavailable()
        );
        assert!(
            !stream("executor failed running [/bin/sh -c exit 3]: exit code: 3")
                .buildkit_unavailable()
        );
        assert!(!server(500, "no space left on device").buildkit_unavailable());
    }
}
