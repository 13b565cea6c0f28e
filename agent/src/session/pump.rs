//! The two directions of a session, run concurrently: writing stdin must never wait for output
//! to be read (a `cat` whose output nobody reads stops reading its input, and the session would
//! hang), and each direction holds at most one message in hand, so a fast side waits for a slow
//! one instead of filling the agent's memory.
use futures::StreamExt;
use tokio::{io::AsyncWriteExt, sync::mpsc};

use super::{Input, Process};
use crate::docker::{Attached, DockerError, Engine, LogChunk, TtySize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drained {
    /// The process's output ended (it exited).
    Finished,
    /// Nobody reads the output any more.
    ClientGone,
}

/// Applies terminal size changes to the session's process.
pub(super) struct Resizer<'a> {
    pub engine: &'a Engine,
    pub process: &'a Process,
}

impl Resizer<'_> {
    pub async fn resize(&self, size: TtySize) -> Result<(), DockerError> {
        match self.process {
            Process::OneOff(c) => self.engine.resize_container_tty(c.id(), size).await,
            Process::Exec { exec_id, .. } => self.engine.resize_exec(exec_id, size).await,
        }
    }
}

pub(super) async fn pump(
    attached: Attached,
    resizer: &Resizer<'_>,
    input: mpsc::Receiver<Input>,
    output: mpsc::Sender<LogChunk>,
) -> Result<Drained, DockerError> {
    let Attached {
        output: mut from_process,
        input: stdin,
    } = attached;
    let feed = async {
        feed(stdin, resizer, input).await;
        // Input is done; the session ends with the output.
        std::future::pending().await
    };
    let drain = async {
        loop {
            let chunk = tokio::select! {
                chunk = from_process.next() => chunk,
                _ = output.closed() => return Ok(Drained::ClientGone),
            };
            match chunk {
                Some(Ok(c)) => {
                    if output.send(c).await.is_err() {
                        return Ok(Drained::ClientGone);
                    }
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(Drained::Finished),
            }
        }
    };
    tokio::select! {
        drained = drain => drained,
        never = feed => never,
    }
}

/// Writes stdin and applies resizes until the client's input ends. A process that closed its
/// stdin makes further stdin a no-op, not an error: its output may still be coming.
async fn feed(
    stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    resizer: &Resizer<'_>,
    mut input: mpsc::Receiver<Input>,
) {
    let mut stdin = Some(stdin);
    while let Some(item) = input.recv().await {
        match item {
            Input::Stdin(data) => {
                if let Some(w) = stdin.as_mut()
                    && w.write_all(&data).await.is_err()
                {
                    stdin = None;
                }
            }
            Input::Resize(size) => {
                if let Err(e) = resizer.resize(size).await {
                    tracing::debug!(error = %e, "resize failed");
                }
            }
            Input::StdinEof => close(&mut stdin).await,
        }
    }
    // The client sends nothing more: the process gets EOF, as with `docker run -i`.
    close(&mut stdin).await;
}

async fn close(stdin: &mut Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>) {
    if let Some(mut w) = stdin.take() {
        let _ = w.flush().await;
        if let Err(e) = w.shutdown().await {
            tracing::debug!(error = %e, "closing stdin failed");
        }
    }
}
