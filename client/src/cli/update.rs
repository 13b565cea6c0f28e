//! `clawops update` and `clawops rollback`
use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use clawops::{Client, ClientError, proto};

use super::{
    deploy_view::{exit_code, render},
    output::Output,
};

/// Pull the configured branch on the VM, build, recreate the gateway, wait until it is ready;
/// roll back automatically when the new version fails.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops --via ssh://me@my-vm update
  clawops --via 'gcloud://openclaw-gateway?zone=us-central1-a' update --json > update.json
  clawops --via ssh://me@my-vm update --ref v2026.11.1
  clawops --via ssh://me@my-vm update --ref sha256:4f1c…   (image mode: a tag or a digest)")]
pub struct UpdateArgs {
    /// Deploy this sha or tag instead of the branch head (fast-forward only). Image mode
    /// (`[app] image`, or a service with `image:` and no `build:`): an image tag or a digest.
    #[arg(long = "ref", value_name = "SHA|TAG|DIGEST")]
    pub git_ref: Option<String>,
    /// With --ref: allow a commit that is not a fast-forward (checked out detached; no commit
    /// of the checkout is lost).
    #[arg(long, requires = "git_ref")]
    pub allow_non_ff: bool,
    /// Rebuild and recreate even when the deployed sha is already the target.
    #[arg(long)]
    pub force: bool,
    /// Deploy even though the change widens what the repository asks of the VM (new binds,
    /// capabilities, ports, user, network mode, confinement options or base images), after you
    /// reviewed what the refusal listed. The deploy policy in agent.toml still applies.
    #[arg(long)]
    pub accept_changes: bool,
    /// Replay the checkout's local commits (e.g. a patched Dockerfile) onto the new upstream
    /// commit and deploy the result; a conflict aborts and leaves the checkout as it was.
    /// `[app] rebase = true` in agent.toml makes it the default.
    #[arg(long, conflicts_with = "allow_non_ff")]
    pub rebase: bool,
    /// Recorded in the journal as who asked (default: $USER@hostname).
    #[arg(long)]
    pub requested_by: Option<String>,
}

/// Redeploy the previous healthy version from its kept image (no build).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops --via ssh://me@my-vm rollback
  clawops --via ssh://me@my-vm rollback --to 3f2a1b9c --restore-state --yes")]
pub struct RollbackArgs {
    /// A sha (prefix) of an earlier healthy deploy (default: the one before the current); in
    /// image mode a digest or its prefix (with or without `sha256:`).
    #[arg(long = "to", value_name = "SHA|DIGEST")]
    pub to_sha: Option<String>,
    /// Also restore ~/.openclaw from the snapshot taken when that version was replaced (the
    /// current state is moved aside, not deleted).
    #[arg(long)]
    pub restore_state: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long)]
    pub requested_by: Option<String>,
}

pub fn who(requested_by: Option<String>) -> String {
    requested_by.unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        if std::env::var_os("CI").is_some() {
            format!("{user}@{host} (CI)")
        } else {
            format!("{user}@{host}")
        }
    })
}

pub async fn update(mut client: Client, args: UpdateArgs, out: &Output) -> Result<u8, ClientError> {
    let request = proto::UpdateRequest {
        git_ref: args.git_ref.unwrap_or_default(),
        allow_non_ff: args.allow_non_ff,
        force: args.force,
        accept_changes: args.accept_changes,
        rebase: args.rebase,
        requested_by: who(args.requested_by),
    };
    let stream = match client.agent.update(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    let result = render(&client, stream, out, "update").await?;
    Ok(exit_code(&result))
}

pub async fn rollback(
    mut client: Client,
    args: RollbackArgs,
    out: &Output,
) -> Result<u8, ClientError> {
    if args.restore_state && !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(ClientError::Usage(
                "--restore-state replaces the gateway's state with an older snapshot; confirm with --yes".into(),
            ));
        }
        eprint!(
            "Restore the gateway's state directory from the snapshot of that version? The current \
             state is moved aside, not deleted. [y/N] "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(ClientError::Usage(
                "not confirmed; nothing was changed".into(),
            ));
        }
    }
    let request = proto::RollbackRequest {
        to_sha: args.to_sha.unwrap_or_default(),
        restore_state: args.restore_state,
        requested_by: who(args.requested_by),
    };
    let stream = match client.agent.rollback(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    let result = render(&client, stream, out, "rollback").await?;
    Ok(exit_code(&result))
}
