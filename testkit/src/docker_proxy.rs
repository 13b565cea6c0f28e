//! A unix socket that forwards to dockerd and can be taken away (every connection cut, the
//! socket file removed) and brought back: to a client this looks like a dockerd restart, without
//! restarting the engine other tests share. Point the agent's `docker_host` at `endpoint()`.
use std::path::{Path, PathBuf};

pub struct DockerProxy {
    path: PathBuf,
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
            running: None,
        };
        proxy.up();
        proxy
    }

    /// `unix://<path>`, for `docker_host`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
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
        let thread = std::thread::spawn(move || {
            // Dropping this runtime at the end cancels every forwarding task: all cut at once.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                let accept = async {
                    while let Ok((mut client, _)) = listener.accept().await {
                        let engine = engine.clone();
                        tokio::spawn(async move {
                            if let Ok(mut upstream) = tokio::net::UnixStream::connect(engine).await
                            {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
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

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.down();
    }
}
