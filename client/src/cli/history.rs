//! `clawops history`
use clap::Args;
use clawops::{Client, ClientError, proto};
use serde_json::json;

use super::output::{Output, duration_human, short_sha, time, time_human, time_json};

/// The deploy journal on the VM, newest first.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  clawops --via ssh://me@my-vm history --limit 5")]
pub struct HistoryArgs {
    /// How many operations to show.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: u32,
}

pub async fn run(mut client: Client, args: HistoryArgs, out: &Output) -> Result<u8, ClientError> {
    let reply = match client
        .agent
        .history(proto::HistoryRequest { limit: args.limit })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    if out.json {
        let entries: Vec<_> = reply.entries.iter().map(entry_json).collect();
        out.json_line(&json!({ "entries": entries }));
        return Ok(0);
    }
    if reply.entries.is_empty() {
        println!("no operations recorded yet");
    }
    for e in &reply.entries {
        let took = match (time(e.started_at.as_ref()), time(e.finished_at.as_ref())) {
            (Some(a), Some(b)) => duration_human((b - a).num_milliseconds().max(0) as u64),
            _ => "-".into(),
        };
        let shas = match (e.from_sha.is_empty(), e.to_sha.is_empty()) {
            (true, true) => String::new(),
            (true, false) => short_sha(&e.to_sha).to_owned(),
            (false, true) => format!("{} →", short_sha(&e.from_sha)),
            (false, false) => format!("{} → {}", short_sha(&e.from_sha), short_sha(&e.to_sha)),
        };
        println!(
            "{}  {:<8} {:<11} {:<27} {:>8}  by {}",
            time_human(e.started_at.as_ref()),
            e.kind,
            e.result,
            shas,
            took,
            e.requested_by
        );
        if !e.message.is_empty() {
            println!("    {}", e.message);
        }
    }
    Ok(0)
}

fn entry_json(e: &proto::JournalEntry) -> serde_json::Value {
    json!({
        "id": e.id,
        "kind": e.kind,
        "requested_by": e.requested_by,
        "started_at": time_json(e.started_at.as_ref()),
        "finished_at": time_json(e.finished_at.as_ref()),
        "result": e.result,
        "from_sha": e.from_sha,
        "to_sha": e.to_sha,
        "image": e.image,
        "message": e.message,
        "phases": e.phases.iter().map(|p| json!({
            "phase": p.phase, "status": p.status, "elapsed_ms": p.elapsed_ms, "message": p.message,
        })).collect::<Vec<_>>(),
        "last_logs": e.last_logs,
    })
}
