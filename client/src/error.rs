//! Client errors and the exit codes they map to: 1 the operation failed, 2 usage or config,
//! 3 cannot connect or not authenticated.
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Failed(String),
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Failed(_) => 1,
            ClientError::Usage(_) => 2,
            ClientError::Connect(_) | ClientError::Auth(_) => 3,
        }
    }

    pub fn from_status(status: tonic::Status, via: &str) -> Self {
        let msg = status.message().to_owned();
        match status.code() {
            Code::Unauthenticated => ClientError::Auth(format!(
                "the agent at {via} refused the token ({msg}). Fetch the current one with \
                 `clawops token fetch -t NAME`, or pass the VM's /etc/clawops/token with \
                 --token-file or CLAWOPS_TOKEN"
            )),
            Code::Unavailable => ClientError::Connect(format!("agent at {via} unavailable: {msg}")),
            Code::Unimplemented => ClientError::Failed(format!(
                "the agent at {via} does not support this: {msg} (upgrade clawops-agent)"
            )),
            Code::InvalidArgument => ClientError::Usage(msg),
            _ => ClientError::Failed(msg),
        }
    }
}
