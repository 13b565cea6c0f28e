//! Interactive processes: exec and container attach with stdin, a pseudo-terminal and resizes,
//! for `clawops run` / `clawops exec`.
use std::{pin::Pin, time::Duration};

use bollard::{
    exec::{CreateExecOptions, StartExecOptions, StartExecResults},
    query_parameters::{
        AttachContainerOptionsBuilder, KillContainerOptionsBuilder, ResizeContainerTTYOptions,
        ResizeExecOptions,
    },
};
use futures::{Stream, StreamExt, stream::BoxStream};
use tokio::io::AsyncWrite;

use super::{DockerError, Engine, LogChunk, containers::chunk, short_id};

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

/// What to run with `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    /// Extra `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
}

/// The two ends of an attached process: what it prints, and its stdin.
pub struct Attached {
    pub output: BoxStream<'static, Result<LogChunk, DockerError>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attached")
    }
}

fn frames(
    output: impl Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
    + Send
    + 'static,
    action: String,
    endpoint: std::sync::Arc<str>,
) -> BoxStream<'static, Result<LogChunk, DockerError>> {
    output
        .filter_map(move |item| {
            std::future::ready(match item {
                Ok(o) => chunk(o).map(Ok),
                Err(e) => Some(Err(DockerError::classify(action.clone(), &endpoint, e))),
            })
        })
        .boxed()
}

impl Engine {
    /// Creates and starts an exec of `spec` in the running `container`, attached. Returns the
    /// exec id.
    pub async fn exec_attached(
        &self,
        container: &str,
        spec: &ExecSpec,
    ) -> Result<(String, Attached), DockerError> {
        let err = || self.err(format!("exec in {}", short_id(container)));
        let options = CreateExecOptions::<String> {
            cmd: Some(spec.argv.clone()),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(container, options)
            .await
            .map_err(err())?;
        let start = StartExecOptions {
            detach: false,
            tty: spec.tty,
            output_capacity: None,
        };
        match self
            .docker
            .start_exec(&exec.id, Some(start))
            .await
            .map_err(err())?
        {
            StartExecResults::Attached { output, input } => {
                let action = format!("reading the output of exec in {}", short_id(container));
                let output = frames(output, action, self.endpoint.clone());
                Ok((exec.id, Attached { output, input }))
            }
            // Only asked for with `detach: true`.
            StartExecResults::Detached => {
                Err(err()(bollard::errors::Error::DockerResponseServerError {
                    status_code: 500,
                    message: "the engine started the exec detached".into(),
                }))
            }
        }
    }

    pub async fn resize_exec(&self, exec_id: &str, size: TtySize) -> Result<(), DockerError> {
        let options = ResizeExecOptions {
            h: size.rows.into(),
            w: size.cols.into(),
        };
        self.docker
            .resize_exec(exec_id, options)
            .await
            .map_err(self.err(format!("resizing exec {}", short_id(exec_id))))
    }

    /// The exec's exit code once it has finished (the code can lag a moment behind the end of
    /// its output); `None` if it is still running after `patience`.
    pub async fn exec_exit_code(
        &self,
        exec_id: &str,
        patience: Duration,
    ) -> Result<Option<i64>, DockerError> {
        let started = tokio::time::Instant::now();
        loop {
            let inspect = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(self.err(format!("inspecting exec {}", short_id(exec_id))))?;
            if inspect.running != Some(true) {
                return Ok(inspect.exit_code);
            }
            if started.elapsed() >= patience {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The exec's process id on the host, while it runs.
    pub async fn exec_host_pid(&self, exec_id: &str) -> Result<Option<i64>, DockerError> {
        let inspect = self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(self.err(format!("inspecting exec {}", short_id(exec_id))))?;
        Ok(inspect
            .pid
            .filter(|p| *p > 0 && inspect.running == Some(true)))
    }

    /// Attaches to a created (not yet started) container's stdio, so nothing it prints is lost.
    pub async fn attach(&self, container: &str, stdin: bool) -> Result<Attached, DockerError> {
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdin(stdin)
            .stdout(true)
            .stderr(true)
            .build();
        let err = || self.err(format!("attaching to {}", short_id(container)));
        let attached = self
            .docker
            .attach_container(container, Some(options))
            .await
            .map_err(err())?;
        Ok(Attached {
            output: frames(
                attached.output,
                format!("reading the output of {}", short_id(container)),
                self.endpoint.clone(),
            ),
            input: attached.input,
        })
    }

    pub async fn resize_container_tty(
        &self,
        container: &str,
        size: TtySize,
    ) -> Result<(), DockerError> {
        let options = ResizeContainerTTYOptions {
            h: size.rows.into(),
            w: size.cols.into(),
        };
        self.docker
            .resize_container_tty(container, options)
            .await
            .map_err(self.err(format!("resizing {}", short_id(container))))
    }

    /// Sends `signal` (e.g. `KILL`) to the container's main process.
    pub async fn kill(&self, container: &str, signal: &str) -> Result<(), DockerError> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.docker
            .kill_container(container, Some(options))
            .await
            .map_err(self.err(format!("killing {}", short_id(container))))
    }
}
