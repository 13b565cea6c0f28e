//! clawops client library: reach a `clawops-agent` through an SSH or gcloud stdio tunnel (or a
//! direct address, or in-process) and call it with the bearer token.

pub mod calls;
pub mod connect;
#[cfg(local_agent)]
pub mod demo;
pub mod error;
pub mod gce;
pub mod install;
#[cfg(local_agent)]
pub mod local;
pub mod remote;
pub mod resize;
pub mod target;
pub mod targets;
pub mod token;
pub mod tunnel;

pub use clawops_proto::v1 as proto;
pub use connect::{Client, ConnectOptions, DEFAULT_AGENT_PORT};
pub use error::ClientError;
pub use target::Target;
