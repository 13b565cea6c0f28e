//! The `clawops` command line: global connection options, one file per command family.
use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use clawops::{
    Client, ClientError, ConnectOptions,
    targets::{self as named, Env, Resolved, Selection},
};

mod build;
mod completions;
#[cfg(local_agent)]
mod demo;
mod deploy_view;
mod history;
mod install;
mod logs;
mod memory;
mod notify;
mod output;
mod resize;
mod run;
mod status;
mod targets;
mod terminal;
mod token;
mod tunnel;
mod up;
mod update;
mod verify;
mod watch;

pub use output::Output;

const EXAMPLES: &str = "\
Examples:
  clawops -t prod status                # a target from ~/.config/clawops/config.toml
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

// The environment variables (CLAWOPS_ADDR, CLAWOPS_VIA, CLAWOPS_TARGET) are read by
// `targets::resolve`, not by clap, so that any flag beats any variable instead of conflicting.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// A named target from ~/.config/clawops/config.toml (`clawops targets` lists them; env
    /// CLAWOPS_TARGET). Without --target/--via/--addr, the file's `default` target is used.
    #[arg(long, short = 't', global = true, value_name = "NAME")]
    pub target: Option<String>,
    /// The agent's address, when it is reachable directly, e.g. through `clawops tunnel`
    /// (env CLAWOPS_ADDR).
    #[arg(long, global = true, value_name = "URL")]
    pub addr: Option<String>,
    /// Tunnel to the agent: ssh://[user@]host[:port] or gcloud://VM?zone=Z&project=P[&iap=true]
    /// (env CLAWOPS_VIA).
    #[arg(long, global = true, value_name = "URL")]
    pub via: Option<String>,
    /// The agent's port on the VM's loopback [default: the target's agent_port, else 18777].
    #[arg(long, global = true, value_name = "PORT")]
    pub agent_port: Option<u16>,
    /// File holding the agent's token [default: CLAWOPS_TOKEN, else the target's token_file,
    /// else ~/.config/clawops/tokens/NAME].
    #[arg(long, global = true, value_name = "FILE")]
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
    Demo(DemoArgs),
    Install(install::InstallArgs),
    Targets(targets::TargetsArgs),
    Token(token::TokenArgs),
    Tunnel(tunnel::TunnelArgs),
    Completions(completions::CompletionsArgs),
    Resize(resize::ResizeArgs),
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
    Run(run::RunArgs),
    Exec(run::ExecArgs),
    Watch(watch::WatchArgs),
    Notify(notify::NotifyArgs),
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The agent config (agent.toml) describing the app on this machine.
    #[arg(long, global = true, default_value = clawops_proto::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: AgentCommand,
}

/// Try clawops end to end against the local Docker engine (nothing is pulled; cleans up after).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cargo run --release -p clawops -- demo")]
pub struct DemoArgs {
    /// Leave the demo gateway, images and directory in place to explore (prints how).
    #[arg(long)]
    pub keep: bool,
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
        Command::Local(args) => local(args, out).await,
        Command::Demo(args) => demo(args, out).await,
        Command::Install(args) => install::run(args, &cli.conn, out).await,
        Command::Targets(args) => targets::run(args, out),
        Command::Token(args) => token::run(args, &cli.conn, out).await,
        Command::Tunnel(args) => tunnel::run(args, &cli.conn, out).await,
        Command::Completions(args) => completions::run(args),
        Command::Resize(args) => resize::run(args, &cli.conn, out).await,
        Command::Agent(command) => {
            let opts = connect_options(&cli.conn)?;
            let client = Client::connect(&opts).await?;
            run_agent_command(client, command, out).await
        }
    }
}

#[cfg(local_agent)]
async fn local(args: LocalArgs, out: &Output) -> Result<u8, ClientError> {
    let client = clawops::local::connect_local(&args.config).await?;
    run_agent_command(client, args.command, out).await
}

#[cfg(local_agent)]
async fn demo(args: DemoArgs, out: &Output) -> Result<u8, ClientError> {
    demo::run(args, out).await
}

#[cfg(not(local_agent))]
async fn local(_: LocalArgs, _: &Output) -> Result<u8, ClientError> {
    Err(needs_linux("local"))
}

#[cfg(not(local_agent))]
async fn demo(_: DemoArgs, _: &Output) -> Result<u8, ClientError> {
    Err(needs_linux("demo"))
}

/// `local` and `demo` run the agent in this process against this machine's Docker engine.
#[cfg(not(local_agent))]
fn needs_linux(command: &str) -> ClientError {
    ClientError::Usage(format!(
        "`clawops {command}` runs the agent in this process against this machine's Docker \
         engine, which needs Linux (and a clawops built with its default `local` feature). From \
         here, reach the agent on your VM instead: `clawops -t NAME …` or `clawops --via …`"
    ))
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
        AgentCommand::Run(args) => run::run(client, args, out).await,
        AgentCommand::Exec(args) => run::exec(client, args, out).await,
        AgentCommand::Watch(args) => watch::run(client, args, out).await,
        AgentCommand::Notify(args) => notify::run(client, args, out).await,
    }
}

impl ConnArgs {
    fn selection(&self) -> Selection {
        Selection {
            addr: self.addr.clone(),
            via: self.via.clone(),
            target: self.target.clone(),
            agent_port: self.agent_port,
            token_file: self.token_file.clone(),
            ssh_options: self.ssh_options.clone(),
        }
    }
}

/// Which agent the command goes to (flags, then CLAWOPS_* variables, then the config's
/// default), without the token.
pub fn resolve_target(conn: &ConnArgs) -> Result<Resolved, ClientError> {
    for opt in &conn.ssh_options {
        named::check_ssh_option(opt)
            .map_err(|m| ClientError::Usage(format!("--ssh-option {m}")))?;
    }
    Ok(named::resolve(&conn.selection(), &Env::from_process())?)
}

pub fn connect_options(conn: &ConnArgs) -> Result<ConnectOptions, ClientError> {
    let resolved = resolve_target(conn)?;
    let (token, _) = named::resolve_token(&conn.selection(), &Env::from_process(), &resolved)?;
    if let Some(warning) = resolved.target.cleartext_warning() {
        eprintln!("{warning}");
    }
    Ok(resolved.connect_options(token))
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
