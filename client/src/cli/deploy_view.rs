//! Rendering a stream of `DeployEvent`s (up, update, rollback): a spinner with the current phase
//! on a terminal, plain lines otherwise, JSON lines with `--json`; returns the final result.
use std::{io::IsTerminal, time::Duration};

use clawops::{Client, ClientError, proto};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tonic::Streaming;

use super::output::{Output, duration_human, short_sha, time_json};

pub fn phase_name(p: i32) -> &'static str {
    match proto::Phase::try_from(p).unwrap_or(proto::Phase::Unspecified) {
        proto::Phase::Unspecified => "step",
        proto::Phase::Lock => "lock",
        proto::Phase::Fetch => "fetch",
        proto::Phase::Merge => "merge",
        proto::Phase::Build => "build",
        proto::Phase::Preflight => "preflight",
        proto::Phase::Snapshot => "snapshot",
        proto::Phase::Stop => "stop",
        proto::Phase::Create => "create",
        proto::Phase::Start => "start",
        proto::Phase::Readiness => "readiness",
        proto::Phase::Cleanup => "cleanup",
        proto::Phase::Rollback => "rollback",
        proto::Phase::Pull => "pull",
        proto::Phase::Resolve => "resolve",
    }
}

fn status_name(s: i32) -> &'static str {
    match proto::PhaseStatus::try_from(s).unwrap_or(proto::PhaseStatus::Unspecified) {
        proto::PhaseStatus::Unspecified => "",
        proto::PhaseStatus::Started => "started",
        proto::PhaseStatus::Done => "done",
        proto::PhaseStatus::Skipped => "skipped",
        proto::PhaseStatus::Failed => "failed",
    }
}

pub fn outcome_name(o: i32) -> &'static str {
    match proto::Outcome::try_from(o).unwrap_or(proto::Outcome::Unspecified) {
        proto::Outcome::Unspecified => "unknown",
        proto::Outcome::Succeeded => "succeeded",
        proto::Outcome::UpToDate => "up_to_date",
        proto::Outcome::Failed => "failed",
        proto::Outcome::RolledBack => "rolled_back",
    }
}

/// The exit code a result maps to: 0 when the gateway runs what was asked, 1 otherwise.
pub fn exit_code(r: &proto::DeployResult) -> u8 {
    match proto::Outcome::try_from(r.outcome).unwrap_or(proto::Outcome::Unspecified) {
        proto::Outcome::Succeeded | proto::Outcome::UpToDate => 0,
        _ => 1,
    }
}

pub fn result_json(r: &proto::DeployResult) -> serde_json::Value {
    json!({
        "outcome": outcome_name(r.outcome),
        "operation_id": r.operation_id,
        "from_sha": r.from_sha,
        "to_sha": r.to_sha,
        // Image mode deploys digests: the same value as to_sha, named for what it is.
        "digest": r.to_sha.starts_with("sha256:").then_some(&r.to_sha),
        "image": r.image,
        "message": r.message,
        "last_logs": r.last_logs,
        "duration_ms": r.duration_ms,
        "downtime_ms": r.downtime_ms,
        "snapshot": (!r.snapshot.is_empty()).then_some(&r.snapshot),
        "services": r.services.iter().map(|s| json!({
            "service": s.service, "container": s.container, "container_id": s.container_id,
            "image": s.image, "action": s.action,
        })).collect::<Vec<_>>(),
        "orphans": r.orphans,
        "orphans_removed": r.orphans_removed,
    })
}

fn event_json(e: &proto::DeployEvent) -> Option<serde_json::Value> {
    use proto::deploy_event::Event as E;
    let at = time_json(e.at.as_ref());
    Some(match e.event.as_ref()? {
        E::Phase(p) => json!({
            "at": at, "type": "phase", "phase": phase_name(p.phase), "status": status_name(p.status),
            "service": p.service, "message": p.message, "elapsed_ms": p.elapsed_ms,
        }),
        E::Build(b) => json!({
            "at": at, "type": "build", "step": b.step, "total_steps": b.total_steps,
            "step_name": b.step_name, "line": b.line,
        }),
        E::Pull(p) => json!({
            "at": at, "type": "pull", "reference": p.reference, "layers_done": p.layers_done,
            "layers_total": p.layers_total, "bytes_done": p.bytes_done, "bytes_total": p.bytes_total,
        }),
        E::Log(l) => json!({
            "at": at, "type": "log", "container": l.container,
            "line": String::from_utf8_lossy(&l.data).trim_end(),
        }),
        E::Warning(w) => json!({ "at": at, "type": "warning", "message": w }),
        E::Result(r) => {
            let mut v = result_json(r);
            v["at"] = at;
            v["type"] = "result".into();
            v
        }
    })
}

/// Follows the stream to its end; prints as it goes; returns the result.
pub async fn render(
    client: &Client,
    mut stream: Streaming<proto::DeployEvent>,
    out: &Output,
    verb: &str,
) -> Result<proto::DeployResult, ClientError> {
    let view = View::new(out, verb);
    let mut result = None;
    loop {
        let event = match stream.message().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(status) => {
                view.finish();
                return Err(client.explain(status).await);
            }
        };
        if out.json
            && let Some(v) = event_json(&event)
        {
            out.json_line(&v);
        }
        match event.event {
            Some(proto::deploy_event::Event::Result(r)) => result = Some(r),
            _ if out.json => {}
            Some(e) => view.show(e),
            None => {}
        }
    }
    view.finish();
    let result = result.ok_or_else(|| {
        ClientError::Connect(format!(
            "the connection ended before the {verb} finished; it goes on on the VM: see `clawops history`"
        ))
    })?;
    if !out.json {
        print_result(&result);
    }
    Ok(result)
}

/// The human view of a deploy stream: a spinner on a terminal, plain lines otherwise.
struct View {
    spinner: Option<ProgressBar>,
}

impl View {
    fn new(out: &Output, verb: &str) -> Self {
        let tty = !out.json && std::io::stderr().is_terminal();
        let spinner = tty.then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            pb.set_message(format!("{verb}…"));
            pb
        });
        Self { spinner }
    }

    /// A line that stays.
    fn say(&self, line: String) {
        match &self.spinner {
            Some(pb) => pb.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// A line that the next one replaces on a terminal (progress), printed otherwise.
    fn progress(&self, line: String) {
        match &self.spinner {
            Some(pb) => pb.set_message(line),
            None => eprintln!("  {line}"),
        }
    }

    fn show(&self, event: proto::deploy_event::Event) {
        use proto::deploy_event::Event as E;
        match event {
            E::Phase(p) => {
                let name = phase_name(p.phase);
                let status = status_name(p.status);
                let text = if p.message.is_empty() {
                    format!("{name} {status}")
                } else {
                    format!("{name} {status}: {}", p.message)
                };
                match (&self.spinner, status) {
                    (Some(pb), "started") => pb.set_message(text),
                    _ => self.say(format!("  {text}")),
                }
            }
            E::Build(b) if b.line.trim().is_empty() => {}
            E::Build(b) => {
                let step = if b.total_steps > 0 {
                    format!("[{}/{}] ", b.step, b.total_steps)
                } else {
                    String::new()
                };
                self.progress(format!("build {step}{}", b.line.trim_end()));
            }
            E::Pull(p) => self.progress(pull_line(&p)),
            E::Log(l) => self.say(format!(
                "  | {}",
                String::from_utf8_lossy(&l.data).trim_end()
            )),
            E::Warning(w) => self.say(format!("  warning: {w}")),
            E::Result(_) => {}
        }
    }

    fn finish(&self) {
        if let Some(pb) = &self.spinner {
            pb.finish_and_clear();
        }
    }
}

/// `pull 2/3 layers, 12.0 MiB of 40.1 MiB`.
fn pull_line(p: &proto::PullProgress) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "pull {}/{} layers, {:.1} MiB of {:.1} MiB",
        p.layers_done,
        p.layers_total,
        mib(p.bytes_done),
        mib(p.bytes_total)
    )
}

fn print_result(r: &proto::DeployResult) {
    let outcome = outcome_name(r.outcome);
    let mark = if exit_code(r) == 0 { "ok" } else { "FAILED" };
    println!(
        "{mark}: {} ({outcome}, {})",
        r.message,
        duration_human(r.duration_ms)
    );
    if !r.to_sha.is_empty() && !r.from_sha.is_empty() && r.from_sha != r.to_sha {
        println!("    {} → {}", short_sha(&r.from_sha), short_sha(&r.to_sha));
    }
    if r.downtime_ms > 0 {
        println!("    downtime {}", duration_human(r.downtime_ms));
    }
    if !r.last_logs.is_empty() {
        println!("    last log lines:");
        for l in &r.last_logs {
            println!("      {l}");
        }
    }
}
