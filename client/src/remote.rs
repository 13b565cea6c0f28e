//! Running one command on the target over the SSH connection the tunnel uses (`ssh host CMD` or
//! `gcloud compute ssh VM --command=CMD`), with an optional payload on its stdin and its output
//! read line by line as it comes. `clawops token fetch` and `clawops install` are built on it.
use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use crate::Target;

/// Lines longer than this are cut: the remote side is not trusted to be brief.
const MAX_LINE: usize = 4096;
/// Output lines kept for the caller (the rest are still shown as they come).
const MAX_KEPT_LINES: usize = 5000;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "{0} is a direct address: this needs an ssh:// or gcloud:// target that can run commands"
    )]
    NotATunnel(String),
    #[error("{0}")]
    Spawn(String),
    #[error("{program} did not finish within {secs}s on {via} ({what})")]
    Timeout {
        program: String,
        via: String,
        secs: u64,
        what: String,
    },
    /// ssh itself failed (exit 255) or gcloud did: the command never ran.
    #[error("cannot reach {via}: {program} exited ({code}): {line}")]
    Connect {
        via: String,
        program: String,
        code: String,
        line: String,
    },
}

impl From<RemoteError> for crate::ClientError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::NotATunnel(_) => crate::ClientError::Usage(e.to_string()),
            RemoteError::Spawn(_) | RemoteError::Timeout { .. } | RemoteError::Connect { .. } => {
                crate::ClientError::Connect(e.to_string())
            }
        }
    }
}

/// Which of the remote command's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A remote command: what to run, what to feed it, how long it may take.
pub struct RemoteCommand<'a> {
    pub target: &'a Target,
    pub ssh_options: &'a [String],
    /// One string for the remote shell: fixed words, and only values that need no quoting or
    /// were quoted for it.
    pub command: String,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// For messages: what the command does ("reading the token").
    pub what: &'static str,
}

/// What the command printed and how it ended (it ran: ssh reached the host).
#[derive(Debug)]
pub struct RemoteOutput {
    pub code: Option<i32>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl RemoteOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last non-empty stderr line, else the exit code, for error messages.
    pub fn last_error_line(&self) -> String {
        self.stderr
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| format!("exit code {}", code_text(self.code)))
    }
}

fn code_text(code: Option<i32>) -> String {
    code.map_or("signal".to_owned(), |c| c.to_string())
}

impl RemoteCommand<'_> {
    /// Runs the command; `on_line` sees every output line as it arrives.
    pub async fn run(
        self,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<RemoteOutput, RemoteError> {
        let via = self.target.to_string();
        let Some((program, args)) = self.target.remote_command(&self.command, self.ssh_options)
        else {
            return Err(RemoteError::NotATunnel(via));
        };
        tracing::debug!(%program, ?args, "remote command");
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_error(&program, e))?;
        if let (Some(payload), Some(mut stdin)) = (self.stdin, child.stdin.take()) {
            // The remote side may stop reading early (a failed mktemp): its exit status says why.
            tokio::spawn(async move {
                let _ = stdin.write_all(&payload).await;
                let _ = stdin.shutdown().await;
            });
        }
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let collected = async {
            let (out, err) = read_both(stdout, stderr, on_line).await;
            let status = child.wait().await;
            (out, err, status)
        };
        let (stdout, stderr, status) = tokio::time::timeout(self.timeout, collected)
            .await
            .map_err(|_| RemoteError::Timeout {
                program: program.clone(),
                via: via.clone(),
                secs: self.timeout.as_secs(),
                what: self.what.to_owned(),
            })?;
        let status = status.map_err(|e| RemoteError::Spawn(format!("{program}: {e}")))?;
        let output = RemoteOutput {
            code: status.code(),
            stdout,
            stderr,
        };
        let line = output.last_error_line();
        // 255 is ssh's own failure; gcloud's failures say `ERROR: (gcloud…)`.
        if output.code == Some(255) || (!output.success() && line.starts_with("ERROR: (gcloud")) {
            return Err(RemoteError::Connect {
                via,
                program,
                code: code_text(output.code),
                line,
            });
        }
        Ok(output)
    }
}

fn spawn_error(program: &str, e: std::io::Error) -> RemoteError {
    RemoteError::Spawn(if e.kind() == std::io::ErrorKind::NotFound {
        format!("{program} is not installed or not on PATH")
    } else {
        format!("cannot start {program}: {e}")
    })
}

/// Reads both streams to their end, line by line, handing each line to `on_line`.
async fn read_both(
    stdout: impl AsyncBufRead + Unpin,
    stderr: impl AsyncBufRead + Unpin,
    on_line: &mut (dyn FnMut(Stream, &str) + Send),
) -> (Vec<String>, Vec<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Stream, String)>(64);
    let out_tx = tx.clone();
    let readers = async move {
        tokio::join!(
            forward_lines(stdout, Stream::Stdout, out_tx),
            forward_lines(stderr, Stream::Stderr, tx)
        );
    };
    let mut kept = (Vec::new(), Vec::new());
    let consume = async {
        while let Some((stream, line)) = rx.recv().await {
            on_line(stream, &line);
            let lines = match stream {
                Stream::Stdout => &mut kept.0,
                Stream::Stderr => &mut kept.1,
            };
            if lines.len() == MAX_KEPT_LINES {
                lines.remove(0);
            }
            lines.push(line);
        }
    };
    tokio::join!(readers, consume);
    kept
}

async fn forward_lines(
    mut reader: impl AsyncBufRead + Unpin,
    stream: Stream,
    tx: tokio::sync::mpsc::Sender<(Stream, String)>,
) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line_capped(&mut reader, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let line = text.trim_end_matches(['\n', '\r']).to_owned();
                if tx.send((stream, line)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One line into `buf`, at most [`MAX_LINE`] bytes of it kept (the rest is skipped).
async fn read_line_capped(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_both_streams_are_read() {
        let long = "x".repeat(MAX_LINE * 3);
        let stdout = format!("one\n{long}\nthree");
        let stderr = "warn\n".to_owned();
        let mut seen = Vec::new();
        let (out, err) = read_both(stdout.as_bytes(), stderr.as_bytes(), &mut |s, l: &str| {
            seen.push((s, l.len()))
        })
        .await;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], "one");
        assert_eq!(out[1].len(), MAX_LINE);
        assert_eq!(out[2], "three");
        assert_eq!(err, ["warn"]);
        assert_eq!(seen.len(), 4);
    }
}
