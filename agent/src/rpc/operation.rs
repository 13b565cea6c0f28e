//! The one runner of streamed operations (build, up, update, rollback): take the lock, run the
//! work in a task of its own — a client that disconnects does not interrupt it — stream its
//! events as they come, and end with one result message.
use std::{future::Future, sync::Arc};

use tokio::{sync::mpsc, task::JoinError};
use tonic::{Response, Status};

use super::{EventStream, counted_stream};
use crate::{
    context::AgentContext,
    events::{Event, EventSink},
    lock::LockGuard,
    operation::OperationKind,
};

/// Takes the single-flight lock for an operation of `kind`.
pub fn lock(
    ctx: &AgentContext,
    kind: OperationKind,
    requested_by: &str,
) -> Result<LockGuard, Status> {
    Ok(ctx.lock.try_acquire(kind.operation(requested_by))?)
}

/// Makes the stream's last message from the work's result (or why its task stopped).
pub type ResultMessage<M, T> = Box<dyn FnOnce(Result<T, JoinError>) -> Result<M, Status> + Send>;

/// How an operation's events and result become messages of its stream.
pub struct Messages<M, T> {
    /// Messages buffered for a slow client before the runner waits for it.
    pub capacity: usize,
    pub event: fn(Event) -> M,
    /// The last message: the work's result, or why its task stopped.
    pub result: ResultMessage<M, T>,
}

/// Runs `work` holding `guard` in a task of its own and streams what it reports.
pub fn stream<M, T, W, Fut>(
    ctx: &Arc<AgentContext>,
    guard: LockGuard,
    messages: Messages<M, T>,
    work: W,
) -> Response<EventStream<M>>
where
    M: Send + 'static,
    T: Send + 'static,
    W: FnOnce(Arc<AgentContext>, LockGuard, EventSink) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (tx, rx) = mpsc::channel(messages.capacity);
    let task = tokio::spawn(work(ctx.clone(), guard, EventSink::new(events_tx)));
    tokio::spawn(async move {
        // Ends when the work drops its sink, i.e. when it has finished. A send error only means
        // the client left; keep draining so the work never waits on it.
        while let Some(e) = events_rx.recv().await {
            let _ = tx.send(Ok((messages.event)(e))).await;
        }
        let _ = tx.send((messages.result)(task.await)).await;
    });
    Response::new(counted_stream(ctx, rx))
}
