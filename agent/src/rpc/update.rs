//! Update and Rollback through the operation runner: progress streamed, one `result` event at
//! the end.
use std::sync::Arc;

use clawops_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{
    EventStream,
    deploy::{deploy_event, result_event},
    operation::{self, Messages},
};
use crate::{
    context::AgentContext,
    journal::Outcome,
    notify::Notification,
    operation::OperationKind,
    update::{self, DeployReport, UpdateOptions, rollback::RollbackOptions},
};

pub async fn update(
    ctx: &Arc<AgentContext>,
    req: Request<pb::UpdateRequest>,
) -> Result<Response<EventStream<pb::DeployEvent>>, Status> {
    let r = req.into_inner();
    // Image mode takes a tag or a digest: a bad one is a usage error, before the lock.
    if !r.git_ref.is_empty() {
        update::image_mode::check_ref(ctx, &r.git_ref)?;
    }
    let guard = operation::lock(ctx, OperationKind::Update, &r.requested_by)?;
    let requested_by = guard.operation().requested_by.clone();
    let opts = UpdateOptions {
        git_ref: (!r.git_ref.is_empty()).then_some(r.git_ref),
        allow_non_ff: r.allow_non_ff,
        force: r.force,
        accept_changes: r.accept_changes,
        rebase: r.rebase,
    };
    Ok(operation::stream(
        ctx,
        guard,
        messages(),
        async move |ctx, guard, sink| {
            let report = update::run(ctx.clone(), guard, opts, sink).await;
            if let Some(n) = Notification::deploy_finished(&report, &requested_by) {
                ctx.notifier.send(n);
            }
            report
        },
    ))
}

pub async fn rollback(
    ctx: &Arc<AgentContext>,
    req: Request<pb::RollbackRequest>,
) -> Result<Response<EventStream<pb::DeployEvent>>, Status> {
    let r = req.into_inner();
    let guard = operation::lock(ctx, OperationKind::Rollback, &r.requested_by)?;
    let opts = RollbackOptions {
        to_sha: (!r.to_sha.is_empty()).then_some(r.to_sha),
        restore_state: r.restore_state,
    };
    Ok(operation::stream(
        ctx,
        guard,
        messages(),
        async move |ctx, guard, sink| update::rollback::run(ctx, guard, opts, sink).await,
    ))
}

fn messages() -> Messages<pb::DeployEvent, DeployReport> {
    Messages {
        capacity: 64,
        event: deploy_event,
        result: Box::new(|r| match r {
            Ok(report) => Ok(result_event(result(report))),
            Err(e) => Err(Status::internal(format!("the deploy task failed: {e}"))),
        }),
    }
}

fn result(r: DeployReport) -> pb::DeployResult {
    pb::DeployResult {
        outcome: match r.outcome {
            Outcome::Succeeded => pb::Outcome::Succeeded,
            Outcome::UpToDate => pb::Outcome::UpToDate,
            Outcome::RolledBack => pb::Outcome::RolledBack,
            Outcome::Failed | Outcome::Interrupted | Outcome::Running => pb::Outcome::Failed,
        } as i32,
        operation_id: r.operation_id,
        from_sha: r.from_sha.unwrap_or_default(),
        to_sha: r.to_sha.unwrap_or_default(),
        image: r.image.unwrap_or_default(),
        message: r.message,
        last_logs: r.last_logs,
        duration_ms: r.duration.as_millis() as u64,
        downtime_ms: r.downtime.as_millis() as u64,
        snapshot: r
            .snapshot
            .map(|s| s.path.display().to_string())
            .unwrap_or_default(),
        ..Default::default()
    }
}
