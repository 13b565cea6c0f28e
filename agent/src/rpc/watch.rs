//! WatchStatus, WatchPause, WatchResume: the auto-updater's state.
use std::sync::Arc;

use clawops_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use crate::{context::AgentContext, watch::WatchStatus};

pub async fn status(
    ctx: &Arc<AgentContext>,
    _req: Request<pb::WatchStatusRequest>,
) -> Result<Response<pb::WatchStatusReply>, Status> {
    Ok(Response::new(reply(ctx.watch.status())))
}

pub async fn pause(
    ctx: &Arc<AgentContext>,
    req: Request<pb::WatchPauseRequest>,
) -> Result<Response<pb::WatchStatusReply>, Status> {
    let r = req.into_inner();
    let by = if r.requested_by.is_empty() {
        "unknown"
    } else {
        r.requested_by.as_str()
    };
    let reason = if r.reason.is_empty() {
        "paused by the operator"
    } else {
        r.reason.as_str()
    };
    Ok(Response::new(reply(ctx.watch.pause(by, reason)?)))
}

pub async fn resume(
    ctx: &Arc<AgentContext>,
    _req: Request<pb::WatchResumeRequest>,
) -> Result<Response<pb::WatchStatusReply>, Status> {
    Ok(Response::new(reply(ctx.watch.resume()?)))
}

fn reply(s: WatchStatus) -> pb::WatchStatusReply {
    let paused = s.state.paused.clone();
    pb::WatchStatusReply {
        enabled: s.enabled,
        paused: paused.is_some(),
        paused_reason: paused
            .as_ref()
            .map(|p| p.reason.clone())
            .unwrap_or_default(),
        paused_by: paused.as_ref().map(|p| p.by.clone()).unwrap_or_default(),
        paused_at: paused.map(|p| timestamp(p.at)),
        source: s.source,
        window: s.window,
        interval_secs: s.interval_secs,
        next_check: s.next_check.filter(|_| s.enabled).map(timestamp),
        last_check: s.last_check.map(timestamp),
        last_check_error: s.last_check_error.unwrap_or_default(),
        last: s.state.last.map(|l| pb::WatchResult {
            sha: l.sha,
            outcome: l.outcome,
            at: Some(timestamp(l.at)),
            message: l.message,
            operation_id: l.operation_id,
        }),
        consecutive_failures: s.state.consecutive_failures,
        max_failures: s.max_failures,
        skipped_sha: s.state.rolled_back_sha.unwrap_or_default(),
    }
}
