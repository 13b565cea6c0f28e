//! MemoryStats: host and container memory now, a day of history, the docker `oom`/`die`
//! events, the machine from the GCE metadata server, and the advisor's verdict.
//!
//! The agent must stay small (≤ 8 MiB idle) on a 1 GiB e2-micro, so everything here is
//! bounded: a fixed ring of compact samples, a capped event log, hourly extremes for a week,
//! and sysinfo refreshing memory figures only (never the process list).
use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::{config::MemoryConfig, docker::DockerHandle};

pub mod advice;
pub mod cgroup;
pub mod containers;
pub mod headroom;
pub mod metadata;
pub mod procfs;
pub mod ring;
pub mod sampler;
pub mod watcher;

pub use advice::{Advice, AdviceKind};
pub use containers::{ContainerMemory, UsageSource};
pub use metadata::Machine;
pub use procfs::{Pressure, PsiLine};
pub use ring::{Ring, Summary};
pub use watcher::{EventKind, MemoryEvent};

/// How long "unknown" (off GCE, or the server did not answer) is trusted before asking again.
const MACHINE_RETRY: Duration = Duration::from_secs(600);
/// How long MemoryStats waits for dockerd before reporting host figures without containers.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "cannot read {path}: {source}. The agent reads memory figures from /proc; make sure it \
         is mounted and not hidden from the agent (systemd ProcSubset=pid hides it)"
    )]
    Proc {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("{MEMINFO} has no MemAvailable line: Linux 3.14 or newer is required", MEMINFO = procfs::MEMINFO)]
    NoMemAvailable,
}

/// The host's memory right now.
#[derive(Debug, Clone, PartialEq)]
pub struct HostMemory {
    pub total: u64,
    /// MemAvailable: allocatable without swapping, reclaimable cache included.
    pub available: u64,
    pub used: u64,
    pub swap_total: u64,
    pub swap_used: u64,
    /// `None` when the kernel has no PSI (or it is disabled).
    pub pressure: Option<Pressure>,
    /// `None` when the kernel does not count OOM kills (before 4.13).
    pub oom_kills_total: Option<u64>,
    pub oom_kills_since_start: u64,
}

/// One point of history. Kept compact: a day at 10 s is 8640 of these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    pub available: u64,
    /// Sum over the project's running containers; `None` when dockerd did not answer.
    pub container_usage: Option<u64>,
    pub pressure_some_avg10: Option<f32>,
    pub oom_kills_total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub interval_secs: u64,
    /// Oldest first; empty unless asked for, downsampled to the requested count.
    pub samples: Vec<Sample>,
    pub available: Option<Summary>,
    pub container_usage: Option<Summary>,
    /// docker `oom` events of the project within the window.
    pub oom_events: u64,
    /// Kernel OOM kills (any process) within the window.
    pub kernel_oom_kills: u64,
    /// Time from the oldest sample to now.
    pub span_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryReport {
    pub at: DateTime<Utc>,
    pub host: HostMemory,
    pub containers: Vec<ContainerMemory>,
    /// Why there are no containers, when dockerd could not be asked.
    pub docker_error: Option<String>,
    pub agent_rss: Option<u64>,
    pub machine: Machine,
    pub advice: Vec<Advice>,
    pub history: History,
    pub events: Vec<MemoryEvent>,
    pub watcher_connected: bool,
    pub sampling_since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ReportOptions {
    /// Include the samples themselves (the summaries are always there).
    pub samples: bool,
    /// At most this many samples (each the worst of its time bucket); 0 = all.
    pub max_samples: usize,
}

/// Whether the events watcher currently has a stream open, and how often it connected.
#[derive(Debug, Default)]
pub struct WatcherStatus {
    connected: AtomicBool,
    connects: AtomicU64,
    /// Container events of the project seen (any kind): the sampler's cue to look again.
    changes: AtomicU64,
}

impl WatcherStatus {
    pub(crate) fn set_connected(&self, on: bool) {
        if on {
            self.connects.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.store(on, Ordering::Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    pub(crate) fn saw_change(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves whenever the project's containers may have changed: an event, or a reconnect
    /// (events may have been missed in between).
    pub(crate) fn generation(&self) -> u64 {
        self.changes.load(Ordering::Relaxed) + self.connects()
    }
}

/// The engine and the compose project whose containers are measured.
#[derive(Debug, Clone)]
pub struct ProjectEngine {
    pub docker: DockerHandle,
    pub project: String,
    pub notifier: std::sync::Arc<crate::notify::Notifier>,
}

/// The memory monitor held by the agent context. Dropping it stops the background tasks.
#[derive(Debug)]
pub struct Monitor {
    shared: Arc<Shared>,
    _stop: watch::Sender<()>,
}

/// State shared by the RPC and the background tasks.
#[derive(Debug)]
pub struct Shared {
    pub(crate) config: MemoryConfig,
    started_at: DateTime<Utc>,
    oom_baseline: Option<u64>,
    metadata: Option<metadata::MetadataClient>,
    pub(crate) cgroups: cgroup::CgroupMounts,
    ring: Mutex<Ring<Sample>>,
    pub(crate) events: Mutex<watcher::EventLog>,
    machine: tokio::sync::Mutex<Option<(Machine, Instant)>>,
    system: Mutex<sysinfo::System>,
    /// The running containers' pids as of the last look through the engine.
    pub(crate) usage_targets: Mutex<Option<sampler::UsageTargets>>,
    headroom: Mutex<headroom::Headroom>,
    pub watcher: WatcherStatus,
    pub(crate) sampler_started: AtomicBool,
    pub(crate) stop: watch::Receiver<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these leaves consistent data (plain values); keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Monitor {
    /// `state_dir`: where the week of hourly extremes is kept (None: memory only).
    pub fn new(config: MemoryConfig, state_dir: Option<&Path>) -> Self {
        let started_at = Utc::now();
        let capacity = config
            .history_secs
            .div_ceil(config.sample_interval_secs.max(1)) as usize;
        let metadata = metadata::MetadataClient::new(
            &config.metadata_url,
            Duration::from_millis(config.metadata_timeout_ms),
        )
        .map_err(|e| tracing::warn!(error = %e, "memory.metadata_url; the machine stays unknown"))
        .ok();
        let (stop_tx, stop_rx) = watch::channel(());
        let shared = Shared {
            oom_baseline: procfs::read_oom_kills(Path::new(procfs::VMSTAT)),
            metadata,
            cgroups: cgroup::CgroupMounts::detect(),
            ring: Mutex::new(Ring::new(capacity)),
            events: Mutex::new(watcher::EventLog::new(started_at)),
            machine: tokio::sync::Mutex::new(None),
            system: Mutex::new(sysinfo::System::new()),
            usage_targets: Mutex::new(None),
            headroom: Mutex::new(headroom::Headroom::load(state_dir)),
            watcher: WatcherStatus::default(),
            sampler_started: AtomicBool::new(false),
            stop: stop_rx,
            started_at,
            config,
        };
        Self {
            shared: Arc::new(shared),
            _stop: stop_tx,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Shared {
    /// Host memory from /proc and sysinfo.
    pub fn host(&self) -> Result<HostMemory, MemoryError> {
        let meminfo =
            std::fs::read_to_string(procfs::MEMINFO).map_err(|source| MemoryError::Proc {
                path: procfs::MEMINFO,
                source,
            })?;
        let available = procfs::parse_mem_available(&meminfo).ok_or(MemoryError::NoMemAvailable)?;
        let (total, swap_total, swap_used) = {
            let mut system = lock(&self.system);
            system.refresh_memory();
            (
                system.total_memory(),
                system.total_swap(),
                system.used_swap(),
            )
        };
        let oom_kills_total = procfs::read_oom_kills(Path::new(procfs::VMSTAT));
        Ok(HostMemory {
            total,
            available: available.min(total),
            used: total.saturating_sub(available),
            swap_total,
            swap_used,
            pressure: procfs::read_pressure(Path::new(procfs::PRESSURE)),
            oom_kills_since_start: match (oom_kills_total, self.oom_baseline) {
                (Some(now), Some(start)) => now.saturating_sub(start),
                _ => 0,
            },
            oom_kills_total,
        })
    }

    /// The machine, looked up once (and again every 10 minutes while it is unknown).
    pub async fn machine(&self) -> Machine {
        let mut slot = self.machine.lock().await;
        if let Some((m, _)) = slot.as_ref() {
            return m.clone();
        }
        let m = self.lookup_machine().await;
        *slot = Some((m.clone(), Instant::now()));
        m
    }

    pub(crate) async fn refresh_machine_if_stale(&self) {
        let stale = matches!(
            self.machine.lock().await.as_ref(),
            Some((m, at)) if !m.on_gce && at.elapsed() >= MACHINE_RETRY
        );
        if stale {
            let m = self.lookup_machine().await;
            *self.machine.lock().await = Some((m, Instant::now()));
        }
    }

    async fn lookup_machine(&self) -> Machine {
        match &self.metadata {
            Some(client) => client.lookup().await,
            None => Machine::unknown(),
        }
    }

    pub(crate) fn record(&self, sample: Sample, total: u64) {
        lock(&self.ring).push(sample);
        lock(&self.headroom).record(
            sample.at,
            total,
            sample.available,
            sample.pressure_some_avg10,
            sample.oom_kills_total,
        );
        let cutoff = Utc::now() - chrono::Duration::seconds(self.config.history_secs as i64);
        lock(&self.events).prune(cutoff);
    }

    /// A copy of the samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.ring).iter().copied().collect()
    }

    pub fn events(&self) -> Vec<MemoryEvent> {
        lock(&self.events).to_vec()
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    fn thresholds(&self) -> advice::Thresholds {
        advice::Thresholds {
            low_available: self.config.low_available_mb * 1024 * 1024,
            pressure_pct: self.config.pressure_some_pct,
            sustained_secs: self.config.sustained_secs,
            interval_secs: self.config.sample_interval_secs,
        }
    }
}

/// Everything MemoryStats answers. Docker trouble is reported in the answer, not as an error:
/// host memory is most needed exactly when things go wrong.
pub async fn report(
    monitor: &Monitor,
    engine: &ProjectEngine,
    opts: ReportOptions,
) -> Result<MemoryReport, MemoryError> {
    report_from(monitor.shared(), engine, opts).await
}

pub(crate) async fn report_from(
    shared: &Shared,
    engine: &ProjectEngine,
    opts: ReportOptions,
) -> Result<MemoryReport, MemoryError> {
    let host = shared.host()?;
    let docker = async {
        let docker = engine.docker.get().await?;
        containers::snapshot(&docker, &engine.project, &shared.cgroups, host.total).await
    };
    let (machine, containers) = tokio::join!(
        shared.machine(),
        crate::docker::within(DOCKER_TIMEOUT, docker)
    );
    let (containers, docker_error) = match containers {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let now = Utc::now();
    let week = lock(&shared.headroom).week(now.timestamp(), host.total);
    let events = shared.events();
    let ring = lock(&shared.ring);
    let advice = advice::advise(&advice::Inputs {
        machine: &machine,
        host: &host,
        containers: &containers,
        events: &events,
        samples: &ring,
        oom_baseline: shared.oom_baseline,
        week,
        thresholds: shared.thresholds(),
    });
    let history = history(&ring, &events, shared, &host, now, opts);
    drop(ring);
    Ok(MemoryReport {
        at: now,
        host,
        containers,
        docker_error,
        agent_rss: procfs::agent_rss(),
        machine,
        advice,
        history,
        events,
        watcher_connected: shared.watcher.connected(),
        sampling_since: shared.started_at,
    })
}

fn history(
    ring: &Ring<Sample>,
    events: &[MemoryEvent],
    shared: &Shared,
    host: &HostMemory,
    now: DateTime<Utc>,
    opts: ReportOptions,
) -> History {
    let start_kills = if ring.is_full() {
        ring.oldest().and_then(|s| s.oom_kills_total)
    } else {
        shared.oom_baseline
    };
    let samples = if opts.samples {
        let all: Vec<&Sample> = ring.iter().collect();
        ring::buckets(all.len(), opts.max_samples)
            .into_iter()
            .map(|r| worst(&all[r]))
            .collect()
    } else {
        Vec::new()
    };
    History {
        interval_secs: shared.config.sample_interval_secs,
        samples,
        available: ring::summarize(ring.iter().map(|s| s.available)),
        container_usage: ring::summarize(ring.iter().filter_map(|s| s.container_usage)),
        oom_events: events.iter().filter(|e| e.kind == EventKind::Oom).count() as u64,
        kernel_oom_kills: match (start_kills, host.oom_kills_total) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        },
        span_secs: ring
            .oldest()
            .map_or(0, |s| (now.timestamp() - s.at).max(0) as u64),
    }
}

/// The worst moment of a bucket: least available, most container usage, most pressure.
fn worst(bucket: &[&Sample]) -> Sample {
    let last = *bucket[bucket.len() - 1];
    Sample {
        at: last.at,
        available: bucket.iter().map(|s| s.available).min().unwrap_or(0),
        container_usage: bucket.iter().filter_map(|s| s.container_usage).max(),
        pressure_some_avg10: bucket
            .iter()
            .filter_map(|s| s.pressure_some_avg10)
            .reduce(f32::max),
        oom_kills_total: last.oom_kills_total,
    }
}
