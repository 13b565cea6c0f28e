//! `clawops memory`
use std::{fmt::Write, io::IsTerminal, time::Duration};

use clap::Args;
use clawops::{Client, ClientError, proto};
use serde_json::{Value, json};

use super::output::{Output, duration_human, time_human, time_json};

/// Sparkline width of the default view and of `--history`.
const SHORT: u32 = 32;
const LONG: u32 = 72;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Memory of the VM and the gateway: available memory, pressure, OOM kills, each container's
/// usage, recent history, and advice on the machine type with the command that applies it
/// (`clawops resize TYPE`, and the gcloud commands it runs).
/// Advice is not failure: the exit code is 0 unless --fail-on-advice is given.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops --via ssh://me@my-vm memory
  clawops --via ssh://me@my-vm memory --history
  clawops --via ssh://me@my-vm memory --watch 5
  clawops --via 'gcloud://openclaw-gateway?zone=us-central1-a' memory --json --fail-on-advice")]
pub struct MemoryArgs {
    /// Show the history in detail (summaries, a longer sparkline; with --json, the samples).
    #[arg(long)]
    pub history: bool,
    /// Refresh every SECS seconds (default 2) until interrupted.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch: Option<u64>,
    /// Exit with code 1 when the agent advises something (for CI gates).
    #[arg(long)]
    pub fail_on_advice: bool,
}

pub async fn run(mut client: Client, args: MemoryArgs, out: &Output) -> Result<u8, ClientError> {
    // The human view always draws a short sparkline; JSON carries samples only when asked.
    let request = proto::MemoryRequest {
        history: args.history || !out.json,
        max_samples: if args.history { LONG } else { SHORT },
    };
    let Some(every) = args.watch else {
        let report = fetch(&mut client, request).await?;
        show(&report, &args, out, false);
        return Ok(exit_code(&report, &args));
    };
    let clear = !out.json && std::io::stdout().is_terminal();
    loop {
        let report = fetch(&mut client, request).await?;
        show(&report, &args, out, clear);
        if args.fail_on_advice && !report.advice.is_empty() {
            return Ok(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
    }
}

async fn fetch(
    client: &mut Client,
    request: proto::MemoryRequest,
) -> Result<proto::MemoryReport, ClientError> {
    match client.agent.memory_stats(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(status) => Err(client.explain(status).await),
    }
}

fn exit_code(report: &proto::MemoryReport, args: &MemoryArgs) -> u8 {
    u8::from(args.fail_on_advice && !report.advice.is_empty())
}

fn show(report: &proto::MemoryReport, args: &MemoryArgs, out: &Output, clear: bool) {
    if out.json {
        out.json_line(&to_json(report));
        return;
    }
    let text = human(report, args.history);
    if clear {
        // Home + clear: a steady screen instead of a scrolling one.
        print!("\x1b[H\x1b[2J{text}");
    } else {
        print!("{text}");
        if args.watch.is_some() {
            println!();
        }
    }
}

fn kind_name(kind: i32) -> &'static str {
    match proto::AdviceKind::try_from(kind).unwrap_or(proto::AdviceKind::Unspecified) {
        proto::AdviceKind::Upgrade => "upgrade",
        proto::AdviceKind::Downgrade => "downgrade",
        proto::AdviceKind::RaiseLimit => "raise_limit",
        proto::AdviceKind::Unspecified => "unknown",
    }
}

fn opt<T: serde::Serialize>(present: bool, v: T) -> Value {
    if present { json!(v) } else { Value::Null }
}

fn summary_json(s: Option<&proto::Summary>) -> Value {
    s.map_or(
        Value::Null,
        |s| json!({"min": s.min, "avg": s.avg, "max": s.max, "p95": s.p95}),
    )
}

pub fn to_json(r: &proto::MemoryReport) -> Value {
    let host = r.host.unwrap_or_default();
    let p = host.pressure.unwrap_or_default();
    let machine = r.machine.clone().unwrap_or_default();
    let history = r.history.clone().unwrap_or_default();
    json!({
        "at": time_json(r.at.as_ref()),
        "machine": {
            "on_gce": machine.on_gce, "name": machine.name, "zone": machine.zone,
            "machine_type": machine.machine_type, "project": machine.project,
        },
        "host": {
            "total_bytes": host.total_bytes,
            "available_bytes": host.available_bytes,
            "used_bytes": host.used_bytes,
            "swap_total_bytes": host.swap_total_bytes,
            "swap_used_bytes": host.swap_used_bytes,
            "pressure": p.available.then(|| json!({
                "some": {"avg10": p.some_avg10, "avg60": p.some_avg60, "avg300": p.some_avg300},
                "full": opt(p.full_available,
                    json!({"avg10": p.full_avg10, "avg60": p.full_avg60, "avg300": p.full_avg300})),
            })),
            "oom_kills_total": opt(host.oom_kills_available, host.oom_kills_total),
            "oom_kills_since_start": host.oom_kills_since_start,
        },
        "agent_rss_bytes": r.agent_rss_bytes,
        "containers": r.containers.iter().map(|c| json!({
            "name": c.name, "id": c.id, "service": c.service, "state": c.state,
            "running": c.running,
            "usage_bytes": opt(!c.source.is_empty(), c.usage_bytes),
            "limit_bytes": c.limit_bytes, "limited": c.limited,
            "percent": opt(!c.source.is_empty(), c.percent),
            "source": opt(!c.source.is_empty(), &c.source),
            "oom_killed": c.oom_killed, "exit_code": c.exit_code,
            "restart_count": c.restart_count,
            "finished_at": time_json(c.finished_at.as_ref()),
        })).collect::<Vec<_>>(),
        "docker_error": opt(!r.docker_error.is_empty(), &r.docker_error),
        "events": r.events.iter().map(|e| json!({
            "at": time_json(e.at.as_ref()), "kind": e.kind, "container": e.container,
            "container_id": e.container_id, "service": e.service,
            "exit_code": opt(e.kind == "die", e.exit_code),
        })).collect::<Vec<_>>(),
        "events_watcher_connected": r.events_watcher_connected,
        "history": {
            "interval_seconds": history.interval_seconds,
            "span_seconds": history.span_seconds,
            "available": summary_json(history.available.as_ref()),
            "container_usage": summary_json(history.container_usage.as_ref()),
            "oom_events": history.oom_events,
            "kernel_oom_kills": history.kernel_oom_kills,
            "samples": history.samples.iter().map(|s| json!({
                "at": time_json(s.at.as_ref()),
                "available_bytes": s.available_bytes,
                "container_usage_bytes": s.container_usage_bytes,
                "pressure_some_avg10": s.pressure_some_avg10,
            })).collect::<Vec<_>>(),
        },
        "advice": r.advice.iter().map(|a| json!({
            "kind": kind_name(a.kind),
            "summary": a.summary,
            "reason": a.reason,
            "from_machine_type": opt(!a.from_machine_type.is_empty(), &a.from_machine_type),
            "to_machine_type": opt(!a.to_machine_type.is_empty(), &a.to_machine_type),
            "resize_command": opt(!a.resize_command.is_empty(), &a.resize_command),
            "commands": a.commands,
            "price_before_usd_month": opt(a.price_before_usd_month > 0.0, a.price_before_usd_month),
            "price_after_usd_month": opt(a.price_after_usd_month > 0.0, a.price_after_usd_month),
            "memory_before_bytes": a.memory_before_bytes,
            "memory_after_bytes": a.memory_after_bytes,
            "downtime": a.downtime,
            "service": opt(!a.service.is_empty(), &a.service),
        })).collect::<Vec<_>>(),
        "sampling_since": time_json(r.sampling_since.as_ref()),
    })
}

/// Bars for `values` on a 0..=`max` scale (an absolute scale: a full bar is `max`).
pub fn sparkline(values: impl Iterator<Item = u64>, max: u64) -> String {
    values
        .map(|v| {
            let level = if max == 0 {
                0
            } else {
                ((v.min(max) as f64 / max as f64) * (BARS.len() - 1) as f64).round() as usize
            };
            BARS[level]
        })
        .collect()
}

/// `512 B`, `1.5 MiB`, `3.8 GiB`.
pub fn bytes_human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

fn human(r: &proto::MemoryReport, detailed: bool) -> String {
    let mut s = String::new();
    let host = r.host.unwrap_or_default();
    let history = r.history.clone().unwrap_or_default();
    machine_line(&mut s, &r.machine.clone().unwrap_or_default());
    host_lines(&mut s, &host);
    let _ = writeln!(s, "agent       {} RSS", bytes_human(r.agent_rss_bytes));
    container_lines(&mut s, r);
    event_lines(&mut s, &r.events, detailed);
    history_lines(&mut s, &history, &host, &r.containers, detailed);
    advice_lines(&mut s, r);
    s
}

fn machine_line(s: &mut String, machine: &proto::Machine) {
    if machine.on_gce {
        let _ = writeln!(
            s,
            "machine     {} · {} · {} (project {})",
            machine.name, machine.machine_type, machine.zone, machine.project
        );
    } else {
        let _ = writeln!(s, "machine     not on GCE (no metadata server answered)");
    }
}

/// Available memory, pressure and OOM kills.
fn host_lines(s: &mut String, host: &proto::HostMemory) {
    let _ = writeln!(
        s,
        "host        {} available of {} ({}) · used {} · swap {} of {}",
        bytes_human(host.available_bytes),
        bytes_human(host.total_bytes),
        pct(host.available_bytes, host.total_bytes),
        bytes_human(host.used_bytes),
        bytes_human(host.swap_used_bytes),
        bytes_human(host.swap_total_bytes),
    );
    let p = host.pressure.unwrap_or_default();
    if p.available {
        let full = if p.full_available {
            format!(
                " · full {:.1}/{:.1}/{:.1}%",
                p.full_avg10, p.full_avg60, p.full_avg300
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "pressure    some {:.1}/{:.1}/{:.1}%{full} (avg 10s/60s/300s)",
            p.some_avg10, p.some_avg60, p.some_avg300
        );
    } else {
        let _ = writeln!(s, "pressure    not reported by this kernel (no PSI)");
    }
    if host.oom_kills_available {
        let _ = writeln!(
            s,
            "oom kills   {} since the agent started · {} since boot",
            host.oom_kills_since_start, host.oom_kills_total
        );
    }
}

fn container_lines(s: &mut String, r: &proto::MemoryReport) {
    if !r.docker_error.is_empty() {
        let _ = writeln!(s, "containers  unknown: {}", r.docker_error);
    } else if r.containers.is_empty() {
        let _ = writeln!(s, "containers  none in this project");
    } else {
        let _ = writeln!(s, "containers");
    }
    for c in &r.containers {
        let mut line = format!("  {:<34} {:<10}", c.name, c.state);
        if !c.source.is_empty() {
            let limit = if c.limited {
                ""
            } else {
                " (no limit: host RAM)"
            };
            let _ = write!(
                line,
                " {} of {} ({:.0}%){limit}",
                bytes_human(c.usage_bytes),
                bytes_human(c.limit_bytes),
                c.percent
            );
        } else if !c.running {
            let _ = write!(line, " exit {}", c.exit_code);
            if c.oom_killed {
                line.push_str(", OOM-killed");
            }
            if c.limited {
                let _ = write!(line, " · limit {}", bytes_human(c.limit_bytes));
            }
        }
        if c.restart_count > 0 {
            let _ = write!(line, " · {} restarts", c.restart_count);
        }
        let _ = writeln!(s, "{line}");
    }
}

fn event_lines(s: &mut String, events: &[proto::MemoryEvent], detailed: bool) {
    if events.is_empty() {
        return;
    }
    let _ = writeln!(s, "events");
    for e in events.iter().rev().take(if detailed { 20 } else { 5 }) {
        let code = if e.kind == "die" {
            format!(" (exit {})", e.exit_code)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {}  {:<3} {}{code}",
            time_human(e.at.as_ref()),
            e.kind,
            e.container
        );
    }
}

fn history_lines(
    s: &mut String,
    h: &proto::MemoryHistory,
    host: &proto::HostMemory,
    containers: &[proto::ContainerMemory],
    detailed: bool,
) {
    if h.samples.is_empty() {
        return;
    }
    let span = duration_human(h.span_seconds * 1000);
    let _ = writeln!(
        s,
        "history     last {span}, a sample every {}s",
        h.interval_seconds
    );
    let available = sparkline(
        h.samples.iter().map(|x| x.available_bytes),
        host.total_bytes,
    );
    let _ = writeln!(s, "  available  {available}");
    // Container usage against the sum of the limits (or the host), so a full bar means full.
    let scale = containers
        .iter()
        .filter(|c| c.running)
        .map(|c| c.limit_bytes)
        .sum::<u64>()
        .clamp(1, host.total_bytes.max(1));
    let usage = sparkline(h.samples.iter().map(|x| x.container_usage_bytes), scale);
    let _ = writeln!(s, "  containers {usage}");
    if detailed {
        let row = |name: &str, v: Option<&proto::Summary>| match v {
            Some(v) => format!(
                "  {name:<10} min {}  avg {}  p95 {}  max {}",
                bytes_human(v.min),
                bytes_human(v.avg),
                bytes_human(v.p95),
                bytes_human(v.max)
            ),
            None => format!("  {name:<10} no samples"),
        };
        let _ = writeln!(s, "{}", row("available", h.available.as_ref()));
        let _ = writeln!(s, "{}", row("containers", h.container_usage.as_ref()));
        let _ = writeln!(
            s,
            "  oom        {} docker oom events · {} kernel OOM kills in the window",
            h.oom_events, h.kernel_oom_kills
        );
    }
}

fn advice_lines(s: &mut String, r: &proto::MemoryReport) {
    if r.advice.is_empty() {
        let _ = writeln!(s, "advice      none: memory is fine for this machine");
        return;
    }
    for a in &r.advice {
        let _ = writeln!(s, "advice      {}: {}", kind_name(a.kind), a.summary);
        let _ = writeln!(s, "  why       {}", a.reason);
        if !a.resize_command.is_empty() {
            let _ = writeln!(s, "  run       {}", a.resize_command);
        }
        // The same by hand, for those without clawops at hand or who want each step.
        for (i, c) in a.commands.iter().enumerate() {
            let label = match (i, a.resize_command.is_empty()) {
                (0, true) => "run",
                (0, false) => "by hand",
                _ => "",
            };
            let _ = writeln!(s, "  {label:<9} {c}");
        }
        if !a.downtime.is_empty() {
            let _ = writeln!(s, "  downtime  {}", a.downtime);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_absolutely() {
        assert_eq!(sparkline([0, 50, 100, 200].into_iter(), 100), "▁▅██");
        assert_eq!(sparkline([5].into_iter(), 0), "▁");
        assert_eq!(sparkline(std::iter::empty(), 10), "");
    }

    #[test]
    fn advice_exit_code_only_when_asked() {
        let mut report = proto::MemoryReport::default();
        report.advice.push(proto::Advice::default());
        let mut args = MemoryArgs {
            history: false,
            watch: None,
            fail_on_advice: false,
        };
        assert_eq!(exit_code(&report, &args), 0);
        args.fail_on_advice = true;
        assert_eq!(exit_code(&report, &args), 1);
        report.advice.clear();
        assert_eq!(exit_code(&report, &args), 0);
    }
}
