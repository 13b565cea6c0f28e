//! clawops-agent: the daemon on the VM that builds, deploys and watches the OpenClaw gateway.
//! The library is what the `clawops-agent` binary serves and what `clawops local` runs
//! in-process.

pub mod auth;
pub mod build;
pub mod chunks;
pub mod compose;
pub mod config;
pub mod context;
pub mod docker;
pub mod events;
pub mod git;
pub mod journal;
pub mod limits;
pub mod lock;
pub mod logs;
pub mod memory;
pub mod notify;
pub mod operation;
pub mod policy;
pub mod pull;
pub mod readiness;
pub mod reconcile;
pub mod rpc;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod startup;
pub mod status;
// Its calls (dl_iterate_phdr, malloc_trim) exist only in glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub mod trim;
pub mod untrusted;
pub mod up;
pub mod update;
pub mod verify;
pub mod watch;
