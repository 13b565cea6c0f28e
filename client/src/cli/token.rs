//! `clawops token fetch`: read the agent's token on the VM over the same SSH connection the
//! tunnel uses, check it against the agent, and keep it in a 0600 file.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use clawops::{
    Client, ClientError, proto,
    targets::Env,
    token::{self, DEFAULT_REMOTE_TOKEN_PATH},
};
use serde_json::json;

use super::{ConnArgs, output::Output, resolve_target};

/// The agent's API token: `clawops token fetch -t NAME` copies it from the VM.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  clawops token fetch -t prod")]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    Fetch(FetchArgs),
}

/// Read the token from the VM (`sudo -n cat /etc/clawops/token` through ssh or gcloud compute
/// ssh), check that the agent accepts it, and save it 0600 where `-t NAME` finds it: the
/// target's token_file, else ~/.config/clawops/tokens/NAME.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops token fetch -t prod
  clawops token fetch --via ssh://me@my-vm --output ~/my-vm.token
  clawops token fetch -t lab --no-sudo --remote-path /home/me/clawops/token")]
pub struct FetchArgs {
    /// Where to save it [default: the target's token_file, else ~/.config/clawops/tokens/NAME].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The agent's token file on the VM.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_REMOTE_TOKEN_PATH)]
    pub remote_path: String,
    /// Read it with `sudo -n cat` (the default: the file is root's or the clawops user's).
    #[arg(long, overrides_with = "no_sudo")]
    pub sudo: bool,
    /// Read it with plain `cat` as the SSH user (a user that can read it, or a VM without sudo).
    #[arg(long, overrides_with = "sudo")]
    pub no_sudo: bool,
    /// Save it without asking the agent whether it accepts it (e.g. while the agent is down).
    #[arg(long)]
    pub no_verify: bool,
}

pub async fn run(args: TokenArgs, conn: &ConnArgs, out: &Output) -> Result<u8, ClientError> {
    match args.command {
        TokenCommand::Fetch(args) => fetch(args, conn, out).await,
    }
}

async fn fetch(args: FetchArgs, conn: &ConnArgs, out: &Output) -> Result<u8, ClientError> {
    let resolved = resolve_target(conn)?;
    let via = resolved.target.to_string();
    if !resolved.target.is_tunnel() {
        return Err(token::TokenError::NotATunnel(via).into());
    }
    let destination = TokenDestination::choose(&resolved, args.output.as_deref())?;
    let agent_version = destination
        .fetch_and_save(&resolved, &args.remote_path, !args.no_sudo, !args.no_verify)
        .await?
        .agent_version;
    let output = destination.path;

    if out.json {
        out.json_line(&json!({
            "target": resolved.name,
            "via": via,
            "remote_path": args.remote_path,
            "path": output,
            "verified": agent_version.is_some(),
            "agent_version": agent_version,
        }));
        return Ok(0);
    }
    let whose = resolved
        .name
        .as_deref()
        .map_or_else(|| via.clone(), |n| format!("target {n}"));
    println!(
        "saved the token of {whose} to {} (mode 0600)",
        output.display()
    );
    match agent_version {
        Some(v) => println!("checked: clawops-agent {v} at {via} accepts it"),
        None => println!("not checked against the agent (--no-verify)"),
    }
    let found_by_default = resolved.token_path.as_deref() == Some(output.as_path());
    match &resolved.name {
        Some(name) if found_by_default => println!("next: clawops -t {name} status"),
        _ => println!("use it with --token-file {}", output.display()),
    }
    Ok(0)
}

/// Where a fetched token is saved: `--output`, else the named target's token file.
pub(super) struct TokenDestination {
    pub path: PathBuf,
    /// clawops' own tokens directory is kept private; a directory the user chose is left as is.
    private_dir: bool,
}

impl TokenDestination {
    pub fn choose(
        resolved: &clawops::targets::Resolved,
        output: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let default_path = match &resolved.name {
            Some(name) => Some(Env::from_process().default_token_path(name)?),
            None => None,
        };
        let path = match (output, &resolved.token_path) {
            (Some(path), _) => path.to_owned(),
            (None, Some(path)) => path.clone(),
            (None, None) => {
                return Err(ClientError::Usage(format!(
                    "where should the token of {} go? Pass --output FILE (then use it with \
                     --token-file FILE), or name the target in the config file and use -t NAME",
                    resolved.target
                )));
            }
        };
        let private_dir = default_path.as_deref() == Some(path.as_path());
        Ok(Self { path, private_dir })
    }

    /// Reads the token on the VM, checks it with the agent unless `verify_it` is false, and
    /// saves it.
    pub async fn fetch_and_save(
        &self,
        resolved: &clawops::targets::Resolved,
        remote_path: &str,
        sudo: bool,
        verify_it: bool,
    ) -> Result<Saved, ClientError> {
        let token =
            token::fetch(&resolved.target, &resolved.ssh_options, remote_path, sudo).await?;
        let mut agent_version = None;
        if verify_it {
            agent_version = Some(verify(resolved, &token, remote_path).await?);
        }
        token::write_token_file(&self.path, &token, self.private_dir)?;
        Ok(Saved {
            token,
            agent_version,
        })
    }
}

/// A token fetched and saved, and the version of the agent that accepted it (when checked).
pub(super) struct Saved {
    pub token: String,
    pub agent_version: Option<String>,
}

/// Calls Status with the new token over the same route; nothing is saved when this fails.
async fn verify(
    resolved: &clawops::targets::Resolved,
    token: &str,
    remote_path: &str,
) -> Result<String, ClientError> {
    let unsaved = "nothing was saved; --no-verify saves it anyway";
    let opts = resolved.connect_options(token);
    let context = |e: ClientError| match e {
        ClientError::Auth(m) => ClientError::Auth(format!(
            "the agent refused the token read from {remote_path}: it uses another token file \
             (see token_file in /etc/clawops/agent.toml and pass --remote-path), or was not \
             restarted after the token changed ({m}); {unsaved}"
        )),
        ClientError::Connect(m) => ClientError::Connect(format!(
            "read the token, but cannot check it with the agent on port {}: {m} ({unsaved})",
            resolved.agent_port
        )),
        ClientError::Failed(m) => {
            ClientError::Failed(format!("checking the token: {m}; {unsaved}"))
        }
        ClientError::Usage(m) => ClientError::Usage(format!("checking the token: {m}; {unsaved}")),
    };
    let mut client = Client::connect(&opts).await.map_err(context)?;
    match client.agent.status(proto::StatusRequest {}).await {
        Ok(reply) => Ok(reply.into_inner().agent_version),
        Err(status) => Err(context(client.explain(status).await)),
    }
}
