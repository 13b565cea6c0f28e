//! `clawops up`
use clap::Args;
use clawops::{Client, ClientError, proto};

use super::{
    deploy_view::{exit_code, render},
    output::Output,
    update::who,
};

/// Create or recreate the app's containers from its docker-compose.yml and .env (as
/// `docker compose up -d` would, natively), then wait until the gateway is ready. Containers
/// whose configuration did not change are left running; nothing is ever pulled.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops --via ssh://me@my-vm up
  clawops --via ssh://me@my-vm up --force-recreate openclaw-gateway
  clawops local --config /etc/clawops/agent.toml up --json")]
pub struct UpArgs {
    /// Services to bring up, with their dependencies (default: all).
    pub services: Vec<String>,
    /// Recreate containers even when their configuration is unchanged.
    #[arg(long)]
    pub force_recreate: bool,
    /// Remove containers of services that are no longer in the compose file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// Do not wait for readiness.
    #[arg(long)]
    pub no_wait: bool,
    /// Recorded in the journal as who asked (default: $USER@hostname).
    #[arg(long)]
    pub requested_by: Option<String>,
}

pub async fn run(mut client: Client, args: UpArgs, out: &Output) -> Result<u8, ClientError> {
    let request = proto::UpRequest {
        services: args.services,
        force_recreate: args.force_recreate,
        remove_orphans: args.remove_orphans,
        no_wait: args.no_wait,
        requested_by: who(args.requested_by),
    };
    let stream = match client.agent.up(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    let result = render(&client, stream, out, "up").await?;
    if !out.json {
        for s in &result.services {
            println!(
                "    {:<24} {:<10} {} ({})",
                s.service,
                s.action,
                s.container,
                &s.container_id[..s.container_id.len().min(12)]
            );
        }
    }
    Ok(exit_code(&result))
}
