//! `clawops build`: build the service's image on the VM from the checked-out commit, showing the
//! builder's progress as it happens (a progress bar with the step count on a terminal, plain
//! lines otherwise, JSON lines with `--json`). Exit code 1 when the build fails.
use std::{io::IsTerminal, time::Duration};

use clap::Args;
use clawops::{Client, ClientError, proto};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{
    deploy_view::phase_name,
    output::{Output, duration_human, time_json},
    update::who,
};

/// Build the service's image from the repository's working tree (HEAD), tagged `<image>:<sha>`
/// and with the compose `image:` name; older sha tags beyond `[build] keep_images` are pruned.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops --via ssh://me@my-vm build
  clawops --via ssh://me@my-vm build --no-cache
  clawops --via ssh://me@my-vm build --json > build.jsonl")]
pub struct BuildArgs {
    /// Build every step again instead of reusing the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// The compose service to build (default: the configured one).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Recorded in the journal as who asked (default: $USER@hostname).
    #[arg(long)]
    pub requested_by: Option<String>,
}

pub async fn run(mut client: Client, args: BuildArgs, out: &Output) -> Result<u8, ClientError> {
    let request = proto::BuildRequest {
        service: args.service,
        no_cache: args.no_cache,
        requested_by: who(args.requested_by),
    };
    let mut stream = match client.agent.build(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    let mut view = View::new(out);
    let mut result = None;
    loop {
        let event = match stream.message().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(status) => {
                view.clear();
                return Err(client.explain(status).await);
            }
        };
        if out.json {
            out.json_line(&event_json(&event));
        }
        match event.event {
            Some(proto::build_event::Event::Result(r)) => result = Some(r),
            Some(e) if !out.json => view.show(e),
            _ => {}
        }
    }
    view.clear();
    let result = result.ok_or_else(|| {
        ClientError::Connect(
            "the connection ended before the build finished; it goes on on the VM: see `clawops history`"
                .into(),
        )
    })?;
    if !out.json {
        print_result(&result);
    }
    Ok(if result.ok { 0 } else { 1 })
}

/// Human progress: a bar on a terminal, plain lines otherwise (both on stderr).
struct View {
    bar: Option<ProgressBar>,
    /// The step whose lines were printed last, to label interleaved (parallel) steps.
    last_step: String,
}

impl View {
    fn new(out: &Output) -> Self {
        let bar = (!out.json && std::io::stderr().is_terminal()).then(|| {
            let pb = ProgressBar::new(0);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed:>4} [{bar:20}] {pos}/{len} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            pb.set_message("starting the build…");
            pb
        });
        Self {
            bar,
            last_step: String::new(),
        }
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(pb) => pb.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn show(&mut self, event: proto::build_event::Event) {
        use proto::build_event::Event as E;
        match event {
            E::Progress(p) => self.progress(p),
            E::Phase(p) => {
                let status = proto::PhaseStatus::try_from(p.status)
                    .unwrap_or(proto::PhaseStatus::Unspecified);
                if status == proto::PhaseStatus::Started {
                    if let Some(pb) = &self.bar {
                        pb.set_message(format!("{}…", phase_name(p.phase)));
                    }
                } else if status != proto::PhaseStatus::Failed && !p.message.is_empty() {
                    // A failure is printed once, with the result.
                    let verb = match status {
                        proto::PhaseStatus::Skipped => "skipped",
                        _ => "done",
                    };
                    self.say(format!("{} {verb}: {}", phase_name(p.phase), p.message));
                }
            }
            E::Warning(w) => self.say(format!("warning: {w}")),
            E::Result(_) => {}
        }
    }

    fn progress(&mut self, p: proto::BuildProgress) {
        if let Some(pb) = &self.bar {
            if p.total_steps > 0 {
                pb.set_length(u64::from(p.total_steps));
                pb.set_position(u64::from(p.step));
            }
            // Finished steps and their outcome stay on screen; output lines scroll through
            // the bar's message, as `docker build` does.
            if p.line.starts_with("DONE ") || p.line == "CACHED" || p.line.starts_with("ERROR") {
                pb.println(format!("{} {}", p.step_name, p.line));
            } else if p.step_name.is_empty() {
                pb.println(p.line);
            } else if p.line.is_empty() {
                pb.set_message(p.step_name);
            } else {
                pb.set_message(format!("{} | {}", p.step_name, p.line));
            }
            return;
        }
        if p.step_name.is_empty() {
            eprintln!("{}", p.line);
            return;
        }
        if p.line.is_empty() || p.step_name != self.last_step {
            eprintln!("=> {}", p.step_name);
            self.last_step = p.step_name.clone();
        }
        if !p.line.is_empty() {
            eprintln!("   {}", p.line);
        }
    }

    fn clear(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}

fn event_json(e: &proto::BuildEvent) -> serde_json::Value {
    use proto::build_event::Event as E;
    let at = time_json(e.at.as_ref());
    match &e.event {
        Some(E::Progress(p)) => json!({
            "at": at, "type": "progress", "step": p.step, "total_steps": p.total_steps,
            "step_name": p.step_name, "line": p.line,
        }),
        Some(E::Phase(p)) => json!({
            "at": at, "type": "phase", "phase": phase_name(p.phase),
            "status": match proto::PhaseStatus::try_from(p.status) {
                Ok(proto::PhaseStatus::Started) => "started",
                Ok(proto::PhaseStatus::Done) => "done",
                Ok(proto::PhaseStatus::Skipped) => "skipped",
                Ok(proto::PhaseStatus::Failed) => "failed",
                _ => "",
            },
            "service": p.service, "message": p.message, "elapsed_ms": p.elapsed_ms,
        }),
        Some(E::Warning(w)) => json!({ "at": at, "type": "warning", "message": w }),
        Some(E::Result(r)) => json!({
            "at": at, "type": "result", "ok": r.ok, "operation_id": r.operation_id,
            "image_id": r.image_id, "tags": r.tags, "size_bytes": r.size_bytes,
            "git_sha": r.git_sha, "removed_tags": r.removed_tags, "builder": r.builder,
            "failed_step": (!r.failed_step.is_empty()).then_some(&r.failed_step),
            "error": (!r.error.is_empty()).then_some(&r.error),
            "output_tail": r.output_tail, "duration_ms": r.duration_ms,
        }),
        None => json!({ "at": at, "type": "unknown" }),
    }
}

fn print_result(r: &proto::BuildResult) {
    if r.ok {
        println!(
            "ok: built {} ({}, {}) with {} in {}",
            r.tags.join(", "),
            short_id(&r.image_id),
            size_human(r.size_bytes),
            r.builder,
            duration_human(r.duration_ms)
        );
        if !r.removed_tags.is_empty() {
            println!("    removed old tags: {}", r.removed_tags.join(", "));
        }
        return;
    }
    // Failures go to stderr with everything needed to fix them.
    eprintln!("FAILED: {}", r.error);
    if !r.output_tail.is_empty() {
        let step = if r.failed_step.is_empty() {
            "the build"
        } else {
            &r.failed_step
        };
        eprintln!("    last output of {step}:");
        for l in &r.output_tail {
            eprintln!("      {l}");
        }
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn size_human(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= 1024.0 * MIB {
        format!("{:.1} GiB", n as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}
