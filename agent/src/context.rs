//! What every RPC handler shares: config, the resolved app, lock, journal, Docker, counters.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Instant,
};

use chrono::{DateTime, Utc};

use crate::{
    config::{Config, ResolvedApp},
    docker::DockerHandle,
    journal::Journal,
    lock::OperationLock,
};

#[derive(Debug)]
pub struct AgentContext {
    pub config: Config,
    pub app: ResolvedApp,
    pub lock: OperationLock,
    pub journal: Journal,
    pub docker: DockerHandle,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    pub counters: Counters,
    /// What VerifyBinaries found in images (image contents never change).
    pub verify_cache: crate::verify::VerifyCache,
    /// MemoryStats' history and watchers (started by `startup::build_context`).
    pub memory: crate::memory::Monitor,
    /// Auto-update state (its loop is started by `watch::start`).
    pub watch: Arc<crate::watch::Watcher>,
    /// Webhook notifications (workers started by `startup::build_context`).
    pub notifier: Arc<crate::notify::Notifier>,
}

impl AgentContext {
    pub fn new(config: Config, app: ResolvedApp, journal: Journal) -> Arc<Self> {
        let docker = DockerHandle::new(config.docker_host.clone());
        let memory = crate::memory::Monitor::new(config.memory.clone(), Some(&config.state_dir));
        // Validated at load; the whole day is what an unset window means.
        let window = config
            .watch
            .parsed_window()
            .unwrap_or_else(|_| crate::watch::Window::always());
        let source = crate::watch::Source::for_app(&config, &app, &docker);
        let watch =
            crate::watch::Watcher::new(config.watch.clone(), window, source, &config.state_dir);
        let notifier = Arc::new(crate::notify::Notifier::new(&config.notify, &app.project));
        Arc::new(Self {
            config,
            app,
            lock: OperationLock::default(),
            journal,
            docker,
            started_at: Utc::now(),
            started: Instant::now(),
            counters: Counters::default(),
            verify_cache: Default::default(),
            memory,
            watch: Arc::new(watch),
            notifier,
        })
    }

    /// What memory sampling and reports need: the engine, the project's name, and where OOM
    /// kills and advice changes are announced.
    pub fn project_engine(&self) -> crate::memory::ProjectEngine {
        crate::memory::ProjectEngine {
            docker: self.docker.clone(),
            project: self.app.project.clone(),
            notifier: self.notifier.clone(),
        }
    }
}

/// Live counts of open streams, so tests and operators can see that nothing leaks.
#[derive(Debug, Default)]
pub struct Counters {
    pub streams: Arc<AtomicU32>,
    pub log_follows: Arc<AtomicU32>,
    /// Open `clawops run` / `clawops exec` sessions.
    pub sessions: Arc<AtomicU32>,
    /// Calls received (any service), so the agent knows when it has gone quiet.
    pub requests: Arc<AtomicU64>,
}

impl Counters {
    pub fn streams(&self) -> u32 {
        self.streams.load(Ordering::Relaxed)
    }

    pub fn log_follows(&self) -> u32 {
        self.log_follows.load(Ordering::Relaxed)
    }
}

/// Increments a counter for as long as it lives.
#[derive(Debug)]
pub struct CountGuard(Arc<AtomicU32>);

impl CountGuard {
    pub fn new(counter: &Arc<AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl CountGuard {
    /// Takes over one count already added to `counter` (see `limits::follow_slot`).
    pub fn adopt(counter: &Arc<AtomicU32>) -> Self {
        Self(counter.clone())
    }
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
