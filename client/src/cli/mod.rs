//! The `clawops` command line: global connection options, one file per command family.
use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use clawops::{Client, ClientError, ConnectOptions, DEFAULT_AGENT_PORT, Target, local};

mod build;
mod demo;
mod deploy_view;
mod history;
mod logs;
mod memory;
mod output;
mod status;
mod up;
mod update;
mod verify;

pub use output::Output;

const EXAMPLES: &str = "\
Examples:
  clawops --via ssh://me@my-vm status
  clawops --via 'gcloud://openclaw-gateway?zone=us-central1-a&project=my-proj' history
  CLAWOPS_TOKEN=… clawops --addr http://127.0.0.1:18777 status --json
  clawops local --config agent.toml status";

/// Operate an OpenClaw gateway VM: build, deploy, watch, through the clawops agent.
#[derive(Debug, Parser)]
#[command(name = "clawops", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Machine-readable output: one JSON document (or JSON lines for streams) on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ConnArgs {
    /// The agent's address, when it is reachable directly (e.g. through your own `ssh -L`).
    #[arg(long, global = true, env = "CLAWOPS_ADDR", conflicts_with = "via")]
    pub addr: Option<String>,
    /// Tunnel to the agent: ssh://[user@]host[:port] or gcloud://VM?zone=Z&project=P[&iap=true].
    #[arg(long, global = true, env = "CLAWOPS_VIA")]
    pub via: Option<String>,
    /// The agent's port on the VM's loopback.
    #[arg(long, global = true, default_value_t = DEFAULT_AGENT_PORT)]
    pub agent_port: u16,
    /// File holding the agent's token (else CLAWOPS_TOKEN).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Extra ssh option for the tunnel, as KEY=VALUE (repeatable), e.g. IdentityFile=~/.ssh/vm.
    #[arg(long = "ssh-option", global = true, value_name = "KEY=VALUE")]
    pub ssh_options: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Agent(AgentCommand),
    /// Run a command with the agent in this process, against this machine's Docker engine
    /// (on the VM itself, or to try clawops out).
    #[command(after_help = "Example:\n  clawops local --config /etc/clawops/agent.toml status")]
    Local(LocalArgs),
    Demo(demo::DemoArgs),
}

/// Commands that talk to an agent (remote or in-process).
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    Build(build::BuildArgs),
    Status(status::StatusArgs),
    History(history::HistoryArgs),
    Logs(logs::LogsArgs),
    Up(up::UpArgs),
    Update(update::UpdateArgs),
    Rollback(update::RollbackArgs),
    Verify(verify::VerifyArgs),
    Memory(memory::MemoryArgs),
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The agent config (agent.toml) describing the app on this machine.
    #[arg(long, global = true, default_value = clawops_agent::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: AgentCommand,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let out = Output::new(cli.json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(run(cli, &out));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli, out: &Output) -> Result<u8, ClientError> {
    match cli.command {
        Command::Local(args) => {
            let client = local::connect_local(&args.config).await?;
            run_agent_command(client, args.command, out).await
        }
        Command::Demo(args) => demo::run(args, out).await,
        Command::Agent(command) => {
            let opts = connect_options(&cli.conn)?;
            let client = Client::connect(&opts).await?;
            run_agent_command(client, command, out).await
        }
    }
}

async fn run_agent_command(
    client: Client,
    command: AgentCommand,
    out: &Output,
) -> Result<u8, ClientError> {
    match command {
        AgentCommand::Build(args) => build::run(client, args, out).await,
        AgentCommand::Status(args) => status::run(client, args, out).await,
        AgentCommand::History(args) => history::run(client, args, out).await,
        AgentCommand::Logs(args) => logs::run(client, args, out).await,
        AgentCommand::Up(args) => up::run(client, args, out).await,
        AgentCommand::Update(args) => update::update(client, args, out).await,
        AgentCommand::Rollback(args) => update::rollback(client, args, out).await,
        AgentCommand::Verify(args) => verify::run(client, args, out).await,
        AgentCommand::Memory(args) => memory::run(client, args, out).await,
    }
}

pub fn connect_options(conn: &ConnArgs) -> Result<ConnectOptions, ClientError> {
    let target = match (&conn.addr, &conn.via) {
        (Some(addr), _) => Target::Addr(addr.clone()),
        (None, Some(via)) => {
            Target::parse_via(via).map_err(|e| ClientError::Usage(format!("--via {e}")))?
        }
        (None, None) => {
            return Err(ClientError::Usage(
                "where is the agent? Pass --via ssh://USER@HOST, --via 'gcloud://VM?zone=ZONE&project=PROJECT', \
                 or --addr http://127.0.0.1:PORT (on the VM itself: `clawops local …`)"
                    .into(),
            ));
        }
    };
    Ok(ConnectOptions {
        target,
        agent_port: conn.agent_port,
        token: read_token(conn.token_file.as_deref())?,
        ssh_options: conn.ssh_options.clone(),
    })
}

fn read_token(file: Option<&std::path::Path>) -> Result<String, ClientError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::Usage(format!("cannot read --token-file {}: {e}", path.display()))
        })?;
        return non_empty(text, &format!("--token-file {}", path.display()));
    }
    match std::env::var("CLAWOPS_TOKEN") {
        Ok(t) => non_empty(t, "CLAWOPS_TOKEN"),
        Err(_) => Err(ClientError::Usage(
            "no token: pass --token-file FILE or set CLAWOPS_TOKEN (the agent's token is \
             /etc/clawops/token on the VM)"
                .into(),
        )),
    }
}

fn non_empty(token: String, source: &str) -> Result<String, ClientError> {
    let token = token.trim().to_owned();
    if token.is_empty() {
        Err(ClientError::Usage(format!("{source} is empty")))
    } else {
        Ok(token)
    }
}

fn init_tracing() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("CLAWOPS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}
