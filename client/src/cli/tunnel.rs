//! `clawops tunnel`: a port on this machine's loopback forwarded through ssh/gcloud to the
//! gateway (its web UI) or to the agent on the VM, in the foreground until Ctrl-C.
use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::Args;
use clawops::{ClientError, targets::Resolved};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    signal::unix::{SignalKind, signal},
};

use super::{ConnArgs, output::Output, resolve_target};

/// OpenClaw's gateway port (web UI and websocket), on the VM's loopback.
pub const GATEWAY_PORT: u16 = 18789;

/// Forward a port of the VM's loopback to 127.0.0.1 here: the gateway's web UI (--gateway) or
/// the agent's gRPC port (for grpcurl and other gRPC tools). Runs ssh (or gcloud compute ssh)
/// in the foreground and stops with it; Ctrl-C closes the tunnel.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops tunnel -t prod --gateway                    # then open http://127.0.0.1:18789/
  clawops tunnel -t prod --gateway --local-port 8789  # when 18789 is taken here
  clawops tunnel --via ssh://me@my-vm                 # the agent, at http://127.0.0.1:18777")]
pub struct TunnelArgs {
    /// Forward the OpenClaw gateway (its web UI) instead of the agent.
    #[arg(long)]
    pub gateway: bool,
    /// The gateway's port on the VM's loopback.
    #[arg(long, value_name = "PORT", default_value_t = GATEWAY_PORT, requires = "gateway",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub gateway_port: u16,
    /// The port to listen on at 127.0.0.1 here [default: the same as on the VM].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub local_port: Option<u16>,
}

pub async fn run(args: TunnelArgs, conn: &ConnArgs, out: &Output) -> Result<u8, ClientError> {
    let resolved = resolve_target(conn)?;
    let forward = Forward::plan(&args, &resolved)?;
    eprintln!("clawops: connecting to {}…", resolved.target);
    let mut ssh = Ssh::spawn(&forward)?;
    let signal_err = |e: std::io::Error| ClientError::Failed(format!("cannot handle signals: {e}"));
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_err)?;
    let probe = remote_answers(forward.local_port);
    tokio::pin!(probe);
    let mut announced = false;
    let status = loop {
        tokio::select! {
            status = ssh.child.wait() => break status,
            answers = &mut probe, if !announced => {
                announced = true;
                announce(&Announce { gateway: args.gateway, local_port: forward.local_port,
                    remote_port: forward.remote_port, answers, flag: resolved.flag(),
                    token_path: resolved.token_path.clone() }, out);
            }
            _ = sigint.recv() => return stop(ssh.group, &mut ssh.child).await,
            _ = sigterm.recv() => return stop(ssh.group, &mut ssh.child).await,
        }
    };
    // gcloud's own ssh may hold stderr open a little longer than gcloud itself.
    let _ = tokio::time::timeout(Duration::from_secs(1), ssh.relay).await;
    let last = ssh
        .last_line
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    closed(&forward.program, status, &last)
}

/// What to forward, and the ssh/gcloud command that does it.
struct Forward {
    program: String,
    argv: Vec<String>,
    local_port: u16,
    remote_port: u16,
}

impl Forward {
    /// Refuses a direct address and a local port that is taken.
    fn plan(args: &TunnelArgs, resolved: &Resolved) -> Result<Self, ClientError> {
        let remote_port = if args.gateway {
            args.gateway_port
        } else {
            resolved.agent_port
        };
        let local_port = args.local_port.unwrap_or(remote_port);
        let Some((program, argv)) =
            resolved
                .target
                .local_forward_command(local_port, remote_port, &resolved.ssh_options)
        else {
            return Err(ClientError::Usage(format!(
                "{} is already a direct address; `clawops tunnel` needs an ssh:// or gcloud:// \
                 target (-t NAME or --via)",
                resolved.target
            )));
        };
        // Saying so now beats ssh's "Address already in use" after it has connected.
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", local_port)) {
            return Err(ClientError::Usage(format!(
                "cannot listen on 127.0.0.1:{local_port} here ({e}): another tunnel, or a gateway \
                 running on this machine? Choose another port with --local-port"
            )));
        }
        Ok(Self {
            program,
            argv,
            local_port,
            remote_port,
        })
    }
}

/// The running ssh (or gcloud), its stderr relayed to ours.
struct Ssh {
    child: Child,
    group: Option<Pid>,
    relay: tokio::task::JoinHandle<()>,
    /// Its last non-empty stderr line, to explain an exit.
    last_line: Arc<Mutex<String>>,
}

impl Ssh {
    fn spawn(forward: &Forward) -> Result<Self, ClientError> {
        let program = &forward.program;
        tracing::debug!(%program, argv = ?forward.argv, "opening the tunnel");
        // Its own process group, so that stopping it also stops the ssh that gcloud starts.
        let mut child = Command::new(program)
            .args(&forward.argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ClientError::Connect(if e.kind() == std::io::ErrorKind::NotFound {
                    format!("{program} is not installed or not on PATH")
                } else {
                    format!("cannot start {program}: {e}")
                })
            })?;
        let group = child.id().map(|id| Pid::from_raw(id as i32));
        let last_line = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let relay = tokio::spawn(relay_stderr(stderr, last_line.clone()));
        Ok(Self {
            child,
            group,
            relay,
            last_line,
        })
    }
}

async fn relay_stderr(stderr: tokio::process::ChildStderr, last_line: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{line}");
        if !line.trim().is_empty() {
            *last_line.lock().unwrap_or_else(|e| e.into_inner()) = line.trim().to_owned();
        }
    }
}

/// The tunnel ended by itself: fine if ssh exited cleanly, else its last words.
fn closed(
    program: &str,
    status: std::io::Result<std::process::ExitStatus>,
    last: &str,
) -> Result<u8, ClientError> {
    match status {
        Ok(s) if s.success() => {
            eprintln!("clawops: the tunnel closed ({program} exited)");
            Ok(0)
        }
        Ok(s) => Err(ClientError::Connect(format!(
            "{program} exited ({}): {}",
            s.code().map_or("signal".into(), |c| c.to_string()),
            if last.is_empty() { "no message" } else { last }
        ))),
        Err(e) => Err(ClientError::Connect(format!("waiting for {program}: {e}"))),
    }
}

/// Ctrl-C or SIGTERM: end ssh (and gcloud's ssh) gently, then for sure.
async fn stop(group: Option<Pid>, child: &mut Child) -> Result<u8, ClientError> {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
    let _ = child.kill().await;
    eprintln!("clawops: tunnel closed");
    Ok(0)
}

/// Waits until the local port accepts a connection, then tells whether the VM's side answers:
/// ssh accepts locally and closes the connection at once when the remote port refuses it,
/// while a listening server keeps it open (waiting for a request, or greeting).
async fn remote_answers(port: u16) -> bool {
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await;
            return !matches!(read, Ok(Ok(0)) | Ok(Err(_)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Announce {
    gateway: bool,
    local_port: u16,
    remote_port: u16,
    answers: bool,
    flag: String,
    token_path: Option<std::path::PathBuf>,
}

fn announce(a: &Announce, out: &Output) {
    let local = a.local_port;
    let remote = a.remote_port;
    let url = if a.gateway {
        format!("http://127.0.0.1:{local}/")
    } else {
        format!("http://127.0.0.1:{local}")
    };
    if out.json {
        out.json_line(&json!({
            "ready": true,
            "url": url,
            "local_port": local,
            "remote_port": remote,
            "forwards": if a.gateway { "gateway" } else { "agent" },
            "remote_answers": a.answers,
        }));
        return;
    }
    if a.gateway {
        if !a.answers {
            println!(
                "the tunnel is up, but nothing answers on port {remote} on the VM: is the gateway \
                 running? (`clawops {} status`)",
                a.flag
            );
        }
        println!("open {url} in your browser (Ctrl-C to close)");
        return;
    }
    if !a.answers {
        println!(
            "the tunnel is up, but nothing answers on port {remote} on the VM: is clawops-agent \
             running there? (`sudo systemctl status clawops-agent`)"
        );
    }
    let token = a
        .token_path
        .as_ref()
        .map_or_else(|| "TOKEN_FILE".to_owned(), |p| p.display().to_string());
    println!(
        "the agent is at {url} (Ctrl-C to close); for example:\n  \
         clawops --addr {url} --token-file {token} status\n  \
         grpcurl -plaintext -H \"authorization: Bearer $(cat {token})\" 127.0.0.1:{local} list"
    );
}
