//! `clawops verify`
use clap::Args;
use clawops::{Client, ClientError, proto};
use serde_json::json;

use super::output::Output;

/// Are the binaries the skills need baked into the image, and do they run? Checks the names
/// given, `[verify] binaries` of the agent config, and every skill's `requires.bins` /
/// `requires.anyBins`. Exits 1 when a required binary is missing or broken.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops --via ssh://me@my-vm verify
  clawops --via ssh://me@my-vm verify gog goplaces wacli
  clawops --via ssh://me@my-vm verify --image openclaw:latest --json   # before deploying it")]
pub struct VerifyArgs {
    /// Binaries to check besides the configured ones and those the skills declare.
    pub binaries: Vec<String>,
    /// The compose service whose container is checked (default: the configured one).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Check this image alone, without a container (nothing is run).
    #[arg(long, default_value = "")]
    pub image: String,
    /// Only look the binaries up; run no `--version` probe in the container.
    #[arg(long)]
    pub no_run: bool,
    /// How long each `--version` probe may take, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u32,
    /// Run every probe now. By default a probe that succeeded in the last 5 minutes on the
    /// same file in the same run of the container is not run again.
    #[arg(long, conflicts_with = "no_run")]
    pub fresh: bool,
}

pub async fn run(mut client: Client, args: VerifyArgs, out: &Output) -> Result<u8, ClientError> {
    let request = proto::VerifyRequest {
        binaries: args.binaries,
        service: args.service,
        timeout_ms: args.timeout_ms,
        image: args.image,
        no_run: args.no_run,
        fresh: args.fresh,
    };
    let report = match client.agent.verify_binaries(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    if out.json {
        out.json_line(&to_json(&report));
    } else {
        print_human(&report);
    }
    Ok(if report.ok { 0 } else { 1 })
}

fn status_of(b: &proto::BinaryReport) -> proto::BinaryStatus {
    proto::BinaryStatus::try_from(b.status).unwrap_or(proto::BinaryStatus::Unspecified)
}

fn status_word(s: proto::BinaryStatus) -> &'static str {
    use proto::BinaryStatus as S;
    match s {
        S::Ok => "ok",
        S::Missing => "missing",
        S::NotExecutable => "not_executable",
        S::WrongArch => "wrong_arch",
        S::Broken => "broken",
        S::RuntimeOnly => "runtime_only",
        S::NotRun => "not_run",
        S::Unspecified => "unknown",
    }
}

/// `overlay` or `base` (`[build] overlay`), `None` when the image does not have it.
fn provided_by_word(b: &proto::BinaryReport) -> Option<&'static str> {
    match proto::ProvidedBy::try_from(b.provided_by) {
        Ok(proto::ProvidedBy::Base) => Some("base"),
        Ok(proto::ProvidedBy::Overlay) => Some("overlay"),
        Ok(proto::ProvidedBy::Unspecified) | Err(_) => None,
    }
}

fn usable(s: proto::BinaryStatus) -> bool {
    matches!(s, proto::BinaryStatus::Ok | proto::BinaryStatus::NotRun)
}

fn to_json(r: &proto::VerifyReport) -> serde_json::Value {
    json!({
        "ok": r.ok,
        "image": r.image,
        "image_id": r.image_id,
        "container": (!r.container.is_empty()).then(|| json!({
            "name": r.container, "running": r.container_running, "state": r.container_state,
        })),
        "engine_arch": r.engine_arch,
        "search_path": r.search_path,
        "binaries": r.binaries.iter().map(|b| json!({
            "name": b.name,
            "status": status_word(status_of(b)),
            "required": b.required,
            "required_by": b.required_by,
            "path": (!b.path.is_empty()).then_some(&b.path),
            "link_target": (!b.link_target.is_empty()).then_some(&b.link_target),
            "container_path": (!b.container_path.is_empty()).then_some(&b.container_path),
            "size_bytes": (!b.path.is_empty()).then_some(b.size_bytes),
            "mode": (!b.path.is_empty()).then(|| format!("{:04o}", b.mode & 0o7777)),
            "version": (!b.version.is_empty()).then_some(&b.version),
            "detail": (!b.detail.is_empty()).then_some(&b.detail),
            "probe_reused_age_secs": b.probe_reused_age_secs,
            "provided_by": provided_by_word(b),
        })).collect::<Vec<_>>(),
        "skill_problems": r.skill_problems.iter().map(|p| json!({
            "path": p.path, "error": p.error,
        })).collect::<Vec<_>>(),
        "notes": r.notes,
        "duration_ms": r.duration_ms,
    })
}

fn print_human(r: &proto::VerifyReport) {
    let id = r.image_id.strip_prefix("sha256:").unwrap_or(&r.image_id);
    let id = &id[..id.len().min(12)];
    match r.container.as_str() {
        "" => println!("image {} ({id}), {}", r.image, r.engine_arch),
        c => println!(
            "image {} ({id}), container {c} ({}), {}",
            r.image,
            if r.container_running {
                "running"
            } else {
                &r.container_state
            },
            r.engine_arch
        ),
    }
    if r.binaries.is_empty() {
        println!("no binaries to check");
    } else {
        println!();
        print_table(&table_rows(r));
    }
    let explained: Vec<&proto::BinaryReport> = r
        .binaries
        .iter()
        .filter(|b| !b.detail.is_empty() && (!usable(status_of(b)) || !b.container_path.is_empty()))
        .collect();
    if !explained.is_empty() {
        println!();
        for b in explained {
            println!("{}: {}", b.name, b.detail);
        }
    }
    if !r.skill_problems.is_empty() {
        println!();
        println!("skills that could not be read (their requirements are not checked):");
        for p in &r.skill_problems {
            println!("  {}: {}", p.path, p.error);
        }
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    if let Some(note) = reused_note(r) {
        println!("note: {note}");
    }
    let failing = r
        .binaries
        .iter()
        .filter(|b| b.required && !usable(status_of(b)))
        .count();
    println!();
    if r.ok {
        println!(
            "all required binaries are in the image ({} ms)",
            r.duration_ms
        );
    } else {
        println!(
            "{failing} required binar{} missing or broken ({} ms)",
            if failing == 1 { "y is" } else { "ies are" },
            r.duration_ms
        );
    }
}

/// Which versions come from earlier probes, so nobody mistakes them for a run just now.
fn reused_note(r: &proto::VerifyReport) -> Option<String> {
    let reused: Vec<&proto::BinaryReport> = r
        .binaries
        .iter()
        .filter(|b| b.probe_reused_age_secs.is_some())
        .collect();
    let oldest = reused
        .iter()
        .filter_map(|b| b.probe_reused_age_secs)
        .max()?;
    let names: Vec<&str> = reused.iter().map(|b| b.name.as_str()).collect();
    let (what, when) = match names.len() {
        1 => ("the version of", "a probe"),
        _ => ("the versions of", "probes up to"),
    };
    Some(format!(
        "{what} {} {} from {when} {} ago in this run of the container, on unchanged files \
         (--fresh runs every probe now)",
        names.join(", "),
        if names.len() == 1 { "is" } else { "are" },
        age_human(oldest),
    ))
}

fn age_human(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        _ => format!("{} min {} s", secs / 60, secs % 60),
    }
}

fn table_rows(r: &proto::VerifyReport) -> Vec<[String; 5]> {
    let mut rows = vec![[
        "BINARY".to_owned(),
        "STATUS".to_owned(),
        "PATH".to_owned(),
        "VERSION".to_owned(),
        "REQUIRED BY".to_owned(),
    ]];
    // Only an overlaid image has two sources worth naming.
    let overlaid = r
        .binaries
        .iter()
        .any(|b| provided_by_word(b) == Some("overlay"));
    for b in &r.binaries {
        let status = status_of(b);
        let mut word = status_word(status).replace('_', " ");
        if !usable(status) {
            word = word.to_uppercase();
        }
        if !b.required && !usable(status) {
            word.push_str(" (optional)");
        }
        let mut about = mode_and_size(b);
        if let Some(from) = provided_by_word(b).filter(|_| overlaid) {
            about.push_str(&format!(", from the {from}"));
        }
        let path = match (b.path.as_str(), b.link_target.as_str()) {
            ("", _) => "-".to_owned(),
            (p, "") => format!("{p} ({about})"),
            (p, t) => format!("{p} -> {t} ({about})"),
        };
        let version: String = b.version.chars().take(40).collect();
        rows.push([
            b.name.clone(),
            word,
            path,
            if version.is_empty() {
                "-".into()
            } else {
                version
            },
            b.required_by.join(", "),
        ]);
    }
    rows
}

fn mode_and_size(b: &proto::BinaryReport) -> String {
    format!("{:04o}, {}", b.mode & 0o7777, size_human(b.size_bytes))
}

fn size_human(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn print_table(rows: &[[String; 5]]) {
    let mut widths = [0usize; 5];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == row.len() - 1 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_and_failing_rows() {
        let report = proto::VerifyReport {
            binaries: vec![
                proto::BinaryReport {
                    name: "gog".into(),
                    status: proto::BinaryStatus::Ok as i32,
                    path: "/usr/bin/gog".into(),
                    size_bytes: 2048,
                    mode: 0o100755,
                    version: "gog 1.2".into(),
                    required: true,
                    required_by: vec!["gmail".into()],
                    ..Default::default()
                },
                proto::BinaryReport {
                    name: "codex".into(),
                    status: proto::BinaryStatus::Missing as i32,
                    required: false,
                    required_by: vec!["code (one of claude, codex)".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let rows = table_rows(&report);
        assert_eq!(rows[1][2], "/usr/bin/gog (0755, 2.0 KiB)");
        assert_eq!(rows[2][1], "MISSING (optional)");
        let j = to_json(&report);
        assert_eq!(j["binaries"][0]["mode"], "0755");
        assert_eq!(j["binaries"][1]["status"], "missing");
        assert!(j["binaries"][0]["probe_reused_age_secs"].is_null());
        assert_eq!(reused_note(&report), None);
        assert!(j["binaries"][0]["provided_by"].is_null());
    }

    #[test]
    fn overlay_binaries_say_where_they_come_from() {
        let bin = |name: &str, from: proto::ProvidedBy| proto::BinaryReport {
            name: name.into(),
            status: proto::BinaryStatus::Ok as i32,
            path: format!("/usr/local/bin/{name}"),
            mode: 0o100755,
            size_bytes: 10,
            provided_by: from as i32,
            ..Default::default()
        };
        let report = proto::VerifyReport {
            binaries: vec![
                bin("gog", proto::ProvidedBy::Overlay),
                bin("sh", proto::ProvidedBy::Base),
            ],
            ..Default::default()
        };
        let rows = table_rows(&report);
        assert_eq!(
            rows[1][2],
            "/usr/local/bin/gog (0755, 10 B, from the overlay)"
        );
        assert_eq!(rows[2][2], "/usr/local/bin/sh (0755, 10 B, from the base)");
        let j = to_json(&report);
        assert_eq!(j["binaries"][0]["provided_by"], "overlay");
        assert_eq!(j["binaries"][1]["provided_by"], "base");
    }

    #[test]
    fn reused_probes_are_named_with_the_oldest_age() {
        let bin = |name: &str, age: Option<u64>| proto::BinaryReport {
            name: name.into(),
            status: proto::BinaryStatus::Ok as i32,
            probe_reused_age_secs: age,
            ..Default::default()
        };
        let report = proto::VerifyReport {
            binaries: vec![
                bin("gog", Some(4)),
                bin("wacli", None),
                bin("goplaces", Some(75)),
            ],
            ..Default::default()
        };
        assert_eq!(
            reused_note(&report).unwrap(),
            "the versions of gog, goplaces are from probes up to 1 min 15 s ago in this run of \
             the container, on unchanged files (--fresh runs every probe now)"
        );
        assert_eq!(to_json(&report)["binaries"][2]["probe_reused_age_secs"], 75);
    }
}
