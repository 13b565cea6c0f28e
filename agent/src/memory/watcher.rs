//! Records the project's `oom` and `die` container events. The events stream ends whenever
//! dockerd restarts (or a proxy closes it); the watcher reconnects with backoff and asks for
//! events `since` the last one it saw, so the engine replays what happened in between.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::watch;

use super::{ProjectEngine, Shared};
use crate::docker::{EventsRequest, LABEL_PROJECT, LABEL_SERVICE, models::EventMessage};

/// Bounded so a crash-looping container cannot grow the agent.
const MAX_EVENTS: usize = 512;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A connection that lasted this long was healthy: start backing off from scratch.
const HEALTHY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Oom,
    Die,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Oom => "oom",
            EventKind::Die => "die",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub container: String,
    pub container_id: String,
    pub service: String,
    /// For `die`: the exit code (137 = SIGKILL, which is what the OOM killer sends).
    pub exit_code: Option<i64>,
}

/// Recent events, oldest first, without duplicates from replays.
#[derive(Debug)]
pub struct EventLog {
    events: VecDeque<(i64, MemoryEvent)>,
    seen: HashSet<(i64, String, EventKind)>,
    /// Resume point (unix nanoseconds) for the next connection.
    resume_nanos: i64,
}

impl EventLog {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            events: VecDeque::new(),
            seen: HashSet::new(),
            resume_nanos: start.timestamp_nanos_opt().unwrap_or(0),
        }
    }

    /// Adds an event unless it was already recorded; returns whether it was new.
    pub fn add(&mut self, nanos: i64, event: MemoryEvent) -> bool {
        let key = (nanos, event.container_id.clone(), event.kind);
        if !self.seen.insert(key) {
            return false;
        }
        self.resume_nanos = self.resume_nanos.max(nanos);
        self.events.push_back((nanos, event));
        while self.events.len() > MAX_EVENTS {
            if let Some((n, e)) = self.events.pop_front() {
                self.seen.remove(&(n, e.container_id, e.kind));
            }
        }
        true
    }

    /// Drops events older than `cutoff`.
    pub fn prune(&mut self, cutoff: DateTime<Utc>) {
        while self.events.front().is_some_and(|(_, e)| e.at < cutoff) {
            if let Some((n, e)) = self.events.pop_front() {
                self.seen.remove(&(n, e.container_id, e.kind));
            }
        }
    }

    pub fn to_vec(&self) -> Vec<MemoryEvent> {
        self.events.iter().map(|(_, e)| e.clone()).collect()
    }

    /// docker's `since`: `seconds.nanoseconds`. Events at exactly this time are replayed and
    /// then recognised as duplicates.
    pub fn since(&self) -> String {
        format!(
            "{}.{:09}",
            self.resume_nanos.div_euclid(1_000_000_000),
            self.resume_nanos.rem_euclid(1_000_000_000)
        )
    }
}

/// An engine event as a memory event, if it is one we record.
pub fn from_engine(msg: &EventMessage) -> Option<(i64, MemoryEvent)> {
    let kind = match msg.action.as_deref()? {
        "oom" => EventKind::Oom,
        "die" => EventKind::Die,
        _ => return None,
    };
    let actor = msg.actor.as_ref()?;
    let empty = HashMap::new();
    let attrs = actor.attributes.as_ref().unwrap_or(&empty);
    let nanos = msg
        .time_nano
        .or_else(|| msg.time.map(|t| t * 1_000_000_000))?;
    let at = DateTime::from_timestamp(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )?;
    Some((
        nanos,
        MemoryEvent {
            at,
            kind,
            container: attrs.get("name").cloned().unwrap_or_default(),
            container_id: actor.id.clone().unwrap_or_default(),
            service: attrs.get(LABEL_SERVICE).cloned().unwrap_or_default(),
            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        },
    ))
}

/// Runs until the monitor is dropped (`stop` fires).
pub(crate) async fn run(engine: ProjectEngine, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let docker = engine.docker.get().await;
        let project = &engine.project;
        let connected_at = tokio::time::Instant::now();
        // A ping tells "engine down" apart from "stream ended" and marks when we are connected.
        let docker = match docker {
            Ok(d) => d.ping().await.map(|()| d),
            Err(e) => Err(e),
        };
        match docker {
            Ok(docker) => {
                let filters = HashMap::from([
                    ("type".to_string(), vec!["container".to_string()]),
                    // `start` too: a new or restarted container is the sampler's cue.
                    (
                        "event".to_string(),
                        vec!["oom".to_string(), "die".to_string(), "start".to_string()],
                    ),
                    (
                        "label".to_string(),
                        vec![format!("{LABEL_PROJECT}={project}")],
                    ),
                ]);
                let since = shared
                    .events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .since();
                let mut stream = std::pin::pin!(docker.events(&EventsRequest { since, filters }));
                shared.watcher.set_connected(true);
                let ended = loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        item = stream.next() => match item {
                            Some(Ok(msg)) => {
                                backoff = FIRST_BACKOFF;
                                shared.watcher.saw_change();
                                if let Some((nanos, event)) = from_engine(&msg) {
                                    tracing::info!(kind = event.kind.as_str(), container = %event.container,
                                        exit_code = ?event.exit_code, "container event");
                                    let oom = event.kind == EventKind::Oom;
                                    let note = oom.then(|| crate::notify::Notification::oom_kill(&event));
                                    let new = shared.events.lock().unwrap_or_else(|e| e.into_inner()).add(nanos, event);
                                    // Replays after a reconnect are not new kills.
                                    if let (true, Some(n)) = (new, note) {
                                        engine.notifier.send(n);
                                    }
                                }
                            }
                            Some(Err(e)) => break e.to_string(),
                            None => break "the engine closed the events stream".to_string(),
                        }
                    }
                };
                shared.watcher.set_connected(false);
                tracing::warn!(reason = %ended, "docker events stream ended; reconnecting");
            }
            Err(e) => {
                tracing::debug!(error = %e, "docker events: engine unreachable");
            }
        }
        if connected_at.elapsed() >= HEALTHY {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, kind: EventKind, secs: i64) -> MemoryEvent {
        MemoryEvent {
            at: DateTime::from_timestamp(secs, 0).unwrap(),
            kind,
            container: format!("{id}-name"),
            container_id: id.into(),
            service: "gw".into(),
            exit_code: None,
        }
    }

    #[test]
    fn replays_are_deduplicated_and_resume_advances() {
        let mut log = EventLog::new(DateTime::from_timestamp(100, 5).unwrap());
        assert_eq!(log.since(), "100.000000005");
        assert!(log.add(200_000_000_001, event("a", EventKind::Oom, 200)));
        assert!(!log.add(200_000_000_001, event("a", EventKind::Oom, 200)));
        assert!(log.add(200_000_000_001, event("a", EventKind::Die, 200)));
        assert_eq!(log.since(), "200.000000001");
        assert_eq!(log.to_vec().len(), 2);
        log.prune(DateTime::from_timestamp(201, 0).unwrap());
        assert!(log.to_vec().is_empty());
    }

    #[test]
    fn bounded() {
        let mut log = EventLog::new(DateTime::from_timestamp(0, 0).unwrap());
        for i in 0..(MAX_EVENTS as i64 + 10) {
            log.add(i, event("a", EventKind::Die, i));
        }
        assert_eq!(log.to_vec().len(), MAX_EVENTS);
        assert_eq!(log.seen.len(), MAX_EVENTS);
    }

    #[test]
    fn engine_event_conversion() {
        let msg: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": "die",
            "Actor": {"ID": "abc", "Attributes": {"name": "p-gw-1", "exitCode": "137",
                "com.docker.compose.service": "gw"}},
            "time": 1700000000, "timeNano": 1700000000123456789i64
        }))
        .unwrap();
        let (nanos, e) = from_engine(&msg).unwrap();
        assert_eq!(nanos, 1_700_000_000_123_456_789);
        assert_eq!((e.kind, e.exit_code), (EventKind::Die, Some(137)));
        assert_eq!((e.container.as_str(), e.service.as_str()), ("p-gw-1", "gw"));
        let start: EventMessage =
            serde_json::from_value(serde_json::json!({"Action": "start", "time": 1})).unwrap();
        assert!(from_engine(&start).is_none());
    }
}
