//! Typed conveniences over the generated client for library users (CI scripts, tests).
use clawops_proto::v1 as pb;
use tonic::{Status, Streaming};

use crate::Client;

/// Reads a deploy stream to its end and returns its final result (progress is discarded).
pub async fn result_of(mut stream: Streaming<pb::DeployEvent>) -> Result<pb::DeployResult, Status> {
    let mut result = None;
    while let Some(event) = stream.message().await? {
        if let Some(pb::deploy_event::Event::Result(r)) = event.event {
            result = Some(r);
        }
    }
    result.ok_or_else(|| Status::unavailable("the deploy stream ended without a result"))
}

impl Client {
    /// Runs an update to its end.
    pub async fn update_to_end(
        &mut self,
        req: pb::UpdateRequest,
    ) -> Result<pb::DeployResult, Status> {
        result_of(self.agent.update(req).await?.into_inner()).await
    }

    /// Runs a rollback to its end.
    pub async fn rollback_to_end(
        &mut self,
        req: pb::RollbackRequest,
    ) -> Result<pb::DeployResult, Status> {
        result_of(self.agent.rollback(req).await?.into_inner()).await
    }
}
