//! `clawops install`: the agent on a VM, through the same SSH connection as every other command.
use std::path::PathBuf;

use clap::Args;
use clawops::{
    Client, ClientError,
    install::{AgentSource, Installer, Probe, Provisioned, Settings, log_line},
    proto,
    remote::Stream,
    targets::Resolved,
    token::DEFAULT_REMOTE_TOKEN_PATH,
};
use serde_json::json;

use super::{ConnArgs, output::Output, resolve_target, status, token::TokenDestination};

/// Install (or upgrade) clawops-agent on a Debian or Ubuntu VM over SSH with sudo: the same
/// provisioning as the GCE startup script (users, ACLs, hardened unit, token, agent.toml,
/// optional clone), then save the token here and show the agent's status. A second run
/// changes nothing; a new agent replaces the old one only once it accepted the configuration
/// and came up, else the old one keeps running.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops install -t prod                       # clawops-agent beside clawops, else the release's
  clawops install --via ssh://me@my-vm --output ~/.config/clawops/my-vm.token \\
      --repo-url https://github.com/openclaw/openclaw.git
  clawops install -t prod --agent-bin target/release/clawops-agent")]
pub struct InstallArgs {
    /// The agent binary to install (Linux, the VM's architecture) [default: clawops-agent
    /// beside this clawops, else this version's release for the VM's architecture].
    #[arg(long, value_name = "PATH", conflicts_with_all = ["agent_url", "agent_sha256"])]
    pub agent_bin: Option<PathBuf>,
    /// Let the VM download the agent from this URL instead (with --agent-sha256).
    #[arg(long, value_name = "URL", requires = "agent_sha256")]
    pub agent_url: Option<String>,
    /// The sha256 of what --agent-url serves; checked on the VM before anything is replaced.
    #[arg(long, value_name = "SHA256", requires = "agent_url")]
    pub agent_sha256: Option<String>,
    /// The account that owns the OpenClaw checkout on the VM [default: the SSH user].
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
    /// The checkout on the VM [default: ~OWNER/openclaw].
    #[arg(long, value_name = "PATH")]
    pub repo: Option<String>,
    /// Cloned into the checkout while it is empty [default: no clone].
    #[arg(long, value_name = "URL")]
    pub repo_url: Option<String>,
    /// The branch the agent deploys [default: main].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// The compose service the agent updates [default: openclaw-gateway].
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Where to save the agent's token [default: the target's token file].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub async fn run(args: InstallArgs, conn: &ConnArgs, out: &Output) -> Result<u8, ClientError> {
    let resolved = resolve_target(conn)?;
    let via = resolved.target.to_string();
    if !resolved.target.is_tunnel() {
        return Err(ClientError::Usage(format!(
            "{via} is a direct address: `clawops install` needs an ssh:// or gcloud:// target \
             (or -t NAME) to run the installation on the VM"
        )));
    }
    // Everything that can be wrong here is found before the VM is touched.
    let destination = TokenDestination::choose(&resolved, args.output.as_deref())?;
    let source = AgentSource::choose(
        args.agent_bin.as_deref(),
        args.agent_url.clone(),
        args.agent_sha256.clone(),
    )?;
    let installer = Installer {
        target: &resolved.target,
        ssh_options: &resolved.ssh_options,
    };
    let probe = installer.probe().await?;
    let arch = probe.check(&via)?;
    if !out.json {
        describe(&via, &probe, &source);
    }
    let settings = settings(&args, &resolved);
    let mut show = |line: &str| {
        if !out.json {
            eprintln!("  {}", log_line(Stream::Stdout, line));
        }
    };
    let provisioned = installer
        .provision(&probe, arch, &source, &settings, &mut show)
        .await?;
    let sudo = probe.sudo != "root";
    let saved = destination
        .fetch_and_save(&resolved, DEFAULT_REMOTE_TOKEN_PATH, sudo, true)
        .await?;
    let client = Client::connect(&resolved.connect_options(saved.token)).await?;
    if out.json {
        return report_json(
            client,
            &resolved,
            &probe,
            &provisioned,
            &destination.path,
            out,
        )
        .await;
    }
    summarize(
        &via,
        &provisioned,
        saved.agent_version.as_deref(),
        &destination.path,
        &resolved,
    );
    status::run(client, status::StatusArgs {}, out).await
}

fn settings(args: &InstallArgs, resolved: &Resolved) -> Settings {
    Settings {
        owner: args.owner.clone(),
        repo_path: args.repo.clone(),
        repo_url: args.repo_url.clone(),
        branch: args.branch.clone(),
        service: args.service.clone(),
        // Written into agent.toml only when it differs from the agent's own default.
        listen_port: (resolved.agent_port != clawops::DEFAULT_AGENT_PORT)
            .then_some(resolved.agent_port),
    }
}

fn describe(via: &str, probe: &Probe, source: &AgentSource) {
    eprintln!(
        "{via}: {}, {}, systemd, {}",
        probe.os_description(),
        probe.arch,
        if probe.sudo == "root" {
            "root".to_owned()
        } else {
            format!("{} with sudo", probe.user)
        }
    );
    let installed = match (&probe.agent_version, &probe.agent_sha256) {
        (Some(v), Some(sha)) => format!("{v} (sha256 {})", short(sha)),
        (None, Some(sha)) => format!("an agent (sha256 {})", short(sha)),
        _ => "no agent".to_owned(),
    };
    let wanted = match source {
        AgentSource::Local(a) => format!("{} (sha256 {})", a.path.display(), short(&a.sha256)),
        AgentSource::Url { url, .. } => url.clone(),
        AgentSource::Release => format!("the v{} release", env!("CARGO_PKG_VERSION")),
    };
    eprintln!("installed there: {installed}; installing: {wanted}");
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn summarize(
    via: &str,
    provisioned: &Provisioned,
    agent_version: Option<&str>,
    token_path: &std::path::Path,
    resolved: &Resolved,
) {
    let agent = agent_version.map_or(String::new(), |v| format!("clawops-agent {v}, "));
    if provisioned.changed {
        println!("installed on {via}: {agent}running");
    } else {
        println!("nothing changed on {via}: {agent}already installed and running");
    }
    println!("saved its token to {} (mode 0600)", token_path.display());
    match &resolved.name {
        Some(name) => println!("next: clawops -t {name} up"),
        None => println!(
            "next: clawops --via {via} --token-file {} up",
            token_path.display()
        ),
    }
    println!();
}

async fn report_json(
    mut client: Client,
    resolved: &Resolved,
    probe: &Probe,
    provisioned: &Provisioned,
    token_path: &std::path::Path,
    out: &Output,
) -> Result<u8, ClientError> {
    let status = match client.agent.status(proto::StatusRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(e) => return Err(client.explain(e).await),
    };
    out.json_line(&json!({
        "target": resolved.name,
        "via": resolved.target.to_string(),
        "host": {
            "os": probe.os_description(), "arch": probe.arch, "user": probe.user,
        },
        "changed": provisioned.changed,
        "uploaded_agent": provisioned.uploaded_agent,
        "agent_sha256": provisioned.agent_sha256,
        "token_path": token_path,
        "log": provisioned.log,
        "status": status::to_json(&status),
    }));
    Ok(0)
}
