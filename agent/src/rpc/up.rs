//! Up: run the Up engine through the operation runner, streaming its progress and ending with
//! one `result` event.
use std::{sync::Arc, time::Instant};

use clawops_proto::v1 as pb;
use tokio::task::JoinError;
use tonic::{Request, Response, Status};

use super::{
    EventStream,
    deploy::{deploy_event, result_event},
    operation::{self, Messages},
};
use crate::{
    context::AgentContext,
    operation::OperationKind,
    up::{self, UpError, UpOptions, UpReport},
};

pub async fn up(
    ctx: &Arc<AgentContext>,
    req: Request<pb::UpRequest>,
) -> Result<Response<EventStream<pb::DeployEvent>>, Status> {
    let r = req.into_inner();
    let guard = operation::lock(ctx, OperationKind::Up, &r.requested_by)?;
    let op_id = guard.operation().id.clone();
    let opts = UpOptions {
        services: r.services,
        force_recreate: r.force_recreate,
        remove_orphans: r.remove_orphans,
        no_wait: r.no_wait,
    };
    let started = Instant::now();
    let app_service = ctx.config.app.service.clone();
    let messages = Messages {
        capacity: 64,
        event: deploy_event,
        result: Box::new(move |r| {
            let mut result = result(r, &app_service);
            result.operation_id = op_id;
            result.duration_ms = started.elapsed().as_millis() as u64;
            Ok(result_event(result))
        }),
    };
    Ok(operation::stream(
        ctx,
        guard,
        messages,
        async move |ctx, guard, sink| up::run(&ctx, guard, opts, sink).await,
    ))
}

fn result(r: Result<Result<UpReport, UpError>, JoinError>, app_service: &str) -> pb::DeployResult {
    let mut result = pb::DeployResult::default();
    match r {
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
    result
}
