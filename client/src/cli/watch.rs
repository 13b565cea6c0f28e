//! `clawops watch status|pause|resume`: the agent's auto-update.
use clap::{Args, Subcommand};
use clawops::{Client, ClientError, proto};
use serde_json::json;

use super::output::{Output, short_sha, time_human, time_json};

/// Auto-update: the agent deploys new commits of its branch (image mode: new digests of its
/// tag) inside `[watch] window`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  clawops watch status\n  clawops watch pause --reason \
    \"release freeze\"\n  clawops watch resume --json"
)]
pub struct WatchArgs {
    #[command(subcommand)]
    pub command: WatchCommand,
}

#[derive(Debug, Subcommand)]
pub enum WatchCommand {
    /// Enabled or paused, the window, the next check and the last result.
    #[command(after_help = "Example:\n  clawops watch status --json")]
    Status,
    /// Stop deploying new versions until `watch resume` (survives agent restarts).
    #[command(after_help = "Example:\n  clawops watch pause --reason \"release freeze\"")]
    Pause {
        /// Shown by `watch status`.
        #[arg(long)]
        reason: Option<String>,
        /// Recorded as who paused (default: $USER@hostname).
        #[arg(long)]
        requested_by: Option<String>,
    },
    /// Resume watching (and reset the failure count).
    #[command(after_help = "Example:\n  clawops watch resume")]
    Resume {
        #[arg(long)]
        requested_by: Option<String>,
    },
}

pub async fn run(mut client: Client, args: WatchArgs, out: &Output) -> Result<u8, ClientError> {
    let agent = &mut client.agent;
    let reply = match args.command {
        WatchCommand::Status => agent.watch_status(proto::WatchStatusRequest {}).await,
        WatchCommand::Pause {
            reason,
            requested_by,
        } => {
            let req = proto::WatchPauseRequest {
                requested_by: super::update::who(requested_by),
                reason: reason.unwrap_or_default(),
            };
            agent.watch_pause(req).await
        }
        WatchCommand::Resume { requested_by } => {
            let req = proto::WatchResumeRequest {
                requested_by: super::update::who(requested_by),
            };
            agent.watch_resume(req).await
        }
    };
    let reply = match reply {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    if out.json {
        out.json_line(&to_json(&reply));
    } else {
        print_human(&reply);
    }
    Ok(0)
}

pub fn to_json(r: &proto::WatchStatusReply) -> serde_json::Value {
    json!({
        "enabled": r.enabled,
        "paused": r.paused,
        "paused_reason": (r.paused).then_some(&r.paused_reason),
        "paused_by": (r.paused).then_some(&r.paused_by),
        "paused_at": time_json(r.paused_at.as_ref()),
        "source": r.source,
        "window": r.window,
        "interval_secs": r.interval_secs,
        "next_check": time_json(r.next_check.as_ref()),
        "last_check": time_json(r.last_check.as_ref()),
        "last_check_error": (!r.last_check_error.is_empty()).then_some(&r.last_check_error),
        "last": r.last.as_ref().map(|l| json!({
            "sha": l.sha, "outcome": l.outcome, "at": time_json(l.at.as_ref()),
            "message": l.message, "operation_id": l.operation_id,
        })),
        "consecutive_failures": r.consecutive_failures,
        "max_failures": r.max_failures,
        "skipped_sha": (!r.skipped_sha.is_empty()).then_some(&r.skipped_sha),
    })
}

fn print_human(r: &proto::WatchStatusReply) {
    let state = match (r.enabled, r.paused) {
        (false, _) => "off ([watch] enabled = false in agent.toml)".to_owned(),
        (true, false) => "on".to_owned(),
        (true, true) => "on, PAUSED".to_owned(),
    };
    println!(
        "watch       {state}, {} every {}s",
        r.source, r.interval_secs
    );
    if r.paused {
        println!(
            "paused      by {} at {}: {}\n            `clawops watch resume` resumes",
            r.paused_by,
            time_human(r.paused_at.as_ref()),
            r.paused_reason
        );
    }
    println!("window      {}", r.window);
    if r.next_check.is_some() {
        println!("next check  {}", time_human(r.next_check.as_ref()));
    }
    if r.last_check.is_some() {
        let error = if r.last_check_error.is_empty() {
            String::new()
        } else {
            format!(" (failed: {})", r.last_check_error)
        };
        println!("last check  {}{error}", time_human(r.last_check.as_ref()));
    }
    match &r.last {
        Some(l) => println!(
            "last result {} {} at {}{}",
            short_sha(&l.sha),
            l.outcome,
            time_human(l.at.as_ref()),
            if l.message.is_empty() {
                String::new()
            } else {
                format!(": {}", l.message)
            }
        ),
        None => println!("last result none yet"),
    }
    println!(
        "failures    {} in a row (pauses at {})",
        r.consecutive_failures, r.max_failures
    );
    if !r.skipped_sha.is_empty() {
        println!(
            "skipped     {} rolled back; waiting for a newer commit or digest",
            short_sha(&r.skipped_sha)
        );
    }
}
