//! The background side of MemoryStats: one task samples host and container memory into the
//! ring every `sample_interval_secs`, another records docker events. Both hold only a weak
//! reference to the agent context and stop when it is dropped.
use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use chrono::Utc;
use tokio::{sync::watch, time::MissedTickBehavior};

use super::{Sample, Shared, containers, watcher};
use crate::context::AgentContext;

/// Sampling must not pile up behind a slow engine.
const MAX_DOCKER_WAIT: Duration = Duration::from_secs(5);

/// Starts sampling and watching for `ctx`. Needs a tokio runtime; returns false without one
/// (e.g. a context built in a synchronous tool) or when already started.
pub fn start(ctx: &Arc<AgentContext>) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    let shared = ctx.memory.shared().clone();
    if shared.sampler_started.swap(true, Ordering::SeqCst) {
        return false;
    }
    let weak = Arc::downgrade(ctx);
    runtime.spawn(sample_loop(
        weak.clone(),
        shared.clone(),
        shared.stop.clone(),
    ));
    runtime.spawn(watcher::run(weak, shared.clone(), shared.stop.clone()));
    true
}

async fn sample_loop(ctx: Weak<AgentContext>, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    // Learn the machine early, so the first MemoryStats call does not wait for it.
    shared.machine().await;
    let interval = Duration::from_secs(shared.config.sample_interval_secs.max(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let Some(strong) = ctx.upgrade() else { return };
        sample_once(&strong, &shared, interval.min(MAX_DOCKER_WAIT)).await;
        drop(strong);
        shared.refresh_machine_if_stale().await;
    }
}

/// Takes one sample into the ring (and the week's hourly extremes).
pub(crate) async fn sample_once(ctx: &AgentContext, shared: &Shared, docker_wait: Duration) {
    let host = match shared.host() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "memory sample skipped");
            return;
        }
    };
    let usage = tokio::time::timeout(docker_wait, async {
        let docker = ctx.docker.get().await.ok()?;
        let list = containers::snapshot(&docker, &ctx.app.project, &shared.cgroups, host.total)
            .await
            .ok()?;
        Some(list.iter().filter_map(|c| c.usage).sum::<u64>())
    })
    .await
    .ok()
    .flatten();
    let sample = Sample {
        at: Utc::now().timestamp(),
        available: host.available,
        container_usage: usage,
        pressure_some_avg10: host.pressure.map(|p| p.some.avg10 as f32),
        oom_kills_total: host.oom_kills_total,
    };
    shared.record(sample, host.total);
}
