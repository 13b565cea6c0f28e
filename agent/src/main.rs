use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use clawops_agent::{
    auth::Token,
    config::{Config, ConfigError, DEFAULT_CONFIG_PATH},
    server, startup,
};

/// The clawops agent: serves the clawops API on a loopback port of the VM.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Config file (TOML). Default: /etc/clawops/agent.toml when it exists, else built-in defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Listen address (overrides `listen`). Non-loopback needs [tls].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Token file (overrides `token_file`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// State directory for the journal and snapshots (overrides `state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config and print the effective settings.
    CheckConfig,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("clawops-agent: {msg}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Some(Command::CheckConfig) => check_config(&config),
        None => run(config),
    }
}

fn load_config(args: &Args) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None if std::path::Path::new(DEFAULT_CONFIG_PATH).exists() => {
            Config::load(DEFAULT_CONFIG_PATH.as_ref())?
        }
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(path) = &args.token_file {
        config.token_file = path.clone();
    }
    if let Some(dir) = &args.state_dir {
        config.state_dir = dir.clone();
    }
    config.validate()?;
    Ok(config)
}

fn check_config(config: &Config) -> ExitCode {
    let app = match config.resolve_app() {
        Ok(app) => app,
        Err(e) => {
            eprintln!("clawops-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let token = match Token::load(&config.token_file) {
        Ok(_) => "present, mode 0600 (value hidden)".to_string(),
        Err(e) => format!("PROBLEM: {e}"),
    };
    // The token itself lives only in its file; print where it is and whether it is usable.
    println!(
        "# effective configuration\n{}",
        toml::to_string_pretty(&config.for_display()).unwrap_or_default()
    );
    println!(
        "# resolved\nowner = {:?}  # uid {} gid {}",
        app.owner, app.uid, app.gid
    );
    println!("repo = {:?}", app.repo.display().to_string());
    println!("project = {:?}", app.project);
    println!(
        "state_dirs = {:?}",
        app.state_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
    );
    println!("token = {token:?}");
    ExitCode::SUCCESS
}

fn run(config: Config) -> ExitCode {
    let token = match Token::load(&config.token_file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("clawops-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let tls = match startup::tls_config(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("clawops-agent: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread: the agent waits on sockets, it does not compute. A single-threaded runtime
    // wakes tasks without cross-thread signalling (which cost one syscall per log line when
    // streaming) and keeps the resident set small; blocking work goes to the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let ctx = match startup::build_context(config) {
            Ok(ctx) => ctx,
            Err(e) => {
                eprintln!("clawops-agent: {e}");
                return ExitCode::from(2);
            }
        };
        let interrupted = clawops_agent::reconcile::recover(&ctx).await;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "recovered operations a previous run left unfinished"
            );
        }
        clawops_agent::watch::start(&ctx, clawops_agent::watch::AfterCheck::Trim);
        let listener = match tokio::net::TcpListener::bind(ctx.config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("clawops-agent: cannot listen on {}: {e}", ctx.config.listen);
                return ExitCode::from(1);
            }
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(
            addr = %addr,
            version = env!("CARGO_PKG_VERSION"),
            project = %ctx.app.project,
            service = %ctx.config.app.service,
            "listening"
        );
        // The daemon gives back start-up's pages once quiet (not `clawops local`: not its pages).
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        tokio::spawn(clawops_agent::trim::when_quiet(
            ctx.counters.requests.clone(),
            ctx.counters.streams.clone(),
        ));
        let lock = ctx.lock.clone();
        let result = server::serve_tcp(ctx, token, tls, listener, shutdown_signal()).await;
        wait_for_running_operation(&lock).await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("clawops-agent: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// SIGTERM (systemd stop) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

/// A deploy half-way through should finish (or roll back) rather than be cut off by a restart;
/// give it up to the readiness timeout's order of magnitude. systemd's TimeoutStopSec bounds it.
async fn wait_for_running_operation(lock: &clawops_agent::lock::OperationLock) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(240);
    while let Some(op) = lock.holder() {
        if tokio::time::Instant::now() > deadline {
            tracing::warn!(operation = %op.id, "exiting with an operation still running");
            return;
        }
        tracing::info!(operation = %op.id, kind = %op.kind, "waiting for the running operation to finish");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("CLAWOPS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    // Under systemd, journald stamps every line itself.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Human if under_journald => fmt()
            .without_time()
            .with_ansi(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Human => fmt()
            .with_ansi(ansi)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
}
