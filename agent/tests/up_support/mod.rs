//! Shared fixtures for the Up tests: a busybox "OpenClaw" image that runs as `node` (uid 1000)
//! and answers the seed file's `node dist/index.js gateway` command, a project directory, and an
//! agent context pointing at it. Everything is removed on drop.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use clawops_agent::{
    config::Config,
    context::AgentContext,
    events::{Event, EventSink},
    journal::Journal,
    lock::Operation,
    up::{self, UpError, UpOptions, UpReport},
};
use testkit::cleanup::ProjectGuard;

pub use testkit::node_image::NodeImage;

/// A gateway image running as `node` (uid 1000) in `mode` (see testkit::gateway).
pub async fn node_image(mode: &str) -> NodeImage {
    testkit::node_image::build(mode).await
}

/// A repository directory with a compose project, an agent config and context for it.
pub struct App {
    pub root: tempfile::TempDir,
    pub project: String,
    pub port: u16,
    pub ctx: Arc<AgentContext>,
    _project_guard: ProjectGuard,
}

impl App {
    pub fn repo(&self) -> PathBuf {
        self.root.path().join("repo")
    }

    /// `<root>/home`: the state dir (`[snapshots] dirs`) under which binds are created.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.repo().join(name), text).unwrap();
    }

    /// The seed `.env`, with the image, a free port and directories under the temp root.
    pub fn seed_env(&self, image: &str) -> String {
        format!(
            "OPENCLAW_IMAGE={image}\nOPENCLAW_GATEWAY_TOKEN=change-me-now\nOPENCLAW_GATEWAY_BIND=lan\n\
             OPENCLAW_GATEWAY_PORT={port}\nOPENCLAW_CONFIG_DIR={home}/$USER/.openclaw\n\
             OPENCLAW_WORKSPACE_DIR={home}/$USER/.openclaw/workspace\n",
            port = self.port,
            home = self.home().display()
        )
    }

    pub async fn up(&self, opts: UpOptions) -> (Result<UpReport, UpError>, Vec<Event>) {
        let guard = self
            .ctx
            .lock
            .try_acquire(Operation::new("up", "test"))
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let result = up::run(&self.ctx, guard, opts, EventSink::new(tx)).await;
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (result, events)
    }

    /// The engine as the tests' own fixtures reach it.
    pub async fn docker(&self) -> bollard::Docker {
        testkit::docker::connect().await
    }

    pub fn container_name(&self, service: &str) -> String {
        format!("{}-{service}-1", self.project)
    }
}

/// A fresh app whose config waits for `readiness` (TOML lines of `[readiness]`; `{port}` is
/// replaced by the app's host port).
pub fn app(readiness: &str) -> App {
    app_with(readiness, "")
}

/// [`app`] with more `[app]` lines (e.g. `profiles = ["debug"]`).
pub fn app_with(readiness: &str, app_lines: &str) -> App {
    let root = tempfile::Builder::new()
        .prefix("clawops-up")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(root.path().join("repo")).unwrap();
    std::fs::create_dir_all(root.path().join("home")).unwrap();
    let project = testkit::unique("upt").replace('-', "");
    let port = testkit::free_port();
    let toml = format!(
        "state_dir = \"{state}\"\n[app]\nrepo = \"{repo}\"\nproject = \"{project}\"\n{app_lines}\n\
         [snapshots]\ndirs = [\"{home}\"]\n[readiness]\n{readiness}\n",
        state = root.path().join("state").display(),
        repo = root.path().join("repo").display(),
        home = root.path().join("home").display(),
        readiness = readiness.replace("{port}", &port.to_string()),
    );
    let config = Config::parse(&toml, Path::new("agent.toml")).unwrap();
    let resolved = config.resolve_app().unwrap();
    let journal = Journal::open(&config.state_dir).unwrap();
    let ctx = AgentContext::new(config, resolved, journal);
    App {
        _project_guard: ProjectGuard::new(project.clone()),
        root,
        project,
        port,
        ctx,
    }
}

/// Phase messages, for asserting on progress.
pub fn phase_messages(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Phase(p) => Some(format!(
                "{} {} {}",
                p.phase.as_str(),
                p.status.as_str(),
                p.message
            )),
            _ => None,
        })
        .collect()
}

pub fn warnings(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Warning(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}
