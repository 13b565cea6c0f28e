//! Fixtures for clawops tests, built from real parts (docs/ARCHITECTURE.md, "Testing"): busybox
//! images `FROM scratch` on the real Docker engine, bare git remotes with clones, a real sshd on loopback, and agent
//! processes on random loopback ports. Everything cleans up after itself on drop, also when a
//! test panics.

pub mod agent;
pub mod cleanup;
pub mod container;
pub mod deploy;
pub mod docker;
pub mod docker_proxy;
pub mod gateway;
pub mod gce;
pub mod git;
pub mod image;
pub mod netns;
pub mod node_image;
pub mod registry;
pub mod seed;
pub mod sshd;
pub mod standin;
pub mod webhook;

/// A name unique to this test run: `<prefix>-<8 hex>` (docker and compose accept it).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", unique_id())
}

/// 8 hex digits unique to this test run, e.g. the id of a demo app.
pub fn unique_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// A free TCP port on 127.0.0.1 (bound then released; the race is negligible for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Runs `future` to completion on a fresh runtime in its own thread: usable from `Drop`, even
/// inside a tokio runtime where blocking on the current one is not allowed.
pub fn block_on_fresh<F>(future: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    })
    .join()
    .expect("fixture thread")
}
