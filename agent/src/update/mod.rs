//! Update: git fetch → (no-op?) → fast-forward → build → preflight → snapshot → swap with
//! automatic rollback. Everything the operator typed by hand, in one call that either moves the
//! gateway to the new commit or leaves the previous one serving, and journals which.
use std::{future::Future, sync::Arc, time::Duration};

use crate::{
    build,
    compose::Project,
    context::AgentContext,
    docker::{Engine, LABEL_CONFIG_HASH},
    events::{EventSink, Phase, PhaseStatus},
    git::Repo,
    journal::{Finish, Outcome},
    lock::LockGuard,
    operation::{self, Reporter},
    readiness::Readiness,
    snapshot::{self, Snapshot},
    up::{self, containers},
};

pub mod changes;
pub mod image_mode;
pub mod rollback;
pub mod source;
pub mod swap;

#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// Deploy this sha or tag instead of the branch head.
    pub git_ref: Option<String>,
    pub allow_non_ff: bool,
    /// Rebuild and recreate even when already up to date.
    pub force: bool,
    /// Deploy a change that widens what the repository asks of the VM (changes::Profile).
    pub accept_changes: bool,
    /// Replay the checkout's local commits onto the target (also `[app] rebase`).
    pub rebase: bool,
}

impl UpdateOptions {
    /// How the checkout may move: `--allow-non-ff` (explicit, with a ref) over rebasing.
    fn moves(&self, cfg: &crate::config::AppConfig) -> source::Moves {
        match (self.allow_non_ff, self.rebase || cfg.rebase) {
            (true, _) => source::Moves::Detach,
            (false, true) => source::Moves::Rebase,
            (false, false) => source::Moves::FastForward,
        }
    }
}

/// The outcome of a deploy (update or rollback), as journaled and reported.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployReport {
    pub operation_id: String,
    pub outcome: Outcome,
    pub from_sha: Option<String>,
    pub to_sha: Option<String>,
    pub image: Option<String>,
    pub message: String,
    pub last_logs: Vec<String>,
    pub duration: Duration,
    pub downtime: Duration,
    pub snapshot: Option<Snapshot>,
}

/// A failure before anything was stopped: the running gateway is untouched.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Compose(#[from] crate::compose::ComposeError),
    #[error(transparent)]
    Up(#[from] crate::up::UpError),
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error(transparent)]
    Readiness(#[from] crate::readiness::ReadinessError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(transparent)]
    Prepare(#[from] build::service::PrepareError),
    #[error(transparent)]
    Unaccepted(#[from] changes::Unaccepted),
    #[error(transparent)]
    Reference(#[from] crate::pull::RefError),
    #[error(transparent)]
    Auth(#[from] crate::pull::auth::AuthError),
    #[error(transparent)]
    Pull(#[from] crate::pull::PullError),
}

/// `openclaw:latest` → `openclaw:<sha12>`: the per-commit tag rollback starts from; for a
/// digest (image mode), `openclaw:<first 12 hex digits>`.
pub fn sha_tag(image: &str, sha: &str) -> String {
    let sha = label(sha);
    match build::ImageRef::parse(image) {
        Ok(r) => r.sha_tag(sha),
        // Unparseable names never get this far: the build or the pull refuses them first.
        Err(_) => format!("{image}-{sha}"),
    }
}

/// A sha or digest abbreviated for messages: 12 digits (`sha256:` kept on digests).
pub(crate) fn short(sha: &str) -> &str {
    let keep = if sha.starts_with("sha256:") {
        7 + 12
    } else {
        12
    };
    &sha[..sha.len().min(keep)]
}

/// A sha or digest as 12 hex digits, for tags and file names.
pub(crate) fn label(sha: &str) -> &str {
    let hex = sha.strip_prefix("sha256:").unwrap_or(sha);
    &hex[..hex.len().min(12)]
}

impl DeployReport {
    /// A deploy that has not done anything yet: failed until it says otherwise.
    pub(crate) fn new(operation_id: &str, from_sha: Option<String>) -> Self {
        Self {
            operation_id: operation_id.to_owned(),
            outcome: Outcome::Failed,
            from_sha,
            to_sha: None,
            image: None,
            message: String::new(),
            last_logs: Vec::new(),
            duration: Duration::ZERO,
            downtime: Duration::ZERO,
            snapshot: None,
        }
    }

    /// How the journal records its end.
    fn journaled(&self) -> (Outcome, Finish) {
        let finish = Finish {
            from_sha: self.from_sha.clone(),
            to_sha: self.to_sha.clone(),
            image: self.image.clone(),
            message: self.message.clone(),
            last_logs: self.last_logs.clone(),
        };
        (self.outcome, finish)
    }
}

/// Runs a deploy (update or rollback) holding `guard`: journaled from the sha deployed now;
/// `work` fills in the report. Always returns a report, failures included.
pub(crate) async fn deploy<'a, W, Fut>(
    ctx: &'a AgentContext,
    guard: LockGuard,
    sink: &'a EventSink,
    work: W,
) -> DeployReport
where
    W: FnOnce(Reporter<'a>, DeployReport) -> Fut,
    Fut: Future<Output = DeployReport>,
{
    let op_id = guard.operation().id.clone();
    let from = ctx.journal.deployed().and_then(|e| e.to_sha);
    let service = ctx.config.app.service.as_str();
    let run = async |p: Reporter<'a>| {
        let mut report = work(p.clone(), DeployReport::new(p.op_id(), from.clone())).await;
        report.duration = p.elapsed();
        report
    };
    let journaled = operation::journaled(
        &ctx.journal,
        guard,
        from.clone(),
        sink,
        service,
        run,
        DeployReport::journaled,
    );
    match journaled.await {
        Ok(report) => report,
        Err(e) => DeployReport {
            message: e.to_string(),
            ..DeployReport::new(&op_id, from)
        },
    }
}

/// Runs an update holding `guard`; always journals and returns a report (failures included).
pub async fn run(
    ctx: Arc<AgentContext>,
    guard: LockGuard,
    opts: UpdateOptions,
    sink: EventSink,
) -> DeployReport {
    deploy(&ctx, guard, &sink, async |p, mut report| {
        if let Err(e) = execute(&ctx, &opts, &p, &mut report).await {
            report.outcome = Outcome::Failed;
            report.message = match &report.from_sha {
                Some(sha) => format!("{e} (nothing was stopped: {} still serves)", short(sha)),
                None => format!("{e} (nothing was stopped)"),
            };
        }
        report
    })
    .await
}

/// The update as named steps: stage the new image (built mode: fetch, move the checkout,
/// build; image mode: resolve, pull), then preflight, snapshot and swap, rolling back on failure.
async fn execute(
    ctx: &AgentContext,
    opts: &UpdateOptions,
    p: &Reporter<'_>,
    report: &mut DeployReport,
) -> Result<(), UpdateError> {
    let staged = match image_mode::source(&ctx.config, &ctx.app)? {
        Some(source) => {
            let docker = ctx.docker.get().await?;
            image_mode::stage(ctx, &docker, &source, opts, p, report)
                .await?
                .map(|s| (docker, s))
        }
        None => stage_build(ctx, opts, p, report).await?,
    };
    match staged {
        Some((docker, staged)) => swap_in(ctx, &docker, p, &staged, report).await,
        // Already up to date: the report says so.
        None => Ok(()),
    }
}

/// An image ready to replace the running container.
#[derive(Debug)]
pub(crate) struct Staged {
    pub project: Project,
    /// The compose `image:` name the container runs, already pointed at the new image.
    pub image_name: String,
    /// What rollback returns to: `<repo>:<sha12>` (built) or `<repo>:<digest12>` (pulled).
    pub image: String,
    /// The git sha (built mode) or the digest (image mode) being deployed.
    pub target: String,
}

/// Built mode: fetch, no-op check, move the checkout, check the new tree, build.
async fn stage_build(
    ctx: &AgentContext,
    opts: &UpdateOptions,
    p: &Reporter<'_>,
    report: &mut DeployReport,
) -> Result<Option<(Engine, Staged)>, UpdateError> {
    let (app, cfg) = (&ctx.app, &ctx.config.app);
    let repo = Repo::new(&app.repo, &app.owner, app.uid, app.gid, &app.home);
    repo.check().await?;
    let docker = ctx.docker.get().await?;

    let upstream = format!("{}/{}", cfg.remote, cfg.branch);
    let mut target = fetch(&repo, cfg, &upstream, opts.git_ref.as_deref(), p).await?;
    let moves = opts.moves(cfg);
    if moves == source::Moves::Rebase {
        target = source::carried_forward(&repo, target).await?;
    }
    report.to_sha = Some(target.clone());

    let deployed = !opts.force && report.from_sha.as_deref() == Some(target.as_str());
    if deployed && let Some(image) = already_running(ctx, &docker, &target).await? {
        report.outcome = Outcome::UpToDate;
        report.image = Some(image);
        report.message = format!(
            "already up to date: {} is deployed and running",
            short(&target)
        );
        return Ok(None);
    }

    let plan = source::plan(&repo, &target, &upstream, moves).await?;
    if report.from_sha.is_none() {
        report.from_sha = Some(plan.head.clone());
    }
    let deployed_profile = deployed_profile(ctx, report.from_sha.is_some());
    // After a rebase the deployed sha is the rebased HEAD.
    let target = source::apply(&repo, &plan).await?;
    report.to_sha = Some(target.clone());
    let merged = if plan.action == source::SourceAction::None {
        PhaseStatus::Skipped
    } else {
        PhaseStatus::Done
    };
    p.phase(
        Phase::Merge,
        merged,
        format!("{} → {}", short(&plan.head), short(&target)),
    );

    // The compose file may have changed with the commit: load it from the new tree, and check
    // it before anything is built or stopped.
    let project = target_project(ctx, app, &repo, &plan, deployed_profile, opts, p.sink).await?;
    let (image_name, image) = build_image(ctx, p, &docker, &project, &target).await?;
    report.image = Some(image.clone());
    let staged = Staged {
        project,
        image_name,
        image,
        target,
    };
    Ok(Some((docker, staged)))
}

/// Container preflight, state snapshot, then the swap (which puts the old container back when
/// the new one fails); the report says which happened.
async fn swap_in(
    ctx: &AgentContext,
    docker: &Engine,
    p: &Reporter<'_>,
    staged: &Staged,
    report: &mut DeployReport,
) -> Result<(), UpdateError> {
    let service = ctx.config.app.service.as_str();
    let (project, image_name) = (&staged.project, staged.image_name.as_str());
    // The container runs the compose `image:` name (pointed at the new image), exactly as
    // `docker compose up` would; the kept tag is what rollback returns to.
    let info = containers::image_info(docker, project, service, Some(image_name)).await?;
    let existing = swap::current(docker, project, service).await?;
    up::preflight::preflight(docker, &ctx.app, project, service, &info, existing.as_ref()).await?;
    p.phase(Phase::Preflight, PhaseStatus::Done, String::new());

    let snap = take_snapshot(ctx, p, docker, project, image_name, report).await?;
    report.snapshot = Some(snap);

    let readiness = Readiness::from_config(&ctx.config.readiness)?;
    let live = swap::Live {
        docker,
        project,
        service,
        readiness: &readiness,
    };
    let outcome = swap::swap(&live, image_name, p).await;
    // `image:` (e.g. openclaw:latest) must not point at the broken image, or a manual
    // `docker compose up` would start it.
    if settle(report, outcome, &staged.target, &staged.image)
        && let Some(prev) = report.from_sha.clone()
        && let Err(e) = docker.tag(&sha_tag(image_name, &prev), image_name).await
    {
        p.sink.warning(format!(
            "could not point {image_name} back at {}: {e}",
            short(&prev)
        ));
    }
    Ok(())
}

/// Builds the service at `target`; the compose `image:` name and the sha tag it got.
async fn build_image(
    ctx: &AgentContext,
    p: &Reporter<'_>,
    docker: &Engine,
    project: &Project,
    target: &str,
) -> Result<(String, String), UpdateError> {
    let service = &ctx.config.app.service;
    let mut spec = build::service::service_spec(&ctx.config, &ctx.app, project, service)?;
    spec.git_sha = Some(target.to_owned());
    // build() reports its own phases to the caller; the journal gets one record of it.
    let built = build::build(docker, &spec, p.sink).await?;
    let image = sha_tag(&spec.image, target);
    let done = format!("{image} ({})", built.image_id);
    p.journal(Phase::Build, PhaseStatus::Done, &done);
    Ok((spec.image, image))
}

/// Fetches the branch; the sha to deploy (`git_ref`, else the branch head).
async fn fetch(
    repo: &Repo,
    cfg: &crate::config::AppConfig,
    upstream: &str,
    git_ref: Option<&str>,
    p: &Reporter<'_>,
) -> Result<String, UpdateError> {
    p.phase(Phase::Fetch, PhaseStatus::Started, upstream);
    let remote_head = repo.fetch(&cfg.remote, &cfg.branch).await?;
    let target = match git_ref {
        Some(r) => repo.resolve(r, upstream).await?,
        None => remote_head,
    };
    let fetched = format!("{upstream} is {}", short(&target));
    p.phase(Phase::Fetch, PhaseStatus::Done, fetched);
    Ok(target)
}

/// Snapshots the state before anything is stopped, labelled with the sha it belongs to. Read
/// through the engine: the service's container mounts the state, or (first deploy) a helper
/// container from the image just built does.
async fn take_snapshot(
    ctx: &AgentContext,
    p: &Reporter<'_>,
    docker: &Engine,
    project: &Project,
    image_name: &str,
    report: &DeployReport,
) -> Result<Snapshot, UpdateError> {
    let from_label = report.from_sha.as_deref().map(label).unwrap_or("none");
    let engine = snapshot::Engine {
        docker,
        project: &project.name,
        service: &ctx.config.app.service,
        image: Some(image_name),
    };
    let snap = snapshot::take_capped(
        &engine,
        &ctx.config.state_dir,
        &format!("{}-{from_label}", p.op_id()),
        &ctx.app.state_dirs,
        ctx.config.snapshots.keep,
        ctx.config.snapshots.max_mb,
    )
    .await?;
    p.phase(
        Phase::Snapshot,
        PhaseStatus::Done,
        format!("{} ({} bytes)", snap.path.display(), snap.size_bytes),
    );
    Ok(snap)
}

/// Fills in the report from how the swap went; whether the previous version serves again.
fn settle(
    report: &mut DeployReport,
    outcome: Result<swap::Swapped, swap::SwapFailed>,
    target: &str,
    image: &str,
) -> bool {
    let failed = match outcome {
        Ok(done) => {
            report.outcome = Outcome::Succeeded;
            report.downtime = done.downtime;
            report.message = format!(
                "deployed {} ({image}); the gateway was down for {:.1}s",
                short(target),
                done.downtime.as_secs_f64()
            );
            return false;
        }
        Err(failed) => failed,
    };
    report.downtime = failed.downtime;
    report.last_logs = failed.last_logs;
    report.to_sha = Some(target.to_owned());
    let previous = report
        .from_sha
        .as_deref()
        .map(short)
        .unwrap_or("the previous container");
    let (target, reason) = (short(target), failed.reason);
    let (outcome, message) = match (failed.stopped_old, failed.restored) {
        (true, Ok(())) => (
            Outcome::RolledBack,
            format!("{target} failed: {reason}; rolled back to {previous}"),
        ),
        (false, Ok(())) => (Outcome::Failed, format!("{target} failed: {reason}")),
        (_, Err(why)) => (
            Outcome::Failed,
            format!(
                "{target} failed: {reason}; rolling back to {previous} ALSO failed: {why}. The gateway is down: \
                 check `clawops logs` and `clawops status`"
            ),
        ),
    };
    report.outcome = outcome;
    report.message = message;
    outcome == Outcome::RolledBack
}

/// What the deployed tree asks of the VM, to compare the target's with (none before a first
/// deploy, or when the deployed tree's compose file does not load).
fn deployed_profile(ctx: &AgentContext, deployed: bool) -> Option<changes::Profile> {
    if !deployed {
        return None;
    }
    let project = up::load_project(&ctx.config, &ctx.app).ok()?;
    Some(changes::Profile::of(&project))
}

/// The target tree's compose project, checked against the deploy policy and, when a deployed
/// tree is known, for changes that widen access (deployed only with `accept_changes`). On a
/// refusal the checkout goes back to where it was: nothing of the refused commit stays.
async fn target_project(
    ctx: &AgentContext,
    app: &crate::config::ResolvedApp,
    repo: &Repo,
    plan: &source::SourcePlan,
    deployed: Option<changes::Profile>,
    opts: &UpdateOptions,
    sink: &EventSink,
) -> Result<Project, UpdateError> {
    let checked = up::load_deployable(&ctx.config, app, sink)
        .map_err(|e| UpdateError::Up(up::UpError::from(e)));
    let refusal = match (checked, deployed) {
        (Err(e), _) => e,
        (Ok(project), None) => return Ok(project),
        (Ok(project), Some(deployed)) => {
            let widened = deployed.widened_by(&changes::Profile::of(&project));
            if widened.is_empty() || opts.accept_changes {
                for change in widened {
                    sink.warning(format!("accepted change: {change}"));
                }
                return Ok(project);
            }
            UpdateError::Unaccepted(changes::Unaccepted {
                deployed: plan.head.clone(),
                target: plan.target.clone(),
                changes: widened,
            })
        }
    };
    source::undo(repo, plan).await?;
    Err(refusal)
}

/// The no-op check: the sha's image exists, the compose `image:` points at it, and the
/// service's container runs with the config hash it would be created with now. Returns the sha
/// tag when all hold.
async fn already_running(
    ctx: &AgentContext,
    docker: &Engine,
    sha: &str,
) -> Result<Option<String>, UpdateError> {
    let project = up::load_project(&ctx.config, &ctx.app)?;
    let image = running_image(docker, &project, &ctx.config.app.service, sha).await;
    // An edited (or added, or dropped) `[build] overlay` needs a build even for the same sha.
    let overlay = ctx.config.build.overlay.as_deref();
    Ok(match image {
        Some(image) if build::overlay::is_current(docker, &image, overlay).await => Some(image),
        _ => None,
    })
}

async fn running_image(
    docker: &Engine,
    project: &Project,
    service: &str,
    sha: &str,
) -> Option<String> {
    let svc = project.service(service)?;
    let image_name = svc.image_ref(&project.name);
    let image = sha_tag(&image_name, sha);
    let kept = docker.inspect_image(&image).await.ok()?.id?;
    let spec = containers::service_spec(docker, project, service, None)
        .await
        .ok()?;
    if docker.inspect_image(&image_name).await.ok()?.id? != kept {
        return None;
    }
    let running = swap::current(docker, project, service).await.ok()??;
    (running.is_running() && running.labels.get(LABEL_CONFIG_HASH) == Some(&spec.config_hash))
        .then_some(image)
}
