//! Rollback: redeploy a previous healthy sha from the image kept for it (no build, no git), and
//! optionally restore the state snapshot taken when the gateway last moved away from that sha.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{DeployReport, Progress, finish, retag, sha_tag, short, swap};
use crate::{
    context::AgentContext,
    events::{EventSink, Phase, PhaseStatus},
    journal::Outcome,
    lock::LockGuard,
    readiness::Readiness,
    snapshot,
    up::{self, containers},
};

#[derive(Debug, Clone, Default)]
pub struct RollbackOptions {
    /// A sha (or unique prefix) of an earlier healthy deploy; default: the one before the
    /// current.
    pub to_sha: Option<String>,
    pub restore_state: bool,
}

pub async fn run(
    ctx: Arc<AgentContext>,
    guard: LockGuard,
    opts: RollbackOptions,
    sink: EventSink,
) -> DeployReport {
    let op = guard.operation().clone();
    let from = ctx.journal.deployed().and_then(|e| e.to_sha);
    let mut report = DeployReport {
        operation_id: op.id.clone(),
        outcome: Outcome::Failed,
        from_sha: from.clone(),
        to_sha: None,
        image: None,
        message: String::new(),
        last_logs: Vec::new(),
        duration: Duration::ZERO,
        downtime: Duration::ZERO,
        snapshot: None,
    };
    let started = Instant::now();
    if let Err(e) = ctx.journal.begin(&op, from) {
        report.message = e.to_string();
        return report;
    }
    let progress = Progress {
        ctx: &ctx,
        sink: &sink,
        op_id: &op.id,
        service: &ctx.config.app.service,
        started,
    };
    if let Err(message) = execute(&ctx, &opts, &progress, &mut report).await {
        report.outcome = Outcome::Failed;
        report.message = message;
    }
    finish(&ctx, &mut report, started);
    drop(guard);
    report
}

async fn execute(
    ctx: &AgentContext,
    opts: &RollbackOptions,
    p: &Progress<'_>,
    report: &mut DeployReport,
) -> Result<(), String> {
    let deploys = ctx.journal.healthy_deploys();
    let current = report.from_sha.clone();
    let target = match &opts.to_sha {
        Some(prefix) => deploys
            .iter()
            .filter_map(|e| e.to_sha.clone())
            .find(|sha| sha.starts_with(prefix.as_str()))
            .ok_or_else(|| {
                format!(
                    "{prefix} is not a healthy deploy in the journal (see `clawops history`); \
                     to deploy an arbitrary commit use `clawops update --ref {prefix} --allow-non-ff`"
                )
            })?,
        None => deploys
            .iter()
            .filter_map(|e| e.to_sha.clone())
            .find(|sha| Some(sha) != current.as_ref())
            .ok_or("there is no earlier healthy deploy to roll back to (see `clawops history`)")?,
    };
    if Some(&target) == current.as_ref() {
        return Err(format!("{} is already the deployed sha", short(&target)));
    }
    report.to_sha = Some(target.clone());

    let service = ctx.config.app.service.as_str();
    let docker = ctx.docker.get().await.map_err(|e| e.to_string())?;
    let project = up::load_deployable(&ctx.config, &ctx.app, p.sink).map_err(|e| e.to_string())?;
    let svc = project
        .service(service)
        .ok_or_else(|| format!("service {service} is not in the compose file"))?;
    let image_name = svc.image_ref(&project.name);
    let image = sha_tag(&image_name, &target);
    containers::image_info(&docker, &project, service, Some(&image))
        .await
        .map_err(|_| {
            format!(
                "the image {image} kept for {} is gone (only the last build.keep_images = {} are kept); \
                 rebuild it with `clawops update --ref {} --allow-non-ff`",
                short(&target),
                ctx.config.build.keep_images,
                short(&target)
            )
        })?;
    report.image = Some(image.clone());

    if opts.restore_state {
        let label = format!("-{}.tar", short(&target));
        let snap = snapshot::list(&ctx.config.state_dir)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|s| s.to_string_lossy().ends_with(&label))
            .ok_or_else(|| {
                format!(
                    "no state snapshot was taken while {} was deployed (kept: the last {}); \
                     roll back without --restore-state",
                    short(&target),
                    ctx.config.snapshots.keep
                )
            })?;
        // The state must not change under a running gateway: stop it first.
        if let Ok(Some(c)) = swap::current(&docker, &project, service).await {
            containers::stop(&docker, &c.id, containers::stop_timeout(&project, service))
                .await
                .map_err(|e| e.to_string())?;
        }
        let engine = snapshot::Engine {
            docker: &docker,
            project: &project.name,
            service,
            image: Some(&image),
        };
        // Labelled with the sha it was deployed with, so a later rollback to that sha with
        // --restore-state finds it.
        let before_label = format!(
            "{}-before-restore-{}",
            p.op_id,
            current.as_deref().map(short).unwrap_or("none")
        );
        let restored = snapshot::restore(
            &engine,
            &ctx.config.state_dir,
            &snap,
            &before_label,
            ctx.config.snapshots.keep,
        )
        .await
        .map_err(|e| e.to_string())?;
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
        p.phase(Phase::Snapshot, PhaseStatus::Done, message);
    }

    let readiness = Readiness::from_config(&ctx.config.readiness).map_err(|e| e.to_string())?;
    // The container runs the compose `image:` name, as with `docker compose up`: point it at
    // the kept image first (and back if the rollback fails).
    retag(&docker, &image, &image_name)
        .await
        .map_err(|e| format!("could not point {image_name} at {image}: {e}"))?;
    let outcome = swap::swap(
        &docker,
        &project,
        service,
        &image_name,
        &readiness,
        &ctx.journal,
        p.op_id,
        p.sink,
    )
    .await;
    if outcome.is_err()
        && let Some(current) = &current
        && let Err(e) = retag(&docker, &sha_tag(&image_name, current), &image_name).await
    {
        p.sink.warning(format!(
            "could not point {image_name} back at {}: {e}",
            short(current)
        ));
    }
    match outcome {
        Ok(done) => {
            report.outcome = Outcome::Succeeded;
            report.downtime = done.downtime;
            report.message = format!(
                "rolled back to {} ({image}); the checkout in {} was left as it is, so the next \
                 `clawops update` deploys the branch head again",
                short(&target),
                ctx.app.repo.display()
            );
            Ok(())
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
                    short(&target),
                    failed.reason
                ),
                Err(why) => format!(
                    "{} did not start: {}; restarting the current version also failed: {why}",
                    short(&target),
                    failed.reason
                ),
            };
            Ok(())
        }
    }
}
