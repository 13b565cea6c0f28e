//! Rollback: redeploy a previous healthy sha from the image kept for it (no build, no git), and
//! optionally restore the state snapshot taken when the gateway last moved away from that sha.
use std::sync::Arc;

use super::{DeployReport, deploy, label, sha_tag, short, swap};
use crate::{
    compose::{ComposeError, Project},
    context::AgentContext,
    docker::{DockerError, Engine},
    events::{EventSink, Phase, PhaseStatus},
    journal::Outcome,
    lock::LockGuard,
    operation::Reporter,
    readiness::{Readiness, ReadinessError},
    snapshot::{self, SnapshotError},
    up::{self, containers},
};

/// Why a rollback did not start (nothing was stopped, except for a state restore).
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(
        "{prefix} is not a healthy deploy in the journal (see `clawops history`); \
         to deploy an arbitrary commit use `clawops update --ref {prefix} --allow-non-ff`"
    )]
    UnknownSha { prefix: String },
    #[error("there is no earlier healthy deploy to roll back to (see `clawops history`)")]
    NoEarlierDeploy,
    #[error("{} is already the deployed sha", short(sha))]
    AlreadyDeployed { sha: String },
    #[error(
        "the image {image} kept for {} is gone (only the last build.keep_images = {keep} are kept); \
         {}",
        short(sha),
        redeploy_hint(sha)
    )]
    ImageGone {
        image: String,
        sha: String,
        keep: u32,
    },
    #[error(
        "no state snapshot was taken while {} was deployed (kept: the last {keep}); \
         roll back without --restore-state",
        short(sha)
    )]
    NoSnapshot { sha: String, keep: u32 },
    #[error("could not point {target} at {image}: {source}")]
    Retag {
        image: String,
        target: String,
        source: DockerError,
    },
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Readiness(#[from] ReadinessError),
}

#[derive(Debug, Clone, Default)]
pub struct RollbackOptions {
    /// A sha (or unique prefix) of an earlier healthy deploy; default: the one before the
    /// current.
    pub to_sha: Option<String>,
    pub restore_state: bool,
}

/// How to bring back a version whose kept image is gone.
fn redeploy_hint(sha: &str) -> String {
    if crate::pull::is_digest(sha) {
        format!("pull it again with `clawops update --ref {sha}`")
    } else {
        format!(
            "rebuild it with `clawops update --ref {} --allow-non-ff`",
            short(sha)
        )
    }
}

impl From<up::LoadError> for RollbackError {
    fn from(e: up::LoadError) -> Self {
        match e {
            up::LoadError::Compose(c) => RollbackError::Compose(c),
            up::LoadError::Policy(p) => RollbackError::Policy(p),
        }
    }
}

pub async fn run(
    ctx: Arc<AgentContext>,
    guard: LockGuard,
    opts: RollbackOptions,
    sink: EventSink,
) -> DeployReport {
    deploy(&ctx, guard, &sink, async |p, mut report| {
        if let Err(e) = execute(&ctx, &opts, &p, &mut report).await {
            report.outcome = Outcome::Failed;
            report.message = e.to_string();
        }
        report
    })
    .await
}

async fn execute(
    ctx: &AgentContext,
    opts: &RollbackOptions,
    p: &Reporter<'_>,
    report: &mut DeployReport,
) -> Result<(), RollbackError> {
    let current = report.from_sha.clone();
    let target = target(ctx, opts, current.as_deref())?;
    report.to_sha = Some(target.clone());

    let service = ctx.config.app.service.as_str();
    let docker = ctx.docker.get().await?;
    let project = up::load_deployable(&ctx.config, &ctx.app, p.sink)?;
    let image_name = project.require_service(service)?.image_ref(&project.name);
    let image = sha_tag(&image_name, &target);
    containers::image_info(&docker, &project, service, Some(&image))
        .await
        .map_err(|_| RollbackError::ImageGone {
            image: image.clone(),
            sha: target.clone(),
            keep: ctx.config.build.keep_images,
        })?;
    report.image = Some(image.clone());

    if opts.restore_state {
        let restored = restore_state(
            ctx,
            p,
            &docker,
            &project,
            &image,
            &target,
            current.as_deref(),
        );
        p.phase(Phase::Snapshot, PhaseStatus::Done, restored.await?);
    }

    let readiness = Readiness::from_config(&ctx.config.readiness)?;
    // The container runs the compose `image:` name, as with `docker compose up`: point it at
    // the kept image first (and back if the rollback fails).
    docker
        .tag(&image, &image_name)
        .await
        .map_err(|source| RollbackError::Retag {
            image: image.clone(),
            target: image_name.clone(),
            source,
        })?;
    let live = swap::Live {
        docker: &docker,
        project: &project,
        service,
        readiness: &readiness,
    };
    let outcome = swap::swap(&live, &image_name, p).await;
    if outcome.is_err()
        && let Some(current) = &current
        && let Err(e) = docker
            .tag(&sha_tag(&image_name, current), &image_name)
            .await
    {
        p.sink.warning(format!(
            "could not point {image_name} back at {}: {e}",
            short(current)
        ));
    }
    settle(report, outcome, &target, &image, &ctx.app.repo);
    Ok(())
}

/// Fills in the report from how the swap went.
fn settle(
    report: &mut DeployReport,
    outcome: Result<swap::Swapped, swap::SwapFailed>,
    target: &str,
    image: &str,
    repo: &std::path::Path,
) {
    match outcome {
        Ok(done) => {
            report.outcome = Outcome::Succeeded;
            report.downtime = done.downtime;
            let next = if crate::pull::is_digest(target) {
                "the next `clawops update` deploys the configured image tag again".to_owned()
            } else {
                format!(
                    "the checkout in {} was left as it is, so the next `clawops update` deploys \
                     the branch head again",
                    repo.display()
                )
            };
            report.message = format!("rolled back to {} ({image}); {next}", short(target));
        }
        Err(failed) => {
            report.downtime = failed.downtime;
            report.last_logs = failed.last_logs;
            report.outcome = if failed.stopped_old && failed.restored.is_ok() {
                Outcome::RolledBack
            } else {
                Outcome::Failed
            };
            report.message = match failed.restored {
                Ok(()) => format!(
                    "{} did not start: {}; the current version serves again",
                    short(target),
                    failed.reason
                ),
                Err(why) => format!(
                    "{} did not start: {}; restarting the current version also failed: {why}",
                    short(target),
                    failed.reason
                ),
            };
        }
    }
}

/// Stops the gateway and puts back the state snapshot taken while `target` was deployed,
/// keeping the state it replaces; says what it did.
async fn restore_state(
    ctx: &AgentContext,
    p: &Reporter<'_>,
    docker: &Engine,
    project: &Project,
    image: &str,
    target: &str,
    current: Option<&str>,
) -> Result<String, RollbackError> {
    let service = ctx.config.app.service.as_str();
    let wanted = format!("-{}.tar", label(target));
    let snap = snapshot::list(&ctx.config.state_dir)?
        .into_iter()
        .find(|s| s.to_string_lossy().ends_with(&wanted))
        .ok_or_else(|| RollbackError::NoSnapshot {
            sha: target.to_owned(),
            keep: ctx.config.snapshots.keep,
        })?;
    // The state must not change under a running gateway: stop it first.
    if let Ok(Some(c)) = swap::current(docker, project, service).await {
        docker
            .stop(&c.id, containers::stop_timeout(project, service))
            .await?;
    }
    let engine = snapshot::Engine {
        docker,
        project: &project.name,
        service,
        image: Some(image),
    };
    // Labelled with the sha it was deployed with, so a later rollback to that sha with
    // --restore-state finds it.
    let before_label = format!(
        "{}-before-restore-{}",
        p.op_id(),
        current.map(label).unwrap_or("none")
    );
    let keep = ctx.config.snapshots.keep;
    let restored =
        snapshot::restore(&engine, &ctx.config.state_dir, &snap, &before_label, keep).await?;
    let mut message = format!(
        "restored {}; the state it replaced is kept in {}",
        snap.display(),
        restored.before.path.display()
    );
    if !restored.left_over.is_empty() {
        let left: Vec<String> = restored
            .left_over
            .iter()
            .map(|m| m.display().to_string())
            .collect();
        message.push_str(&format!(
            "; these paths are not in the snapshot and could not be removed: {}",
            left.join(", ")
        ));
    }
    Ok(message)
}

/// The sha to return to: the one asked for (a prefix of a healthy deploy), else the newest
/// healthy deploy that is not the current one.
fn target(
    ctx: &AgentContext,
    opts: &RollbackOptions,
    current: Option<&str>,
) -> Result<String, RollbackError> {
    let deploys = ctx.journal.healthy_deploys();
    let mut shas = deploys.iter().filter_map(|e| e.to_sha.clone());
    let target = match &opts.to_sha {
        Some(prefix) => shas
            .find(|sha| matches_prefix(sha, prefix))
            .ok_or_else(|| RollbackError::UnknownSha {
                prefix: prefix.clone(),
            })?,
        None => shas
            .find(|sha| Some(sha.as_str()) != current)
            .ok_or(RollbackError::NoEarlierDeploy)?,
    };
    if Some(target.as_str()) == current {
        return Err(RollbackError::AlreadyDeployed { sha: target });
    }
    Ok(target)
}

/// Does `prefix` abbreviate `sha`? A digest may be given with or without `sha256:`.
fn matches_prefix(sha: &str, prefix: &str) -> bool {
    let prefix = prefix.trim();
    !prefix.is_empty()
        && (sha.starts_with(prefix)
            || sha
                .strip_prefix("sha256:")
                .is_some_and(|hex| hex.starts_with(prefix)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_match_with_or_without_their_algorithm() {
        let d = "sha256:0123456789abcdef";
        assert!(super::matches_prefix(d, "sha256:0123"));
        assert!(super::matches_prefix(d, "0123456"));
        assert!(!super::matches_prefix(d, "1234"));
        assert!(!super::matches_prefix(d, ""));
        assert!(super::matches_prefix("abcdef0123", "abcd"));
    }
}
