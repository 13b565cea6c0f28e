//! `clawops logs`
use std::io::Write;

use clap::Args;
use clawops::{Client, ClientError, proto};
use serde_json::json;

use super::output::{Output, time, time_json};

/// The gateway's logs, like `docker logs`: stdout to stdout, stderr to stderr.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops --via ssh://me@my-vm logs -f
  clawops --via ssh://me@my-vm logs --since 10m --grep 'error|warn' --timestamps
  clawops --via ssh://me@my-vm logs --tail all --json > gateway.jsonl")]
pub struct LogsArgs {
    /// Lines from the end to show: a number or `all`.
    #[arg(long, short = 'n', default_value = "100")]
    pub tail: String,
    /// Only lines since: RFC 3339, a date, Unix seconds, or relative (10m, 2h, 1d).
    #[arg(long, default_value = "")]
    pub since: String,
    /// Only lines until (same forms as --since).
    #[arg(long, default_value = "")]
    pub until: String,
    /// Keep streaming new lines; survives the container being recreated by an update.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines matching this regex (applied on the VM).
    #[arg(long, default_value = "")]
    pub grep: String,
    /// The compose service (default: the configured one).
    #[arg(long, default_value = "")]
    pub service: String,
    /// With -f: stop when the container stops instead of following its replacement.
    #[arg(long)]
    pub no_reattach: bool,
}

pub async fn run(mut client: Client, args: LogsArgs, out: &Output) -> Result<u8, ClientError> {
    let request = request(args)?;
    let mut stream = match client.agent.logs(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(client.explain(status).await),
    };
    let stdout = std::io::stdout();
    loop {
        let chunk = match stream.message().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(status) => return Err(client.explain(status).await),
        };
        let mut o = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        match chunk.event {
            Some(proto::log_chunk::Event::Lines(batch)) if out.json => write_json(&mut o, batch),
            Some(proto::log_chunk::Event::Lines(batch)) => write_plain(&mut o, batch),
            Some(proto::log_chunk::Event::Notice(n)) if out.json => {
                let _ = serde_json::to_writer(&mut o, &json!({ "notice": n }));
                let _ = o.write_all(b"\n");
            }
            Some(proto::log_chunk::Event::Notice(n)) => {
                let _ = o.flush();
                eprintln!("-- clawops: {n}");
            }
            None => {}
        }
        // A closed pipe (`clawops logs | head`) ends quietly, like docker logs.
        if o.flush().is_err() {
            return Ok(0);
        }
    }
    Ok(0)
}

fn request(args: LogsArgs) -> Result<proto::LogsRequest, ClientError> {
    let (tail, all) = match args.tail.as_str() {
        "all" => (None, true),
        n => (
            Some(n.parse::<u64>().map_err(|_| {
                ClientError::Usage(format!("--tail {n:?}: give a number of lines or `all`"))
            })?),
            false,
        ),
    };
    Ok(proto::LogsRequest {
        service: args.service,
        tail,
        all,
        since: args.since,
        until: args.until,
        follow: args.follow,
        timestamps: args.timestamps,
        grep: args.grep,
        no_reattach: args.no_reattach,
    })
}

/// One JSON line per log line (the agent may send runs of lines as one chunk).
fn write_json(o: &mut impl Write, batch: proto::LogBatch) {
    for l in batch.lines {
        let stream = if l.stream == proto::OutputStream::Stderr as i32 {
            "stderr"
        } else {
            "stdout"
        };
        let timestamp = time_json(l.timestamp.as_ref());
        for line in l.data.split_inclusive(|&b| b == b'\n') {
            let line = json!({
                "stream": stream,
                "line": String::from_utf8_lossy(line).trim_end_matches('\n'),
                "timestamp": timestamp,
                "container": l.container,
            });
            let _ = serde_json::to_writer(&mut *o, &line);
            let _ = o.write_all(b"\n");
        }
    }
}

/// Each line to stdout or stderr as the container wrote it, with its timestamp if asked.
fn write_plain(o: &mut impl Write, batch: proto::LogBatch) {
    let stderr = std::io::stderr();
    let mut e = stderr.lock();
    for l in batch.lines {
        let w: &mut dyn Write = if l.stream == proto::OutputStream::Stderr as i32 {
            &mut e
        } else {
            &mut *o
        };
        if let Some(ts) = time(l.timestamp.as_ref()) {
            let _ = write!(
                w,
                "{} ",
                ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            );
        }
        let _ = w.write_all(&l.data);
    }
}
