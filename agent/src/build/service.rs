//! The configured app's service → a [`BuildSpec`], and a journaled build of it under the
//! single-flight lock (what the Build RPC and `clawops local build` run).
use super::{BuildError, BuildSpec, BuiltImage, ImageRef, ImageRefError, PreflightLimits};
use crate::{
    compose::{ComposeError, Project},
    config::{Config, ResolvedApp},
    context::AgentContext,
    docker::DockerError,
    events::{Event, EventSink, PhaseStatus},
    git::{GitError, Repo},
    journal::{Finish, JournalError, Outcome},
    lock::LockGuard,
    operation::{self, Reporter},
};

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(
        "service {service} has no `build:` section in the compose file and agent.toml sets no \
         `[build] context`, so there is nothing to build; set `[build] context` (and \
         `[build] dockerfile` if it is not <context>/Dockerfile), or `[app] image` to run a \
         prebuilt image"
    )]
    NoBuild { service: String },
    #[error("service {service}: `image:` {source}")]
    InvalidImage {
        service: String,
        source: ImageRefError,
    },
    #[error("cannot tell which commit to tag the image with: {0}")]
    Git(#[from] GitError),
}

/// The build of `service` as the compose project describes it, with `[build]` settings.
pub fn service_spec(
    config: &Config,
    app: &ResolvedApp,
    project: &Project,
    service: &str,
) -> Result<BuildSpec, PrepareError> {
    let svc = project.require_service(service)?;
    let image = svc.image_ref(&project.name);
    ImageRef::parse(&image).map_err(|source| PrepareError::InvalidImage {
        service: service.to_owned(),
        source,
    })?;
    let mut spec = match (svc.build.clone(), &config.build.context) {
        (Some(b), _) => {
            let mut spec = BuildSpec::new(&b.context, &image, &project.name);
            spec.dockerfile = b.dockerfile;
            // `args: [NAME]` without a value passes nothing when NAME is unset, as compose does.
            spec.args = b
                .args
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            spec.target = b.target;
            spec
        }
        // No `build:`: agent.toml says where the Dockerfile is, relative to the checkout (the
        // context check keeps both inside it).
        (None, Some(context)) => {
            let mut spec = BuildSpec::new(app.repo.join(context), &image, &project.name);
            spec.dockerfile = config
                .build
                .dockerfile
                .as_ref()
                .map(|d| app.repo.join(d).to_string_lossy().into_owned());
            spec
        }
        (None, None) => {
            return Err(PrepareError::NoBuild {
                service: service.to_owned(),
            });
        }
    };
    spec.overlay = config.build.overlay.clone();
    spec.keep = config.build.keep_images;
    spec.service = service.to_owned();
    spec.root = Some(app.repo.clone());
    spec.builder = config.build.builder;
    spec.labels = config.build.labels.clone();
    spec.timeout = std::time::Duration::from_secs(config.build.timeout_secs);
    spec.preflight = PreflightLimits {
        min_free_disk_mb: config.build.min_free_disk_mb,
        min_available_memory_mb: config.build.min_available_memory_mb,
    };
    Ok(spec)
}

/// A spec ready to run, with what the caller should be told before it starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub spec: BuildSpec,
    pub warnings: Vec<String>,
}

/// Loads the compose project from the working tree and reads HEAD (as the repository's owner).
/// `service`: default the configured one.
pub async fn prepare(
    ctx: &AgentContext,
    service: Option<&str>,
    no_cache: bool,
) -> Result<Prepared, PrepareError> {
    let service = service
        .filter(|s| !s.is_empty())
        .unwrap_or(&ctx.config.app.service);
    let project = crate::up::load_project(&ctx.config, &ctx.app)?;
    let mut warnings = project.warnings.clone();
    let mut spec = service_spec(&ctx.config, &ctx.app, &project, service)?;
    spec.no_cache = no_cache;
    let app = &ctx.app;
    let repo = Repo::new(&app.repo, &app.owner, app.uid, app.gid, &app.home);
    repo.check().await?;
    let head = repo.head().await?;
    let modified = repo.modified_tracked_files().await?;
    if !modified.is_empty() {
        warnings.push(format!(
            "the working tree has uncommitted changes ({}); the image tagged {} includes them",
            modified.join(", "),
            &head[..head.len().min(super::tags::SHA_TAG_LEN)]
        ));
    }
    spec.git_sha = Some(head);
    Ok(Prepared { spec, warnings })
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Builds holding `guard`, journaling begin, the preflight and build phases, and the end.
/// Runs to completion whether or not anyone still listens to `sink`.
pub async fn run(
    ctx: &AgentContext,
    guard: LockGuard,
    prepared: Prepared,
    sink: EventSink,
) -> Result<BuiltImage, RunError> {
    let spec = &prepared.spec;
    let work = async |report: Reporter<'_>| {
        for w in &prepared.warnings {
            sink.warning(w.clone());
        }
        build_journaled(ctx, spec, &report).await
    };
    let ended = |result: &Result<BuiltImage, RunError>| ended(spec, result);
    let service = spec.service.as_str();
    operation::journaled(&ctx.journal, guard, None, &sink, service, work, ended).await?
}

/// The build, its phase ends journaled as they reach the caller (build() reports its own).
async fn build_journaled(
    ctx: &AgentContext,
    spec: &BuildSpec,
    report: &Reporter<'_>,
) -> Result<BuiltImage, RunError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let inner = EventSink::new(tx);
    let tee = async {
        while let Some(event) = rx.recv().await {
            if let Event::Phase(p) = &event
                && p.status != PhaseStatus::Started
            {
                report.record(p.phase.as_str(), p.status.as_str(), p.elapsed, &p.message);
            }
            report.sink.emit(event);
        }
    };
    let work = async {
        let result = match ctx.docker.get().await {
            Ok(docker) => super::build(&docker, spec, &inner)
                .await
                .map_err(RunError::from),
            Err(e) => Err(RunError::from(e)),
        };
        drop(inner);
        result
    };
    tokio::join!(work, tee).0
}

/// How the journal records a build's end.
fn ended(spec: &BuildSpec, result: &Result<BuiltImage, RunError>) -> (Outcome, Finish) {
    match result {
        Ok(b) => (
            Outcome::Succeeded,
            Finish {
                to_sha: spec.git_sha.clone(),
                image: b.tags.first().cloned(),
                message: format!(
                    "built {} ({}) with {} in {:.1}s",
                    b.tags.join(", "),
                    b.image_id,
                    b.builder.as_str(),
                    b.duration.as_secs_f64()
                ),
                ..Default::default()
            },
        ),
        Err(e) => (
            Outcome::Failed,
            Finish {
                to_sha: spec.git_sha.clone(),
                message: e.to_string(),
                last_logs: match e {
                    RunError::Build(b) => b
                        .failure()
                        .map(|f| f.output_tail.clone())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                },
                ..Default::default()
            },
        ),
    }
}
