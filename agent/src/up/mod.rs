//! Up: run the app's compose project natively through the engine, as `docker compose up -d`
//! would, then wait for readiness. Idempotent: a container whose config hash matches is left
//! alone.
//!
//! Building blocks, public for Update (which recreates one service with a new image):
//! - [`load_project`]: the compose project of the configured app;
//! - [`containers::image_info`], [`containers::service_spec`]: image lookup (no pull) and
//!   create options + config hash for a service, optionally with another image;
//! - [`preflight::preflight`]: bind mounts and ports of one service;
//! - [`containers::ensure_resources`], [`containers::create`],
//!   [`containers::create_and_start`], [`containers::replace`];
//! - [`crate::readiness::wait`].
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use crate::{
    compose::{self, ComposeError, LoadOptions, Project},
    config::{Config, ResolvedApp},
    context::AgentContext,
    docker::DockerError,
    events::{EventSink, Phase, PhaseStatus},
    journal::{Finish, JournalError, Outcome},
    lock::LockGuard,
    operation::{self, Reporter},
    readiness::ReadinessError,
};

pub mod containers;
pub mod preflight;
mod services;
mod steps;

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("{}", image_missing(service, image, *has_build))]
    ImageMissing {
        service: String,
        image: String,
        has_build: bool,
    },
    #[error("preflight: {0}")]
    Preflight(String),
    #[error(
        "external network {name} does not exist: create it with `docker network create {name}`, or drop `external: true` so that clawops creates it"
    )]
    NetworkMissing { name: String },
    #[error("preflight: service {service}: bind mount source {} (→ {target}) does not exist: {hint}", path.display())]
    BindMissing {
        service: String,
        path: std::path::PathBuf,
        target: String,
        hint: String,
    },
    #[error(
        "preflight: service {service}: {} (mounted at {target}) is not writable by the container user {user} (uid {uid}, gid {gid}): {} is owned by {owner}. Fix it with: sudo chown -R {uid}:{gid} {}",
        path.display(), offender.display(), path.display()
    )]
    BindNotWritable {
        service: String,
        path: std::path::PathBuf,
        offender: std::path::PathBuf,
        target: String,
        user: String,
        uid: u32,
        gid: u32,
        owner: String,
    },
    #[error("preflight: service {service}: host port {port} ({addr}) is already in use by {}: stop it or change the port mapping", holder.as_deref().unwrap_or("another process"))]
    PortInUse {
        service: String,
        port: u16,
        addr: String,
        holder: Option<String>,
    },
    #[error("service {service}: dependency {dependency} {message}")]
    Dependency {
        service: String,
        dependency: String,
        message: String,
    },
    #[error(transparent)]
    Readiness(#[from] ReadinessError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

fn image_missing(service: &str, image: &str, has_build: bool) -> String {
    if has_build {
        format!(
            "image {image} of service {service} is not on this machine: build it first with `clawops build`"
        )
    } else {
        format!(
            "image {image} of service {service} is not on this machine. Only `clawops update` pulls, in image mode (`[app] image`, or a gateway service with `image:` and neither `build:` nor `[build] context`); otherwise `clawops build` builds it when `[build] context` is set, or load it with `docker load`"
        )
    }
}

impl UpError {
    /// The container's last log lines, when the failure has them (readiness failures).
    pub fn last_logs(&self) -> &[String] {
        match self {
            UpError::Readiness(e) => e.last_logs(),
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Services to bring up (with their dependencies); empty: all.
    pub services: Vec<String>,
    pub force_recreate: bool,
    pub remove_orphans: bool,
    /// Skip the readiness wait.
    pub no_wait: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Recreated,
    Started,
    Restarted,
    Unchanged,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Recreated => "recreated",
            Action::Started => "started",
            Action::Restarted => "restarted",
            Action::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceResult {
    pub service: String,
    pub container: String,
    pub id: String,
    pub image: String,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct UpReport {
    pub project: String,
    pub services: Vec<ServiceResult>,
    /// Containers of the project whose service is no longer in the compose file.
    pub orphans: Vec<String>,
    pub orphans_removed: bool,
    /// Time the configured service took to become ready; `None` when not waited for.
    pub ready_after: Option<Duration>,
    pub duration: Duration,
}

impl UpReport {
    /// Whether any container was created, recreated, started or restarted.
    pub fn changed(&self) -> bool {
        self.orphans_removed || self.services.iter().any(|s| s.action != Action::Unchanged)
    }
}

/// The environment compose interpolates from: this process's, with `USER`, `LOGNAME` and `HOME`
/// of the repository's owner when the agent runs as someone else (as a service it runs as
/// `clawops`, but `.env` files say `/home/$USER/.openclaw` meaning the owner).
pub fn interpolation_env(app: &ResolvedApp) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if nix::unistd::Uid::effective().as_raw() != app.uid {
        env.insert("USER".into(), app.owner.clone());
        env.insert("LOGNAME".into(), app.owner.clone());
        env.insert("HOME".into(), app.home.display().to_string());
    }
    env
}

/// Loads the compose project of the configured app (repo, compose files, project name).
pub fn load_project(config: &Config, app: &ResolvedApp) -> Result<Project, ComposeError> {
    compose::load(&LoadOptions {
        dir: app.repo.clone(),
        files: config.app.compose_files.clone(),
        project_name: config.app.project.clone(),
        env: interpolation_env(app),
        profiles: config.app.profiles.clone(),
    })
}

/// Why a project cannot be deployed as it is.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
}

impl From<LoadError> for UpError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Compose(c) => UpError::Compose(c),
            LoadError::Policy(p) => UpError::Policy(p),
        }
    }
}

/// The compose project, checked against the deploy policy before anything runs from it;
/// warnings (allowed public ports) go to `sink`.
pub fn load_deployable(
    config: &Config,
    app: &ResolvedApp,
    sink: &EventSink,
) -> Result<Project, LoadError> {
    let project = load_project(config, app)?;
    let roots = crate::policy::Roots::for_app(app, &config.policy);
    for warning in crate::policy::check(&project, &roots, &config.policy)? {
        sink.warning(warning);
    }
    Ok(project)
}

/// Runs Up holding `guard` (the single-flight lock), journaling the operation. Events go to
/// `sink`; the report or the error is the result.
pub async fn run(
    ctx: &AgentContext,
    guard: LockGuard,
    opts: UpOptions,
    sink: EventSink,
) -> Result<UpReport, UpError> {
    let ended = |(result, deployed): &(Result<UpReport, UpError>, Option<String>)| match result {
        Ok(r) => (
            if r.changed() {
                Outcome::Succeeded
            } else {
                Outcome::UpToDate
            },
            Finish {
                to_sha: deployed.clone(),
                image: r
                    .services
                    .iter()
                    .find(|s| s.service == ctx.config.app.service)
                    .map(|s| s.image.clone()),
                message: summary(r),
                ..Default::default()
            },
        ),
        Err(e) => (
            Outcome::Failed,
            Finish {
                message: e.to_string(),
                last_logs: e.last_logs().to_vec(),
                ..Default::default()
            },
        ),
    };
    let work = async |progress: Reporter<'_>| {
        let result = execute(ctx, &opts, &progress).await;
        let deployed = match &result {
            Ok(r) => deployed_sha(ctx, r).await,
            Err(_) => None,
        };
        (result, deployed)
    };
    operation::journaled(&ctx.journal, guard, None, &sink, "", work, ended)
        .await?
        .0
}

/// The commit the app's service now runs, from the `clawops.git-sha` label that clawops builds
/// put on their images; Update's no-op check compares against it.
async fn deployed_sha(ctx: &AgentContext, report: &UpReport) -> Option<String> {
    let image = &report
        .services
        .iter()
        .find(|s| s.service == ctx.config.app.service)?
        .image;
    let docker = ctx.docker.get().await.ok()?;
    docker
        .inspect_image(image)
        .await
        .ok()?
        .config?
        .labels?
        .remove(crate::build::LABEL_GIT_SHA)
}

/// One line saying what Up did.
pub fn summary(r: &UpReport) -> String {
    let mut counts: Vec<String> = Vec::new();
    for a in [
        Action::Created,
        Action::Recreated,
        Action::Started,
        Action::Restarted,
        Action::Unchanged,
    ] {
        let n = r.services.iter().filter(|s| s.action == a).count();
        if n > 0 {
            counts.push(format!("{n} {}", a.as_str()));
        }
    }
    let mut s = format!("project {}: {}", r.project, counts.join(", "));
    if let Some(t) = r.ready_after {
        s.push_str(&format!("; ready after {:.1}s", t.as_secs_f64()));
    }
    if !r.orphans.is_empty() {
        let verb = if r.orphans_removed {
            "removed"
        } else {
            "found"
        };
        s.push_str(&format!("; {verb} orphans: {}", r.orphans.join(", ")));
    }
    s
}

async fn execute(
    ctx: &AgentContext,
    opts: &UpOptions,
    progress: &Reporter<'_>,
) -> Result<UpReport, UpError> {
    let sink = progress.sink;
    let loading = "loading the compose project";
    progress.service_phase(Phase::Preflight, PhaseStatus::Started, "", loading);
    let project = load_deployable(&ctx.config, &ctx.app, sink)?;
    for w in &project.warnings {
        sink.warning(w.clone());
    }
    if project.name != ctx.app.project {
        sink.warning(format!(
            "the compose project is named {:?} (COMPOSE_PROJECT_NAME or `name:`) but the agent looks for {:?}: set [app] project = {:?} in agent.toml",
            project.name, ctx.app.project, project.name
        ));
    }
    let docker = ctx.docker.get().await?;
    let order = project.start_order(&opts.services)?;
    let (existing, orphans) = services::current_containers(&docker, &project, sink).await?;
    steps::preflight_all(&docker, &ctx.app, &project, &order, &existing, progress).await?;
    for r in containers::ensure_resources(&docker, &project, &order).await? {
        progress.service_phase(Phase::Create, PhaseStatus::Done, "", format!("created {r}"));
    }
    let orphan_names: Vec<String> = orphans.iter().map(|c| c.name.clone()).collect();
    steps::orphans(&docker, &orphans, opts.remove_orphans, progress).await?;
    let mut results = Vec::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut recreated: HashSet<String> = HashSet::new();
    for s in &order {
        services::wait_dependencies(&docker, &project, s, &ids, ctx, sink).await?;
        let spec = containers::service_spec(&docker, &project, s, None).await?;
        let deps_recreated = project.services[s]
            .depends_on
            .iter()
            .any(|(d, dep)| dep.restart && recreated.contains(d));
        let bring = steps::Bring {
            docker: &docker,
            project: &project,
            spec: &spec,
            current: existing.get(s),
            force_recreate: opts.force_recreate,
            deps_recreated,
        };
        let (id, action) = bring.up(progress).await?;
        if matches!(action, Action::Created | Action::Recreated) {
            recreated.insert(s.clone());
        }
        ids.insert(s.clone(), id.clone());
        results.push(ServiceResult {
            service: s.clone(),
            container: spec.name.clone(),
            id,
            image: spec.image.clone(),
            action,
        });
    }
    let ready_after =
        steps::wait_ready(ctx, &docker, &project, &ids, opts.no_wait, progress).await?;
    Ok(UpReport {
        project: project.name.clone(),
        services: results,
        orphans: orphan_names,
        orphans_removed: opts.remove_orphans && !orphans.is_empty(),
        ready_after,
        duration: progress.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::image_missing;

    #[test]
    fn a_missing_image_says_how_to_get_it() {
        let built = image_missing("openclaw-gateway", "openclaw:local", true);
        assert!(built.contains("`clawops build`"), "{built}");
        let pulled = image_missing(
            "openclaw-gateway",
            "ghcr.io/openclaw/openclaw:latest",
            false,
        );
        for hint in [
            "`clawops update`",
            "image mode",
            "`[build] context`",
            "`docker load`",
        ] {
            assert!(pulled.contains(hint), "{hint} missing: {pulled}");
        }
    }
}
