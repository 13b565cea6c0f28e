//! The log pump: docker's log stream → batches of lines → a bounded channel. The channel is the
//! backpressure: when the client reads slowly, the pump stops polling dockerd instead of
//! buffering, so the agent's memory stays flat however chatty the container is.
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{LogQuery, LogsError};
use crate::{
    docker::{DockerError, Engine, LogChunk, LogsRequest, ProjectContainer},
    events::LogStream,
    lock::OperationLock,
};

/// Lines per message at most: few messages for 100k lines, and one message stays far below
/// gRPC's size limit (docker splits lines at 16 KiB).
const BATCH_LINES: usize = 2048;
/// Bytes per message at most, so a burst of long lines stays well under the 4 MiB message
/// limit of common gRPC clients (grpcurl, grpcio).
const BATCH_BYTES: usize = 1024 * 1024;
/// How long a batch waits for more lines. Docker hands over a few lines per read; sending each
/// handful as its own message costs a syscall and a wake-up per handful (measured: 27k writes
/// for 100k lines), while a few milliseconds of gathering is invisible to a reader.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// After the followed container stops, how long to wait for a successor when no deploy runs
/// (a restart policy brings a crashed gateway back within seconds).
const RESTART_GRACE: Duration = Duration::from_secs(10);
/// While a deploy runs, how long to wait for its new container (builds happen before the stop).
const DEPLOY_GRACE: Duration = Duration::from_secs(900);
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub stream: LogStream,
    pub data: Bytes,
    pub timestamp: Option<DateTime<Utc>>,
    pub container: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogItem {
    Lines(Vec<LogLine>),
    Notice(String),
}

/// The container to read: the running one of the service, else the newest.
pub async fn find_container(
    docker: &Engine,
    project: &str,
    service: &str,
) -> Result<ProjectContainer, LogsError> {
    let mut list: Vec<_> = docker
        .project_containers(project)
        .await?
        .into_iter()
        .filter(|c| c.service == service)
        .collect();
    list.sort_by_key(|c| c.state != "running");
    list.into_iter()
        .next()
        .ok_or_else(|| LogsError::NoContainer {
            service: service.to_owned(),
            project: project.to_owned(),
        })
}

/// Streams the logs of `first` (a container of `query.service`) into `tx` until done, the
/// client goes away (`tx` closed), or — when following — the service has no container left.
pub async fn stream_logs(
    docker: Engine,
    project: String,
    first: ProjectContainer,
    query: LogQuery,
    deploys: OperationLock,
    tx: mpsc::Sender<LogItem>,
) -> Result<(), LogsError> {
    let mut container = first;
    let mut tail = query.tail;
    let mut after: Option<DateTime<Utc>> = query.since;
    let mut inclusive = true;
    loop {
        let was_running = container.state == "running";
        let read = Pump {
            container: &container,
            query: &query,
            tail,
            after,
            inclusive,
        };
        let last = pump(&docker, &read, &tx).await?;
        let Some(last) = last else {
            return Ok(()); // client gone
        };
        if !query.follow || query.until.is_some_and(|u| Utc::now() >= u) {
            return Ok(());
        }
        if !query.reattach {
            let _ = tx
                .send(LogItem::Notice(format!(
                    "container {} stopped (--no-reattach: not following a replacement)",
                    container.name
                )))
                .await;
            return Ok(());
        }
        let Some(next) = wait_for_successor(
            &docker,
            &project,
            &query.service,
            &deploys,
            was_running,
            &tx,
        )
        .await?
        else {
            let _ = tx
                .send(LogItem::Notice(format!(
                    "container {} stopped and no replacement started",
                    container.name
                )))
                .await;
            return Ok(());
        };
        if next.id == container.id {
            // The same container restarted: continue after the last line already sent.
            after = last.or(after);
            inclusive = last.is_none();
            let _ = tx
                .send(LogItem::Notice(format!(
                    "container {} restarted",
                    next.name
                )))
                .await;
        } else {
            after = None;
            inclusive = true;
            let _ = tx
                .send(LogItem::Notice(format!(
                    "container recreated: now following {} ({})",
                    next.name,
                    &next.id[..next.id.len().min(12)]
                )))
                .await;
        }
        tail = None;
        container = next;
    }
}

/// One container's log stream to read: from where, and what to keep.
struct Pump<'a> {
    container: &'a ProjectContainer,
    query: &'a LogQuery,
    tail: Option<u64>,
    /// Lines up to this time were already sent (or precede `--since`).
    after: Option<DateTime<Utc>>,
    /// Whether a line at exactly `after` is still wanted.
    inclusive: bool,
}

/// Sends one container's log stream. Returns `None` when the client went away, else the
/// timestamp of the last line read (if any).
async fn pump(
    docker: &Engine,
    read: &Pump<'_>,
    tx: &mpsc::Sender<LogItem>,
) -> Result<Option<Option<DateTime<Utc>>>, LogsError> {
    let query = read.query;
    let req = LogsRequest {
        follow: query.follow,
        timestamps: query.needs_timestamps(),
        // Docker takes whole seconds; the exact bound is applied per line below.
        since: read.after.map_or(0, |t| t.timestamp() as i32),
        until: query.until.map_or(0, |t| t.timestamp() as i32 + 1),
        tail: read.tail,
    };
    let mut logs = std::pin::pin!(docker.logs(&read.container.id, &req));
    let mut last_ts = None;
    loop {
        let first = tokio::select! {
            item = logs.next() => item,
            _ = tx.closed() => return Ok(None),
        };
        let Some(first) = first else {
            return Ok(Some(last_ts));
        };
        let (chunk, ended) = gather(first, &mut logs).await;
        let lines = match read.lines(chunk, &mut last_ts) {
            Ok(lines) => lines,
            // The container went away mid-stream (removed by a recreate): that is an end.
            Err(e) if e.is_not_found() => return Ok(Some(last_ts)),
            Err(e) => return Err(e.into()),
        };
        if !lines.is_empty() && tx.send(LogItem::Lines(lines)).await.is_err() {
            return Ok(None);
        }
        if ended {
            return Ok(Some(last_ts));
        }
    }
}

type LogResult = Result<LogChunk, DockerError>;

/// After `first`, more items for up to [`BATCH_WINDOW`] within the batch limits; `true` when
/// the stream ended meanwhile.
async fn gather(
    first: LogResult,
    logs: &mut (impl futures::Stream<Item = LogResult> + Unpin),
) -> (Vec<LogResult>, bool) {
    let mut bytes = item_len(&first);
    let mut chunk = vec![first];
    let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
    while chunk.len() < BATCH_LINES && bytes < BATCH_BYTES {
        match tokio::time::timeout_at(deadline, logs.next()).await {
            Ok(Some(item)) => {
                bytes += item_len(&item);
                chunk.push(item);
            }
            Ok(None) => return (chunk, true),
            Err(_) => break,
        }
    }
    (chunk, false)
}

impl Pump<'_> {
    /// The lines of `chunk` inside the time bounds and matching `--grep`; `last_ts` follows the
    /// timestamps read. The first engine error ends it.
    fn lines(
        &self,
        chunk: Vec<LogResult>,
        last_ts: &mut Option<DateTime<Utc>>,
    ) -> Result<Vec<LogLine>, DockerError> {
        let query = self.query;
        let mut lines = Vec::with_capacity(chunk.len());
        for item in chunk {
            let LogChunk {
                stream,
                data: message,
            } = item?;
            let (timestamp, data) = if query.needs_timestamps() {
                split_timestamp(message)
            } else {
                (None, message)
            };
            if let Some(ts) = timestamp {
                *last_ts = Some(ts);
                let before_start = match self.after {
                    Some(a) if self.inclusive => ts < a,
                    Some(a) => ts <= a,
                    None => false,
                };
                if before_start || query.until.is_some_and(|u| ts > u) {
                    continue;
                }
            }
            // Matched without the line ending, so `$` means the end of the line.
            if let Some(re) = &query.grep
                && !re.is_match(String::from_utf8_lossy(&data).trim_end_matches(['\n', '\r']))
            {
                continue;
            }
            lines.push(LogLine {
                stream,
                data,
                timestamp,
                container: self.container.name.clone(),
            });
        }
        Ok(lines)
    }
}

/// Waits for a running container of `service` after the followed one stopped.
async fn wait_for_successor(
    docker: &Engine,
    project: &str,
    service: &str,
    deploys: &OperationLock,
    was_running: bool,
    tx: &mpsc::Sender<LogItem>,
) -> Result<Option<ProjectContainer>, LogsError> {
    let started = Instant::now();
    loop {
        let running = docker
            .project_containers(project)
            .await?
            .into_iter()
            .find(|c| c.service == service && c.state == "running");
        if running.is_some() {
            return Ok(running);
        }
        let deploying = deploys.holder().is_some();
        let grace = match (deploying, was_running) {
            (true, _) => DEPLOY_GRACE,
            (false, true) => RESTART_GRACE,
            // `-f` on a container that was not running: print what there is and stop, as
            // `docker logs -f` does.
            (false, false) => Duration::ZERO,
        };
        if started.elapsed() >= grace {
            return Ok(None);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return Ok(None),
        }
    }
}

fn item_len(item: &Result<LogChunk, DockerError>) -> usize {
    item.as_ref().map_or(0, |c| c.data.len())
}

/// Splits docker's `2026-11-26T01:02:03.123456789Z ` prefix off a log message.
fn split_timestamp(message: Bytes) -> (Option<DateTime<Utc>>, Bytes) {
    let head = &message[..message.len().min(40)];
    if let Some(space) = head.iter().position(|&b| b == b' ')
        && let Ok(text) = std::str::from_utf8(&head[..space])
        && let Ok(ts) = DateTime::parse_from_rfc3339(text)
    {
        return (Some(ts.with_timezone(&Utc)), message.slice(space + 1..));
    }
    (None, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_prefix_is_split_off() {
        let (ts, data) = split_timestamp(Bytes::from_static(
            b"2026-11-26T01:02:03.123456789Z [gateway] listening on ws://0.0.0.0:18789\n",
        ));
        assert_eq!(
            ts.unwrap().to_rfc3339(),
            "2026-11-26T01:02:03.123456789+00:00"
        );
        assert_eq!(&data[..], b"[gateway] listening on ws://0.0.0.0:18789\n");
        let (ts, data) = split_timestamp(Bytes::from_static(b"no timestamp here\n"));
        assert!(ts.is_none());
        assert_eq!(&data[..], b"no timestamp here\n");
    }
}
