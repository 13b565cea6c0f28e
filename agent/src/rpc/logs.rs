//! Logs.
use clawops_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{EventStream, convert::timestamp, counted_stream};
use crate::{
    context::AgentContext,
    events::LogStream,
    logs::{self, LogItem, LogLine, LogQuery},
};

/// `docker logs` shows the last 100 lines unless told otherwise.
const DEFAULT_TAIL: u64 = 100;
/// Batches in flight between the pump and the client: the backpressure bound.
const CHANNEL_BATCHES: usize = 4;

pub async fn logs(
    ctx: &AgentContext,
    req: Request<pb::LogsRequest>,
) -> Result<Response<EventStream<pb::LogChunk>>, Status> {
    let r = req.into_inner();
    let service = if r.service.is_empty() {
        ctx.config.app.service.clone()
    } else {
        r.service
    };
    let tail = if r.all {
        None
    } else {
        Some(r.tail.unwrap_or(DEFAULT_TAIL))
    };
    let query = LogQuery::parse(
        service,
        tail,
        &r.since,
        &r.until,
        r.follow,
        r.timestamps,
        &r.grep,
        !r.no_reattach,
        chrono::Utc::now(),
    )?;
    // Before any Docker call: a refused follow holds nothing.
    let follow_guard = if query.follow {
        let max = ctx.config.limits.max_log_follows;
        Some(crate::limits::follow_slot(&ctx.counters.log_follows, max)?)
    } else {
        None
    };
    let docker = ctx.docker.get().await?;
    let first = logs::find_container(&docker, &ctx.app.project, &query.service).await?;

    let (items_tx, mut items_rx) = mpsc::channel::<LogItem>(CHANNEL_BATCHES);
    let (out_tx, out_rx) = mpsc::channel(CHANNEL_BATCHES);
    let project = ctx.app.project.clone();
    let lock = ctx.lock.clone();
    let want_timestamps = r.timestamps;
    tokio::spawn(async move {
        let _follow_guard = follow_guard;
        let pump = logs::stream_logs(docker, project, first, query, lock, items_tx);
        let forward = async move {
            loop {
                let item = tokio::select! {
                    item = items_rx.recv() => item,
                    _ = out_tx.closed() => None,
                };
                let Some(item) = item else { break };
                if out_tx
                    .send(Ok(to_proto(item, want_timestamps)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            // Dropping `items_rx` here tells the pump the client has gone.
            out_tx
        };
        // Both end when the client goes away: the pump sees its channel close.
        let (result, out_tx) = tokio::join!(pump, forward);
        if let Err(e) = result {
            let _ = out_tx.send(Err(Status::from(e))).await;
        }
    });
    Ok(Response::new(counted_stream(ctx, out_rx)))
}

fn to_proto(item: LogItem, timestamps: bool) -> pb::LogChunk {
    let event = match item {
        LogItem::Notice(n) => pb::log_chunk::Event::Notice(n),
        LogItem::Lines(lines) if timestamps => pb::log_chunk::Event::Lines(pb::LogBatch {
            lines: lines
                .into_iter()
                .map(|l| pb::LogLine {
                    stream: stream(l.stream),
                    data: l.data,
                    timestamp: l.timestamp.map(timestamp),
                    container: l.container,
                })
                .collect(),
        }),
        LogItem::Lines(lines) => pb::log_chunk::Event::Lines(pb::LogBatch {
            lines: coalesce(lines),
        }),
    };
    pb::LogChunk { event: Some(event) }
}

fn stream(s: LogStream) -> i32 {
    let s = match s {
        LogStream::Stdout => pb::OutputStream::Stdout,
        LogStream::Stderr => pb::OutputStream::Stderr,
    };
    s as i32
}

/// Without timestamps, consecutive lines of the same stream and container travel as one chunk:
/// per-line messages cost more than the lines themselves (100k short lines → a few hundred
/// chunks). The client writes chunks as they are; `--json` splits them at newlines.
fn coalesce(lines: Vec<LogLine>) -> Vec<pb::LogLine> {
    let mut out: Vec<pb::LogLine> = Vec::new();
    let mut pending: Option<(i32, String, bytes::BytesMut)> = None;
    for l in lines {
        let s = stream(l.stream);
        match &mut pending {
            Some((ps, pc, buf)) if *ps == s && *pc == l.container => buf.extend_from_slice(&l.data),
            _ => {
                if let Some((ps, pc, buf)) = pending.take() {
                    out.push(pb::LogLine {
                        stream: ps,
                        data: buf.freeze(),
                        timestamp: None,
                        container: pc,
                    });
                }
                pending = Some((s, l.container, bytes::BytesMut::from(&l.data[..])));
            }
        }
    }
    if let Some((ps, pc, buf)) = pending {
        out.push(pb::LogLine {
            stream: ps,
            data: buf.freeze(),
            timestamp: None,
            container: pc,
        });
    }
    out
}
