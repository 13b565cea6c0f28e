//! A deploy (update, rollback) as the agent's API reports it: its outcome and message, the
//! event stream up to its result, and the status and history it leaves. Typed on the generated
//! API only, so that the agent's tests can use it without building the client.
use clawops_proto::v1::{
    DeployEvent, DeployResult, HistoryRequest, JournalEntry, Outcome, Phase, PullProgress,
    StatusReply, StatusRequest, agent_client::AgentClient, deploy_event::Event,
};
use tonic::codegen::{Body, Bytes, StdError};

/// A channel the generated client can call through: the CLI's authenticated one or a plain
/// tonic channel.
pub trait Channel:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
    >
{
}

impl<T> Channel for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        >
{
}

pub async fn status(agent: &mut AgentClient<impl Channel>) -> StatusReply {
    agent
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// The newest `limit` journal entries, newest first.
pub async fn history(agent: &mut AgentClient<impl Channel>, limit: u32) -> Vec<JournalEntry> {
    let request = HistoryRequest { limit };
    agent
        .history(request)
        .await
        .expect("history")
        .into_inner()
        .entries
}

pub fn outcome(r: &DeployResult) -> Outcome {
    Outcome::try_from(r.outcome).expect("a known outcome")
}

/// Insists on `want`; a failure shows the result's message, which says why.
#[track_caller]
pub fn assert_outcome(r: &DeployResult, want: Outcome) {
    assert_eq!(outcome(r), want, "{}", r.message);
}

/// Insists that the result's message says each of `parts`.
#[track_caller]
pub fn assert_says(r: &DeployResult, parts: &[&str]) {
    for part in parts {
        assert!(r.message.contains(part), "{part:?} in: {}", r.message);
    }
}

/// Every event of a deploy's stream, and the result among them.
pub async fn drain(mut stream: tonic::Streaming<DeployEvent>) -> (Vec<DeployEvent>, DeployResult) {
    let mut events = Vec::new();
    while let Some(e) = stream.message().await.expect("the deploy stream") {
        events.push(e);
    }
    let result = events
        .iter()
        .find_map(|e| match &e.event {
            Some(Event::Result(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("a result event");
    (events, result)
}

/// The pull progress events, in order.
pub fn pulls(events: &[DeployEvent]) -> Vec<PullProgress> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Pull(p)) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// The phases the events name (each as often as it reports).
pub fn phases(events: &[DeployEvent]) -> Vec<Phase> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Phase(p)) => Some(Phase::try_from(p.phase).expect("a known phase")),
            _ => None,
        })
        .collect()
}
