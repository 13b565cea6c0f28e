//! Killing an exec whose client went away. The engine has no API for it and keeps the process
//! running when its attach connection closes, so the agent kills it, and everything it started
//! (its session, see [`procs::session_of`]), itself.
//!
//! Directly first, SIGKILL by host pid: it needs nothing from the container and works whenever
//! the agent runs as root or as the processes' user. The packaged agent runs as the
//! unprivileged `clawops` user while the gateway's processes belong to root or uid 1000, so
//! what the kernel refuses (EPERM) is killed from inside the container through the engine:
//! `kill -KILL <pids>` exec'd as the container's root, with the pids of its namespace.
use std::{path::Path, time::Duration};

use nix::{errno::Errno, sys::signal::Signal, unistd::Pid};

use super::procs::{self, ProcError, Target};
use crate::{
    docker::{DockerError, Engine},
    untrusted::UntrustedReadError,
};

const PROC: &str = "/proc";
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// What `kill` prints is only quoted in a warning.
const MAX_KILL_OUTPUT: usize = 2048;
/// How long killed processes get to leave /proc (SIGKILL is delivered when they next run).
const SETTLE: Duration = Duration::from_secs(2);
/// How long the engine may take to see an exec's process exit.
const EXIT_PATIENCE: Duration = Duration::from_secs(2);

/// The exec to kill.
#[derive(Debug, Clone, Copy)]
pub struct Abandoned<'a> {
    pub exec_id: &'a str,
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub service: &'a str,
}

#[derive(Debug, thiserror::Error)]
enum KillError {
    #[error("cannot read its processes: {0}")]
    Proc(#[from] ProcError),
    #[error("the scan of its processes did not finish: {0}")]
    Scan(#[from] tokio::task::JoinError),
    #[error(
        "/proc/{pid} is hidden from the agent, so it cannot find what the exec started: /proc \
         is mounted with hidepid, or the agent's unit sets ProtectProc=invisible or ptraceable \
         (the packaged unit does not)"
    )]
    Hidden { pid: i32 },
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("the container has no `kill` command: {0}")]
    NoKill(String),
    #[error("`kill` did not finish within {} s", KILL_TIMEOUT.as_secs())]
    TimedOut,
    #[error("they survived `kill -KILL` run as the container's root: {0}")]
    Survived(String),
}

/// Kills the exec's processes; what cannot be killed is logged with what to do about it.
pub async fn kill(engine: &Engine, exec: Abandoned<'_>) {
    let leader = match engine.exec_host_pid(exec.exec_id).await {
        Ok(Some(pid)) => pid,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find the process of an abandoned exec; it may keep running");
            return;
        }
    };
    let Ok(leader) = i32::try_from(leader) else {
        return;
    };
    // A few hundred small /proc reads: off the runtime's threads.
    let container_id = exec.container_id.to_owned();
    let scan = tokio::task::spawn_blocking(move || {
        procs::exec_processes(Path::new(PROC), leader, &container_id)
    });
    let scanned = scan
        .await
        .map_err(KillError::from)
        .and_then(|found| found.map_err(KillError::from));
    let targets = match scanned {
        Ok(targets) => targets,
        Err(KillError::Proc(ProcError::Read(UntrustedReadError::NotFound { .. }))) => {
            return hidden_or_gone(engine, exec, leader).await;
        }
        Err(e) => return left_running(exec, Left::Leader(leader), &e),
    };
    if targets.is_empty() {
        tracing::debug!(
            pid = leader,
            container = exec.container_name,
            "an abandoned exec's process is no longer in its container: nothing to kill"
        );
        return;
    }
    let denied = kill_directly(&targets);
    if denied.is_empty() {
        return;
    }
    match kill_in_container(engine, exec.container_id, &denied).await {
        Ok(()) => tracing::debug!(
            processes = denied.len(),
            "killed an abandoned exec from inside its container"
        ),
        Err(e) => left_running(exec, Left::InContainer(&denied), &e),
    }
}

/// The leader's /proc entry is missing: it exited since the engine named it (nothing to do),
/// or /proc hides it while it runs (nothing can be done from here; say so). The engine's
/// running flag lags the exit a moment, so it is asked with patience.
async fn hidden_or_gone(engine: &Engine, exec: Abandoned<'_>, leader: i32) {
    if !procs::hides_others(Path::new(PROC)) {
        return;
    }
    match engine.exec_exit_code(exec.exec_id, EXIT_PATIENCE).await {
        Ok(Some(_)) => {}
        Ok(None) => left_running(
            exec,
            Left::Leader(leader),
            &KillError::Hidden { pid: leader },
        ),
        Err(e) => left_running(exec, Left::Leader(leader), &e.into()),
    }
}

/// SIGKILLs each target; returns those the kernel does not let the agent signal.
fn kill_directly(targets: &[Target]) -> Vec<Target> {
    targets
        .iter()
        .filter(|t| {
            match nix::sys::signal::kill(Pid::from_raw(t.host), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => false,
                Err(errno) => {
                    tracing::debug!(pid = t.host, %errno, "cannot signal an abandoned exec's process");
                    true
                }
            }
        })
        .copied()
        .collect()
}

/// `kill -KILL <pids>` as the container's root, user `0` (argv, no shell), then checks that they died:
/// `kill` fails for a pid that exited in the meantime, which is not a failure here.
async fn kill_in_container(
    engine: &Engine,
    container: &str,
    targets: &[Target],
) -> Result<(), KillError> {
    let mut argv = vec!["kill".to_owned(), "-KILL".to_owned()];
    argv.extend(targets.iter().map(|t| t.container.to_string()));
    let out = engine
        .exec(container, Some("0"), &argv, MAX_KILL_OUTPUT, KILL_TIMEOUT)
        .await?
        .ok_or(KillError::TimedOut)?;
    let said = String::from_utf8_lossy(if out.stderr.is_empty() {
        &out.stdout
    } else {
        &out.stderr
    })
    .trim()
    .to_owned();
    // 126/127: the engine could not start it (the runtime's "executable file not found").
    if matches!(out.exit_code, Some(126 | 127)) {
        return Err(KillError::NoKill(said));
    }
    let settled = tokio::time::Instant::now() + SETTLE;
    loop {
        let alive: Vec<_> = targets
            .iter()
            .filter(|t| procs::running(Path::new(PROC), t.host))
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= settled {
            let code = out.exit_code.map_or("none".to_owned(), |c| c.to_string());
            return Err(KillError::Survived(format!("exit code {code}, {said:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What is known of the processes left running.
enum Left<'a> {
    /// Only the exec's process, by its host pid (meaningless inside the container).
    Leader(i32),
    /// The processes, with their pids in the container.
    InContainer(&'a [Target]),
}

fn left_running(exec: Abandoned<'_>, left: Left<'_>, error: &KillError) {
    let service = exec.service;
    let (pids, how) = match left {
        Left::Leader(pid) => (
            format!("host pid {pid}"),
            format!(
                "find them with `clawops exec --service {service} -- ps` and kill them with \
                 `clawops exec --service {service} -- kill -KILL PID`"
            ),
        ),
        Left::InContainer(targets) => {
            let pids: Vec<_> = targets.iter().map(|t| t.container.to_string()).collect();
            let pids = pids.join(" ");
            let how =
                format!("kill them with `clawops exec --service {service} -- kill -KILL {pids}`");
            (pids, how)
        }
    };
    tracing::warn!(
        container = exec.container_name,
        pids,
        %error,
        "the client of an exec went away but its processes could not be killed; they keep \
         running: {how}, or restart the container"
    );
}
