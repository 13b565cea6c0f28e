//! Update and Rollback: take the lock, run the deploy in its own task (a client that disconnects
//! does not interrupt it), stream its progress, end with one `result` event.
use std::{future::Future, sync::Arc};

use clawops_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{
    EventStream, counted_stream,
    deploy::{deploy_event, result_event},
};
use crate::{
    context::AgentContext,
    events::EventSink,
    journal::Outcome,
    lock::{LockGuard, Operation},
    update::{self, DeployReport, UpdateOptions, rollback::RollbackOptions},
};

pub async fn update(
    ctx: &Arc<AgentContext>,
    req: Request<pb::UpdateRequest>,
) -> Result<Response<EventStream<pb::DeployEvent>>, Status> {
    let r = req.into_inner();
    let guard = ctx
        .lock
        .try_acquire(Operation::new("update", &r.requested_by))?;
    let opts = UpdateOptions {
        git_ref: (!r.git_ref.is_empty()).then_some(r.git_ref),
        allow_non_ff: r.allow_non_ff,
        force: r.force,
        accept_changes: r.accept_changes,
    };
    let work_ctx = ctx.clone();
    Ok(stream_deploy(ctx, guard, move |guard, sink| {
        update::run(work_ctx, guard, opts, sink)
    }))
}

pub async fn rollback(
    ctx: &Arc<AgentContext>,
    req: Request<pb::RollbackRequest>,
) -> Result<Response<EventStream<pb::DeployEvent>>, Status> {
    let r = req.into_inner();
    let guard = ctx
        .lock
        .try_acquire(Operation::new("rollback", &r.requested_by))?;
    let opts = RollbackOptions {
        to_sha: (!r.to_sha.is_empty()).then_some(r.to_sha),
        restore_state: r.restore_state,
    };
    let work_ctx = ctx.clone();
    Ok(stream_deploy(ctx, guard, move |guard, sink| {
        update::rollback::run(work_ctx, guard, opts, sink)
    }))
}

fn stream_deploy<F, Fut>(
    ctx: &AgentContext,
    guard: LockGuard,
    work: F,
) -> Response<EventStream<pb::DeployEvent>>
where
    F: FnOnce(LockGuard, EventSink) -> Fut,
    Fut: Future<Output = DeployReport> + Send + 'static,
{
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(work(guard, EventSink::new(events_tx)));
    tokio::spawn(async move {
        // Ends when the deploy drops its sink, i.e. when it has finished.
        while let Some(e) = events_rx.recv().await {
            let _ = tx.send(Ok(deploy_event(e))).await;
        }
        let item = match task.await {
            Ok(report) => Ok(result_event(result(report))),
            Err(e) => Err(Status::internal(format!("the deploy task failed: {e}"))),
        };
        let _ = tx.send(item).await;
    });
    Response::new(counted_stream(ctx, rx))
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
