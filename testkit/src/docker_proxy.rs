//! A unix socket that forwards to dockerd and can be taken away (every connection cut, the
//! socket file removed) and brought back: to a client this looks like a dockerd restart, without
//! restarting the engine other tests share. Point the agent's `docker_host` at `endpoint()`.
//! It also counts the API requests that pass, so a test can tell when the agent asks the engine.
use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub struct DockerProxy {
    path: PathBuf,
    requests: Arc<AtomicU64>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

/// The engine's socket: `DOCKER_HOST` (unix://) or the default.
pub fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

impl DockerProxy {
    /// Starts forwarding at `path` (which must not exist).
    pub fn start(path: &Path) -> Self {
        let mut proxy = Self {
            path: path.to_owned(),
            requests: Arc::default(),
            running: None,
        };
        proxy.up();
        proxy
    }

    /// `unix://<path>`, for `docker_host`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// API requests forwarded so far (HTTP/1.1 request lines from clients).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    /// Listens again (no-op when up).
    pub fn up(&mut self) {
        if self.running.is_some() {
            return;
        }
        let listener = std::os::unix::net::UnixListener::bind(&self.path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", self.path.display()));
        listener.set_nonblocking(true).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let engine = engine_socket();
        let requests = self.requests.clone();
        let thread = std::thread::spawn(move || {
            // Dropping this runtime at the end cancels every forwarding task: all cut at once.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let engine = engine.clone();
                        let requests = requests.clone();
                        tokio::spawn(async move {
                            if let Ok(upstream) = tokio::net::UnixStream::connect(engine).await {
                                let (client_rx, mut client_tx) = client.into_split();
                                let (mut engine_rx, engine_tx) = upstream.into_split();
                                // Each direction closes on its own, as copy_bidirectional does.
                                let to_client = async move {
                                    let _ = tokio::io::copy(&mut engine_rx, &mut client_tx).await;
                                    let _ = client_tx.shutdown().await;
                                };
                                tokio::join!(
                                    forward_counting(client_rx, engine_tx, &requests),
                                    to_client
                                );
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        });
        self.running = Some((stop_tx, thread));
    }

    /// Cuts every connection and removes the socket (no-op when down).
    pub fn down(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies `from` to `to`, counting request lines (`… HTTP/1.1\r\n`) as they pass.
async fn forward_counting(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    requests: &AtomicU64,
) {
    const MARK: &[u8] = b" HTTP/1.1\r\n";
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous read, so a mark split across reads still counts once.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        let found = carry.windows(MARK.len()).filter(|w| *w == MARK).count();
        requests.fetch_add(found as u64, Ordering::Relaxed);
        let keep = carry.len().min(MARK.len() - 1);
        carry.drain(..carry.len() - keep);
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    // Dropping `to` closes the engine's side for writing, as the client closed its own.
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.down();
    }
}
