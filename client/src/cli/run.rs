//! `clawops run` and `clawops exec`: one process on the VM with this terminal's stdin, stdout
//! and stderr, over one bidirectional stream. With a terminal here, the process gets a TTY
//! there: this terminal goes raw, size changes follow it, and it is restored however the
//! command ends. The process's exit code is the command's.
use std::io::{Read, Write};

use clap::Args;
use clawops::{Client, ClientError, proto};
use serde_json::json;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};
use tokio_stream::wrappers::ReceiverStream;

use super::{output::Output, terminal};

/// Messages in flight to the agent: stdin waits for the agent instead of piling up here.
const CHANNEL_MESSAGES: usize = 4;
/// Bytes read from stdin per message.
const STDIN_CHUNK: usize = 32 * 1024;

/// Run a one-off container of SERVICE from the compose file, like `docker compose run --rm`:
/// its image, environment, volumes, user and entrypoint, no published ports; removed when the
/// command ends, also when this client is killed or disconnected.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops -t prod run openclaw-cli onboard
  clawops -t prod run openclaw-cli -- openclaw --version
  echo hello | clawops -t prod run -T openclaw-cli -- cat

Everything after the command's first word goes to the command (`--` also ends clawops's
options). The exit code is the process's. With --json, stdout and stderr stay the process's
and a final {\"exit_code\": N, \"container\": …} line goes to stderr.")]
pub struct RunArgs {
    /// The compose service whose definition the container is made from.
    pub service: String,
    #[command(flatten)]
    pub session: SessionFlags,
    /// The command and its arguments (default: the service's command).
    #[arg(trailing_var_arg = true, value_name = "ARGS")]
    pub argv: Vec<String>,
}

/// Run a command in the running gateway (or --service's) container, like `docker compose exec`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops -t prod exec -- openclaw devices list
  clawops -t prod exec -- sh
  clawops -t prod exec --service openclaw-gateway -T -- cat /home/node/.openclaw/openclaw.json

The exit code is the process's. With --json, a final {\"exit_code\": N, \"container\": …} line
goes to stderr. The command is an argument vector (no shell runs it unless you name one).")]
pub struct ExecArgs {
    /// The compose service (default: the agent's configured service).
    #[arg(long, default_value = "")]
    pub service: String,
    #[command(flatten)]
    pub session: SessionFlags,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SessionFlags {
    /// No TTY, even on a terminal (stdin is then forwarded only when it is not a terminal).
    #[arg(short = 'T', long)]
    pub no_tty: bool,
    /// A TTY (needs stdin to be a terminal; the default when stdin and stdout are). No `-t`:
    /// that is --target.
    #[arg(long, conflicts_with = "no_tty")]
    pub tty: bool,
    /// Extra environment for the process (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

pub async fn run(client: Client, args: RunArgs, out: &Output) -> Result<u8, ClientError> {
    let start = proto::SessionStart {
        kind: proto::SessionKind::Run as i32,
        service: args.service,
        argv: args.argv,
        env: args.session.env.clone(),
        ..Default::default()
    };
    session(client, start, &args.session, out).await
}

pub async fn exec(client: Client, args: ExecArgs, out: &Output) -> Result<u8, ClientError> {
    let start = proto::SessionStart {
        kind: proto::SessionKind::Exec as i32,
        service: args.service,
        argv: args.argv,
        env: args.session.env.clone(),
        ..Default::default()
    };
    session(client, start, &args.session, out).await
}

/// TTY or not, stdin forwarded or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    tty: bool,
    stdin: bool,
}

fn plan(flags: &SessionFlags, local: terminal::Local) -> Result<Plan, ClientError> {
    if flags.tty && !local.stdin {
        return Err(ClientError::Usage(
            "--tty needs stdin to be a terminal; drop --tty (or use -T) when piping".into(),
        ));
    }
    let tty = flags.tty || (!flags.no_tty && local.stdin && local.stdout);
    // A terminal's keystrokes go to the process only through a TTY; anything else is piped.
    Ok(Plan {
        tty,
        stdin: tty || !local.stdin,
    })
}

/// How the local side ended.
enum Ended {
    Exit(i64),
    Signal(i32),
    /// Our stdout was closed (`| head`).
    BrokenPipe,
}

async fn session(
    mut client: Client,
    mut start: proto::SessionStart,
    flags: &SessionFlags,
    out: &Output,
) -> Result<u8, ClientError> {
    let plan = plan(flags, terminal::Local::detect())?;
    start.tty = plan.tty;
    start.stdin = plan.stdin;
    start.size = plan
        .tty
        .then(terminal::size)
        .flatten()
        .map(|(rows, cols)| proto::TerminalSize {
            rows: rows.into(),
            cols: cols.into(),
        });
    let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
    // The channel is empty: this cannot wait.
    let _ = tx
        .send(input(proto::session_input::Input::Start(start)))
        .await;
    let mut stream = match client.agent.session(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    let raw = match plan.tty {
        true => Some(terminal::RawMode::enable().map_err(|e| {
            ClientError::Failed(format!("cannot put the terminal in raw mode: {e}"))
        })?),
        false => None,
    };
    if plan.stdin {
        spawn_stdin_reader(tx.clone());
    }
    let resizes = plan.tty.then(|| tokio::spawn(forward_resizes(tx.clone())));
    // Without a TTY, the request stream ends with stdin.
    drop(tx);
    let mut container = String::new();
    let ended = pump(&mut stream, &mut container).await;
    if let Some(task) = resizes {
        task.abort();
    }
    drop(stream);
    drop(raw);
    let code = match ended {
        Ok(Ended::Exit(code)) => u8::try_from(code).unwrap_or(255),
        Ok(Ended::Signal(n)) => u8::try_from(128 + n).unwrap_or(255),
        Ok(Ended::BrokenPipe) => 141,
        Err(status) => return Err(client.explain(status).await),
    };
    if out.json {
        eprintln!("{}", json!({"exit_code": code, "container": container}));
    }
    Ok(code)
}

/// Writes the process's output here until it exits, a signal asks us to stop, or our stdout
/// goes away.
async fn pump(
    stream: &mut tonic::Streaming<proto::SessionOutput>,
    container: &mut String,
) -> Result<Ended, tonic::Status> {
    let mut signals = Signals::new()?;
    loop {
        let message = tokio::select! {
            m = stream.message() => m?,
            n = signals.next() => return Ok(Ended::Signal(n)),
        };
        let Some(message) = message else {
            return Err(tonic::Status::unavailable(
                "the agent ended the session without an exit code",
            ));
        };
        let written = match message.output {
            Some(proto::session_output::Output::Started(s)) => {
                *container = s.container_name;
                Ok(())
            }
            Some(proto::session_output::Output::Stdout(data)) => {
                write_all(std::io::stdout(), &data)
            }
            Some(proto::session_output::Output::Stderr(data)) => {
                write_all(std::io::stderr(), &data)
            }
            Some(proto::session_output::Output::Exit(e)) => return Ok(Ended::Exit(e.code)),
            None => Ok(()),
        };
        if written.is_err() {
            return Ok(Ended::BrokenPipe);
        }
    }
}

fn write_all(mut w: impl Write, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data)?;
    w.flush()
}

/// SIGINT, SIGTERM and SIGHUP end the session (the agent then removes a one-off container)
/// and let the terminal be restored, instead of killing us in raw mode.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> Result<Self, tonic::Status> {
        let watch = |kind| {
            signal(kind).map_err(|e| tonic::Status::internal(format!("cannot watch signals: {e}")))
        };
        Ok(Self {
            interrupt: watch(SignalKind::interrupt())?,
            terminate: watch(SignalKind::terminate())?,
            hangup: watch(SignalKind::hangup())?,
        })
    }

    /// The number of the next signal received.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => 2,
            _ = self.terminate.recv() => 15,
            _ = self.hangup.recv() => 1,
        }
    }
}

/// Stdin in its own thread: a blocking read of a terminal cannot be cancelled, and a tokio
/// blocking task would keep the runtime from shutting down until a key is pressed.
fn spawn_stdin_reader(tx: mpsc::Sender<proto::SessionInput>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let data = buf[..n].to_vec().into();
                    let msg = input(proto::session_input::Input::Stdin(data));
                    if tx.blocking_send(msg).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.blocking_send(input(proto::session_input::Input::StdinEof(true)));
    });
}

/// Sends the terminal's size whenever it changes (SIGWINCH).
async fn forward_resizes(tx: mpsc::Sender<proto::SessionInput>) {
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    while winch.recv().await.is_some() {
        if let Some((rows, cols)) = terminal::size() {
            let size = proto::TerminalSize {
                rows: rows.into(),
                cols: cols.into(),
            };
            if tx
                .send(input(proto::session_input::Input::Resize(size)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn input(i: proto::session_input::Input) -> proto::SessionInput {
    proto::SessionInput { input: Some(i) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(tty: bool, no_tty: bool) -> SessionFlags {
        SessionFlags {
            no_tty,
            tty,
            env: vec![],
        }
    }

    #[test]
    fn a_tty_when_both_ends_are_terminals_and_stdin_when_piped() {
        let term = terminal::Local {
            stdin: true,
            stdout: true,
        };
        let piped = terminal::Local {
            stdin: false,
            stdout: false,
        };
        let p = |f, l| plan(&f, l).unwrap();
        assert_eq!(
            p(flags(false, false), term),
            Plan {
                tty: true,
                stdin: true
            }
        );
        assert_eq!(
            p(flags(false, true), term),
            Plan {
                tty: false,
                stdin: false
            }
        );
        assert_eq!(
            p(flags(false, false), piped),
            Plan {
                tty: false,
                stdin: true
            }
        );
        let out_redirected = terminal::Local {
            stdin: true,
            stdout: false,
        };
        assert_eq!(
            p(flags(false, false), out_redirected),
            Plan {
                tty: false,
                stdin: false
            }
        );
        assert_eq!(
            p(flags(true, false), out_redirected),
            Plan {
                tty: true,
                stdin: true
            }
        );
        let err = plan(&flags(true, false), piped).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
