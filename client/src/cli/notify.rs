//! `clawops notify test`: one test message to every `[[notify]]` target of the agent.
use clap::{Args, Subcommand};
use clawops::{Client, ClientError, proto};
use serde_json::json;

/// Webhook notifications (`[[notify]]` in agent.toml).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  clawops notify test --json")]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send one test message to every target now and show each result (exit 1 if any failed).
    #[command(after_help = "Example:\n  clawops notify test --json")]
    Test,
}

pub async fn run(
    mut client: Client,
    args: NotifyArgs,
    out: &super::Output,
) -> Result<u8, ClientError> {
    let NotifyCommand::Test = args.command;
    let reply = match client.agent.notify_test(proto::NotifyTestRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    if reply.results.is_empty() {
        return Err(ClientError::Usage(
            "the agent has no [[notify]] targets: add one to agent.toml, e.g.\n  [[notify]]\n  \
             url = \"https://hooks.slack.com/services/…\"\n  format = \"slack\""
                .into(),
        ));
    }
    if out.json {
        out.json_line(&json!({
            "results": reply.results.iter().map(|r| json!({
                "target": r.target, "format": r.format, "delivered": r.delivered,
                "http_status": (r.http_status != 0).then_some(r.http_status),
                "error": (!r.error.is_empty()).then_some(&r.error),
            })).collect::<Vec<_>>(),
        }));
    } else {
        for r in &reply.results {
            if r.delivered {
                println!(
                    "ok      {} ({}): HTTP {}",
                    r.target, r.format, r.http_status
                );
            } else {
                println!("FAILED  {} ({}): {}", r.target, r.format, r.error);
            }
        }
    }
    Ok(if reply.results.iter().all(|r| r.delivered) {
        0
    } else {
        1
    })
}
