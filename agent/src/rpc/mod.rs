//! The gRPC layer: translates proto messages to domain calls and domain errors to statuses.
//! One file per RPC family; no other module sees a tonic or proto type.
use std::{pin::Pin, sync::Arc};

use clawops_proto::v1::{self as pb, agent_server::Agent};
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::context::{AgentContext, CountGuard};

mod build;
pub mod convert;
pub mod deploy;
pub mod errors;
mod logs;
pub mod memory;
mod notify;
mod operation;
mod session;
mod status;
mod up;
mod update;
mod verify;
mod watch;

pub use errors::not_yet_implemented;

/// A server stream of `T`.
pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Turns a channel into a response stream that counts itself in `Status.active_streams`
/// while the client holds it open.
pub fn counted_stream<T: Send + 'static>(
    ctx: &AgentContext,
    rx: mpsc::Receiver<Result<T, Status>>,
) -> EventStream<T> {
    let guard = CountGuard::new(&ctx.counters.streams);
    let stream = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|item| (item, (rx, guard)))
    });
    Box::pin(stream)
}

#[derive(Debug, Clone)]
pub struct AgentService {
    ctx: Arc<AgentContext>,
}

impl AgentService {
    pub fn new(ctx: Arc<AgentContext>) -> Self {
        Self { ctx }
    }

    /// Before anything is locked or journaled: a huge `requested_by` would be copied into both.
    fn check_requested_by(&self, requested_by: &str) -> Result<(), Status> {
        let max = self.ctx.config.limits.max_requested_by_bytes;
        Ok(crate::limits::check_requested_by(requested_by, max)?)
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    type BuildStream = EventStream<pb::BuildEvent>;
    type UpStream = EventStream<pb::DeployEvent>;
    type UpdateStream = EventStream<pb::DeployEvent>;
    type RollbackStream = EventStream<pb::DeployEvent>;
    type LogsStream = EventStream<pb::LogChunk>;
    type SessionStream = EventStream<pb::SessionOutput>;

    async fn build(
        &self,
        req: Request<pb::BuildRequest>,
    ) -> Result<Response<Self::BuildStream>, Status> {
        self.check_requested_by(&req.get_ref().requested_by)?;
        build::build(&self.ctx, req).await
    }

    async fn up(&self, req: Request<pb::UpRequest>) -> Result<Response<Self::UpStream>, Status> {
        self.check_requested_by(&req.get_ref().requested_by)?;
        up::up(&self.ctx, req).await
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<Self::UpdateStream>, Status> {
        self.check_requested_by(&req.get_ref().requested_by)?;
        update::update(&self.ctx, req).await
    }

    async fn rollback(
        &self,
        req: Request<pb::RollbackRequest>,
    ) -> Result<Response<Self::RollbackStream>, Status> {
        self.check_requested_by(&req.get_ref().requested_by)?;
        update::rollback(&self.ctx, req).await
    }

    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        logs::logs(&self.ctx, req).await
    }

    async fn verify_binaries(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyReport>, Status> {
        verify::verify_binaries(&self.ctx, req).await
    }

    async fn memory_stats(
        &self,
        req: Request<pb::MemoryRequest>,
    ) -> Result<Response<pb::MemoryReport>, Status> {
        memory::memory_stats(&self.ctx, req).await
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        status::status(&self.ctx, req).await
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        status::history(&self.ctx, req).await
    }

    async fn session(
        &self,
        req: Request<Streaming<pb::SessionInput>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        session::session(&self.ctx, req).await
    }

    async fn watch_status(
        &self,
        req: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<pb::WatchStatusReply>, Status> {
        watch::status(&self.ctx, req).await
    }

    async fn watch_pause(
        &self,
        req: Request<pb::WatchPauseRequest>,
    ) -> Result<Response<pb::WatchStatusReply>, Status> {
        self.check_requested_by(&req.get_ref().requested_by)?;
        self.check_requested_by(&req.get_ref().reason)?;
        watch::pause(&self.ctx, req).await
    }

    async fn watch_resume(
        &self,
        req: Request<pb::WatchResumeRequest>,
    ) -> Result<Response<pb::WatchStatusReply>, Status> {
        watch::resume(&self.ctx, req).await
    }

    async fn notify_test(
        &self,
        req: Request<pb::NotifyTestRequest>,
    ) -> Result<Response<pb::NotifyTestReply>, Status> {
        notify::test(&self.ctx, req).await
    }
}
