//! The watch loop: sleep until the next check inside the window, ask the source for the newest
//! sha (or digest, in image mode), and deploy it through `update::run` when it is new, not the
//! one that rolled back, and the single-flight lock is free (busy: try again at the next tick).
//! A failed check (remote or registry down, refused credentials) is recorded as the check's
//! result and touches nothing running. The loop holds only a weak reference to the context
//! between ticks and does nothing that counts as a call; in the daemon it gives each check's
//! pages back when the check is done (`AfterCheck::Trim`), so watching keeps the idle agent small.
use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use chrono::{DateTime, Utc};

use super::{REQUESTED_BY, Source, Watcher};
use crate::{
    context::AgentContext,
    events::EventSink,
    notify::Notification,
    operation::OperationKind,
    update::{self, UpdateOptions},
};

/// What the loop does besides checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCheck {
    /// Give the check's pages back at once (the daemon: `trim::trim`). Checks come on a timer,
    /// so the agent never stays quiet long enough for `trim::when_quiet`, and each check maps
    /// code (compose parsing, git, state files) that the idle agent otherwise has no use for.
    Trim,
    /// Leave memory alone: the loop runs inside another program (`clawops local`).
    Nothing,
}

/// Starts the loop when `[watch] enabled`. Call after start-up recovery, so a deploy never
/// races the repair of an interrupted one. Returns whether it started.
pub fn start(ctx: &Arc<AgentContext>, after_check: AfterCheck) -> bool {
    if !ctx.watch.config.enabled {
        return false;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    runtime.spawn(run(Arc::downgrade(ctx), ctx.watch.clone(), after_check));
    true
}

async fn run(ctx: Weak<AgentContext>, watcher: Arc<Watcher>, after_check: AfterCheck) {
    loop {
        // Only the watcher, not the whole context, lives across the sleep.
        match schedule(&watcher, Utc::now()) {
            Some(wait) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = watcher.wake.notified() => {}
                }
            }
            None => watcher.wake.notified().await,
        }
        let Some(ctx) = ctx.upgrade() else { return };
        if watcher.paused().is_none() && watcher.window.contains(Utc::now()) {
            tick(&ctx).await;
            // Not while a call streams: it is using those pages.
            if after_check == AfterCheck::Trim && ctx.counters.streams() == 0 {
                trim_now();
            }
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_now() {
    let t = crate::trim::trim();
    tracing::trace!(segments = t.segments, "trimmed after a watch check");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_now() {}

/// Sets and returns the wait until the next check (`None`: paused, wait for resume).
fn schedule(watcher: &Watcher, now: DateTime<Utc>) -> Option<Duration> {
    if watcher.paused().is_some() {
        watcher.set_next_check(None);
        return None;
    }
    let interval = chrono::Duration::seconds(watcher.config.interval_secs as i64);
    let next = watcher.window.next_open(now + interval);
    watcher.set_next_check(Some(next));
    Some((next - now).to_std().unwrap_or(Duration::ZERO))
}

/// One check, and a deploy when there is something new.
async fn tick(ctx: &Arc<AgentContext>) {
    let watcher = &ctx.watch;
    let source = watcher.watching(Source::for_app(&ctx.config, &ctx.app, &ctx.docker));
    let latest = match source.latest().await {
        Ok(sha) => {
            watcher.checked(None);
            sha
        }
        Err(e) => {
            tracing::warn!(source = %source.describe(), error = %e, "watch: check failed");
            watcher.checked(Some(e.to_string()));
            return;
        }
    };
    let deployed = ctx.journal.deployed().and_then(|e| e.to_sha);
    if deployed.as_deref() == Some(latest.as_str()) {
        return;
    }
    if watcher.rolled_back_sha().as_deref() == Some(latest.as_str()) {
        tracing::debug!(sha = %latest, "watch: not retrying the version that rolled back");
        return;
    }
    let guard = match ctx
        .lock
        .try_acquire(OperationKind::Update.operation(REQUESTED_BY))
    {
        Ok(g) => g,
        Err(busy) => {
            tracing::info!(reason = %busy, "watch: busy, trying again at the next check");
            return;
        }
    };
    tracing::info!(sha = %latest, source = %source.describe(), "watch: deploying a new version");
    let report = update::run(
        ctx.clone(),
        guard,
        UpdateOptions::default(),
        EventSink::discard(),
    )
    .await;
    if let Some(n) = Notification::deploy_finished(&report, REQUESTED_BY) {
        ctx.notifier.send(n);
    }
    match watcher.record(&report) {
        Ok(Some(pause)) => {
            tracing::warn!(reason = %pause.reason, "watch: paused");
            ctx.notifier.send(Notification::watch_paused(&pause));
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "watch: cannot record the result"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::{WatchConfig, Window};

    #[test]
    fn next_check_waits_for_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::default();
        let docker = crate::docker::DockerHandle::new(None);
        let source = Source::for_app(&config, &config.resolve_app().unwrap(), &docker);
        let watch = WatchConfig {
            enabled: true,
            interval_secs: 60,
            ..WatchConfig::default()
        };
        let window = Window::parse(Some("02:00-05:00"), None).unwrap();
        let w = Watcher::new(watch, window, source, dir.path());
        let now = DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let wait = schedule(&w, now).unwrap();
        assert_eq!(wait, Duration::from_secs(14 * 3600));
        assert_eq!(
            w.status().next_check.unwrap().to_rfc3339(),
            "2026-01-11T02:00:00+00:00"
        );
        w.pause("me", "testing").unwrap();
        assert_eq!(schedule(&w, now), None);
        assert_eq!(w.status().next_check, None);
    }
}
