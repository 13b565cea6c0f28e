//! NotifyTest: one test message to every `[[notify]]` target, a result per target.
use std::sync::Arc;

use clawops_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::context::AgentContext;

pub async fn test(
    ctx: &Arc<AgentContext>,
    _req: Request<pb::NotifyTestRequest>,
) -> Result<Response<pb::NotifyTestReply>, Status> {
    let results = ctx
        .notifier
        .test()
        .await
        .into_iter()
        .map(|r| {
            let (delivered, http_status, error) = match r.result {
                Ok(d) => (true, d.status.into(), String::new()),
                Err(e) => (false, 0, e.to_string()),
            };
            pb::NotifyTestResult {
                target: r.target,
                format: r.format.as_str().into(),
                delivered,
                http_status,
                error,
            }
        })
        .collect();
    Ok(Response::new(pb::NotifyTestReply { results }))
}
