//! Up: take the lock, run the Up engine in its own task (a client that disconnects does not
//! interrupt it), stream its progress, end with one `result` event.
use std::{sync::Arc, time::Instant};

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
    lock::Operation,
    up::{self, UpOptions},
};

pub async fn up(
    ctx: &Arc<AgentContext>,
    req: Request<pb::UpRequest>,
) -> Result<Response<EventStream<pb::DeployEvent>>, Status> {
    let r = req.into_inner();
    let guard = ctx
        .lock
        .try_acquire(Operation::new("up", &r.requested_by))?;
    let op_id = guard.operation().id.clone();
    let opts = UpOptions {
        services: r.services,
        force_recreate: r.force_recreate,
        remove_orphans: r.remove_orphans,
        no_wait: r.no_wait,
    };
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (tx, rx) = mpsc::channel(64);
    let started = Instant::now();
    let work_ctx = ctx.clone();
    let app_service = ctx.config.app.service.clone();
    let work =
        tokio::spawn(
            async move { up::run(&work_ctx, guard, opts, EventSink::new(events_tx)).await },
        );
    tokio::spawn(async move {
        // Ends when the engine drops its sink, i.e. when it has finished.
        while let Some(e) = events_rx.recv().await {
            let _ = tx.send(Ok(deploy_event(e))).await;
        }
        let mut result = pb::DeployResult {
            operation_id: op_id,
            duration_ms: started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        match work.await {
            Ok(Ok(report)) => {
                result.outcome = if report.changed() {
                    pb::Outcome::Succeeded
                } else {
                    pb::Outcome::UpToDate
                } as i32;
                result.message = up::summary(&report);
                result.image = report
                    .services
                    .iter()
                    .find(|s| s.service == app_service)
                    .map(|s| s.image.clone())
                    .unwrap_or_default();
                result.services = report
                    .services
                    .iter()
                    .map(|s| pb::ServiceResult {
                        service: s.service.clone(),
                        container: s.container.clone(),
                        container_id: s.id.clone(),
                        image: s.image.clone(),
                        action: s.action.as_str().to_owned(),
                    })
                    .collect();
                result.orphans_removed = report.orphans_removed;
                result.orphans = report.orphans;
            }
            Ok(Err(e)) => {
                result.outcome = pb::Outcome::Failed as i32;
                result.message = e.to_string();
                result.last_logs = e.last_logs().to_vec();
            }
            Err(join) => {
                result.outcome = pb::Outcome::Failed as i32;
                result.message = format!("up stopped unexpectedly: {join}");
            }
        }
        let _ = tx.send(Ok(result_event(result))).await;
    });
    Ok(Response::new(counted_stream(ctx, rx)))
}
