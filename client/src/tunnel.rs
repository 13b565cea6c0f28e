//! A stdio tunnel: spawn `ssh -W 127.0.0.1:PORT host` (or gcloud's equivalent) and speak HTTP/2
//! over its stdin/stdout. No local port is opened, so nothing else on the laptop or CI runner
//! can reach the agent through it.
use std::{
    future::Future,
    pin::Pin,
    process::Stdio,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Join},
    process::{ChildStdin, ChildStdout, Command},
};

/// What the tunnel process said and how it ended, for error messages.
#[derive(Debug, Clone)]
pub struct TunnelDiagnostics {
    inner: Arc<Mutex<DiagnosticsInner>>,
    /// Bumped each time a tunnel process has exited and its last words are recorded.
    ended: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for TunnelDiagnostics {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            ended: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

#[derive(Debug, Default)]
struct DiagnosticsInner {
    stderr: Vec<String>,
    exit: Option<std::process::ExitStatus>,
    spawn_error: Option<String>,
}

impl TunnelDiagnostics {
    /// Waits (up to `limit`) for a tunnel process to exit, so its last stderr line can explain a
    /// failed call. Returns at once if one already has; a live tunnel costs the whole `limit`.
    pub async fn wait_ended(&self, limit: std::time::Duration) {
        let mut ended = self.ended.subscribe();
        let already = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.exit.is_some() || inner.spawn_error.is_some()
        };
        if !already {
            let _ = tokio::time::timeout(limit, ended.changed()).await;
        }
    }

    /// One line: how the tunnel failed, e.g. `ssh exited (255): Permission denied (publickey).`
    pub fn explain(&self, program: &str) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = &inner.spawn_error {
            return Some(e.clone());
        }
        let last = inner
            .stderr
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .cloned();
        match (&inner.exit, last) {
            (Some(status), Some(line)) => Some(format!(
                "{program} exited ({}): {}",
                status.code().map_or("signal".into(), |c| c.to_string()),
                line.trim()
            )),
            (Some(status), None) => Some(format!(
                "{program} exited ({}) without a message",
                status.code().map_or("signal".into(), |c| c.to_string())
            )),
            (None, Some(line)) => Some(format!("{program}: {}", line.trim())),
            (None, None) => None,
        }
    }
}

/// A tower service that tonic calls to open a connection: each call spawns the tunnel command.
#[derive(Debug, Clone)]
pub struct CommandConnector {
    program: String,
    args: Vec<String>,
    diagnostics: TunnelDiagnostics,
}

impl CommandConnector {
    pub fn new(program: String, args: Vec<String>) -> Self {
        Self {
            program,
            args,
            diagnostics: TunnelDiagnostics::default(),
        }
    }

    pub fn diagnostics(&self) -> TunnelDiagnostics {
        self.diagnostics.clone()
    }

    pub fn program(&self) -> &str {
        &self.program
    }
}

pub type TunnelIo = TokioIo<Join<ChildStdout, ChildStdin>>;

impl tower::Service<http::Uri> for CommandConnector {
    type Response = TunnelIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let program = self.program.clone();
        let args = self.args.clone();
        let diagnostics = self.diagnostics.clone();
        Box::pin(async move {
            tracing::debug!(%program, ?args, "opening tunnel");
            let spawned = Command::new(&program)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    let hint = if e.kind() == std::io::ErrorKind::NotFound {
                        format!("{program} is not installed or not on PATH")
                    } else {
                        format!("cannot start {program}: {e}")
                    };
                    diagnostics
                        .inner
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .spawn_error = Some(hint.clone());
                    return Err(std::io::Error::new(e.kind(), hint));
                }
            };
            let stdout = child.stdout.take().expect("piped stdout");
            let stdin = child.stdin.take().expect("piped stdin");
            let stderr = child.stderr.take().expect("piped stderr");
            let diag = diagnostics.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "clawops::tunnel", "{line}");
                    let mut inner = diag.inner.lock().unwrap_or_else(|e| e.into_inner());
                    if inner.stderr.len() >= 20 {
                        inner.stderr.remove(0);
                    }
                    inner.stderr.push(line);
                }
                // stderr closes when the process exits: record how it ended.
                let status = child.wait().await.ok();
                diag.inner.lock().unwrap_or_else(|e| e.into_inner()).exit = status;
                diag.ended.send_modify(|n| *n += 1);
            });
            Ok(TokioIo::new(tokio::io::join(stdout, stdin)))
        })
    }
}
