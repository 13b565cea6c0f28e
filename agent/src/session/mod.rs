//! `clawops run` and `clawops exec`: one process with its stdin, stdout and stderr streamed to
//! the client, optionally on a pseudo-terminal.
//!
//! - [`run::open`]: a one-off container from the service's compose definition, named and
//!   labelled as `docker compose run` names one-offs, removed when the session ends however it
//!   ends (exit, error, client gone).
//! - [`exec::open`]: a process in the service's running container; [`kill::kill`] kills it
//!   and what it started when the client goes away.
//! - [`Session::pump`]: stdin and resizes in, output out, through bounded channels (a fast
//!   producer waits for a slow consumer instead of being buffered), then the exit code.
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{
    config::{Config, ResolvedApp},
    docker::{Attached, DockerError, Engine, LogChunk, TempContainer, TtySize},
    events::EventSink,
    up,
};

pub mod exec;
mod kill;
mod procs;
mod pump;
pub mod run;

/// Most bytes of argv plus env a session may carry (they are copied into the engine's records).
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no command given: clawops exec -- CMD [ARGS…]")]
    NoCommand,
    #[error(
        "the command and environment are {len} bytes; at most {max} are accepted",
        max = MAX_COMMAND_BYTES
    )]
    CommandTooLong { len: usize },
    /// The entry is not echoed: it may hold a secret.
    #[error("environment entry #{index} has no `=`: give KEY=VALUE")]
    BadEnv { index: usize },
    #[error(
        "service {service} of project {project} has no running container (running: {}): start it with `clawops up`, or use `clawops run {service}` for a one-off container",
        if running.is_empty() { "none".to_owned() } else { running.join(", ") }
    )]
    NotRunning {
        service: String,
        project: String,
        /// Services that do have a running container.
        running: Vec<String>,
    },
    /// Boxed: loading the project can fail in many rich ways, and this enum travels often.
    #[error(transparent)]
    Up(Box<crate::up::UpError>),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Run,
    Exec,
}

/// What the client asked for.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub kind: Kind,
    pub service: String,
    /// Run: empty means the service's command.
    pub argv: Vec<String>,
    /// Extra `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub tty: bool,
    /// Stdin will be forwarded.
    pub stdin: bool,
    pub size: Option<TtySize>,
}

impl SessionRequest {
    /// Checks what can be checked before touching the engine.
    pub fn validate(&self) -> Result<(), SessionError> {
        if self.kind == Kind::Exec && self.argv.is_empty() {
            return Err(SessionError::NoCommand);
        }
        let len: usize = self.argv.iter().chain(&self.env).map(String::len).sum();
        if len > MAX_COMMAND_BYTES {
            return Err(SessionError::CommandTooLong { len });
        }
        if let Some(index) = self.env.iter().position(|e| !e.contains('=')) {
            return Err(SessionError::BadEnv { index: index + 1 });
        }
        Ok(())
    }
}

impl From<crate::up::UpError> for SessionError {
    fn from(e: crate::up::UpError) -> Self {
        SessionError::Up(Box::new(e))
    }
}

/// Starts the process `req` asks for (validated first).
pub async fn open(
    config: &Config,
    app: &ResolvedApp,
    engine: &Engine,
    req: &SessionRequest,
) -> Result<Session, SessionError> {
    req.validate()?;
    match req.kind {
        Kind::Run => {
            // Policy warnings (allowed public ports) concern Up; a one-off publishes nothing.
            let project = up::load_deployable(config, app, &EventSink::discard())
                .map_err(up::UpError::from)?;
            run::open(&project, engine, req).await
        }
        Kind::Exec => exec::open(&app.project, engine, req).await,
    }
}

/// One message from the client after the start.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Stdin(Bytes),
    Resize(TtySize),
    StdinEof,
}

/// What is running, for the client.
#[derive(Debug, Clone, Default)]
pub struct Started {
    pub container_id: String,
    pub container_name: String,
    /// Exec only.
    pub exec_id: Option<String>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The process ended; its exit code when the engine reported one.
    Exited(Option<i64>),
    /// The client went away first; the process was killed (one-off: and removed).
    ClientGone,
}

/// The process a session drives.
#[derive(Debug)]
enum Process {
    /// Removed when the session ends (or in the background if it is dropped half-way).
    OneOff(TempContainer),
    Exec {
        exec_id: String,
        /// For the advice when its process cannot be killed.
        service: String,
    },
}

/// An attached, started process.
#[derive(Debug)]
pub struct Session {
    engine: Engine,
    started: Started,
    process: Process,
    attached: Attached,
}

impl Session {
    pub fn started(&self) -> &Started {
        &self.started
    }

    /// Forwards `input` to the process and its output to `output` until it exits or the client
    /// goes away (`output` closed); then kills and removes what is left of it.
    pub async fn pump(
        self,
        input: mpsc::Receiver<Input>,
        output: mpsc::Sender<LogChunk>,
    ) -> Result<Ending, SessionError> {
        let Session {
            engine,
            started,
            process,
            attached,
        } = self;
        let resizer = pump::Resizer {
            engine: &engine,
            process: &process,
        };
        let result = pump::pump(attached, &resizer, input, output).await;
        let ending = match (&result, &process) {
            (Ok(pump::Drained::Finished), Process::OneOff(c)) => {
                Ending::Exited(engine.wait(c.id()).await?)
            }
            (Ok(pump::Drained::Finished), Process::Exec { exec_id, .. }) => {
                let patience = std::time::Duration::from_secs(2);
                Ending::Exited(engine.exec_exit_code(exec_id, patience).await?)
            }
            (Ok(pump::Drained::ClientGone), _) | (Err(_), _) => {
                if let Process::Exec { exec_id, service } = &process {
                    let abandoned = kill::Abandoned {
                        exec_id,
                        container_id: &started.container_id,
                        container_name: &started.container_name,
                        service,
                    };
                    kill::kill(&engine, abandoned).await;
                }
                Ending::ClientGone
            }
        };
        if let Process::OneOff(c) = process {
            c.remove().await;
        }
        result.map(|_| ending).map_err(SessionError::from)
    }
}
