//! The background side of MemoryStats: one task samples host and container memory into the
//! ring every `sample_interval_secs`, another records docker events. Both hold only a weak
//! reference to the agent context and stop when it is dropped.
//!
//! A routine sample reads files only: /proc, and the cgroups of the containers' processes as
//! the engine last reported them. The engine is asked again (list, inspect) when the events
//! watcher sees a container start, die or OOM, when it reconnects, when a cgroup cannot be
//! read, and every [`RELOOK`]: a sample every 10 s for days should not cost two API calls and
//! a JSON decode each, nor keep that code resident in an idle agent.
use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio::{sync::watch, time::MissedTickBehavior};

use super::{
    Monitor, ProjectEngine, Sample, Shared,
    containers::{self, UsageSource},
    lock, watcher,
};

/// Sampling must not pile up behind a slow engine.
const MAX_DOCKER_WAIT: Duration = Duration::from_secs(5);
/// The longest a sample trusts the engine's last answer, events or not.
const RELOOK: Duration = Duration::from_secs(300);

/// Where the running containers' usage is read, and as of which watcher generation.
#[derive(Debug, Clone)]
pub(crate) struct UsageTargets {
    pids: Vec<i64>,
    generation: u64,
    at: Instant,
}

/// Starts sampling and watching `engine`'s project; both tasks end when `monitor` is dropped.
/// Needs a tokio runtime; returns false without one (e.g. a context built in a synchronous
/// tool) or when already started.
pub fn start(monitor: &Monitor, engine: ProjectEngine) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    let shared = monitor.shared().clone();
    if shared.sampler_started.swap(true, Ordering::SeqCst) {
        return false;
    }
    runtime.spawn(sample_loop(
        engine.clone(),
        shared.clone(),
        shared.stop.clone(),
    ));
    runtime.spawn(watcher::run(engine, shared.clone(), shared.stop.clone()));
    true
}

async fn sample_loop(engine: ProjectEngine, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    // Learn the machine early, so the first MemoryStats call does not wait for it.
    shared.machine().await;
    let interval = Duration::from_secs(shared.config.sample_interval_secs.max(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut advice = AdviceWatch::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        sample_once(&engine, &shared, interval.min(MAX_DOCKER_WAIT)).await;
        advice.check(&shared, &engine).await;
        shared.refresh_machine_if_stale().await;
    }
}

/// Notices when the machine-type advice changes, for `[[notify]]` targets that want it. The
/// advice needs the engine's view of the containers, so it is looked at every [`RELOOK`] only,
/// and not at all when nobody listens.
#[derive(Debug, Default)]
struct AdviceWatch {
    checked: Option<Instant>,
    /// (kind, target machine type, service) of each piece of advice last time.
    last: Vec<(String, Option<String>, Option<String>)>,
}

impl AdviceWatch {
    async fn check(&mut self, shared: &Shared, engine: &ProjectEngine) {
        use crate::notify::{EventName, Notification};
        if !engine.notifier.wants(EventName::AdviceChanged)
            || self.checked.is_some_and(|at| at.elapsed() < RELOOK)
        {
            return;
        }
        self.checked = Some(Instant::now());
        let Ok(report) = super::report_from(shared, engine, super::ReportOptions::default()).await
        else {
            return;
        };
        let now: Vec<_> = report
            .advice
            .iter()
            .map(|a| {
                (
                    format!("{:?}", a.kind),
                    a.to_machine_type.clone(),
                    a.service.clone(),
                )
            })
            .collect();
        if now != self.last {
            self.last = now;
            engine
                .notifier
                .send(Notification::advice_changed(&report.advice));
        }
    }
}

/// Takes one sample into the ring (and the week's hourly extremes).
pub(crate) async fn sample_once(engine: &ProjectEngine, shared: &Shared, docker_wait: Duration) {
    let host = match shared.host() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "memory sample skipped");
            return;
        }
    };
    let usage = match usage_from_cgroups(shared) {
        Some(usage) => Some(usage),
        None => usage_from_engine(engine, shared, host.total, docker_wait).await,
    };
    let sample = Sample {
        at: Utc::now().timestamp(),
        available: host.available,
        container_usage: usage,
        pressure_some_avg10: host.pressure.map(|p| p.some.avg10 as f32),
        oom_kills_total: host.oom_kills_total,
    };
    shared.record(sample, host.total);
}

/// The containers' usage from their cgroups alone, while the engine's last answer stands.
fn usage_from_cgroups(shared: &Shared) -> Option<u64> {
    let targets = lock(&shared.usage_targets).clone()?;
    if targets.generation != shared.watcher.generation() || targets.at.elapsed() >= RELOOK {
        return None;
    }
    targets
        .pids
        .iter()
        .map(|&pid| {
            super::cgroup::read_for_pid(&shared.cgroups, pid)
                .ok()
                .map(|m| m.usage)
        })
        .sum()
}

/// Asks the engine which containers run and measures them; remembers their pids when every
/// one could be read from its cgroup.
async fn usage_from_engine(
    engine: &ProjectEngine,
    shared: &Shared,
    host_total: u64,
    docker_wait: Duration,
) -> Option<u64> {
    // Read before asking: an event that lands meanwhile makes the next sample look again.
    let generation = shared.watcher.generation();
    let list = crate::docker::within(docker_wait, async {
        let docker = engine.docker.get().await?;
        containers::snapshot(&docker, &engine.project, &shared.cgroups, host_total).await
    })
    .await
    .ok();
    let Some(list) = list else {
        *lock(&shared.usage_targets) = None;
        return None;
    };
    let running: Vec<_> = list.iter().filter(|c| c.running).collect();
    let from_cgroups = running
        .iter()
        .all(|c| c.pid > 0 && c.source == Some(UsageSource::Cgroup));
    *lock(&shared.usage_targets) = from_cgroups.then(|| UsageTargets {
        pids: running.iter().map(|c| c.pid).collect(),
        generation,
        at: Instant::now(),
    });
    Some(list.iter().filter_map(|c| c.usage).sum::<u64>())
}
