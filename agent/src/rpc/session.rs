//! Session (`clawops run` / `clawops exec`): one bidirectional stream per process.
use std::time::Duration;

use clawops_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::{EventStream, counted_stream};
use crate::{
    context::AgentContext,
    docker::{LogChunk, TtySize},
    events::LogStream,
    session::{self, Ending, Input, Kind, SessionRequest},
};

/// Messages in flight each way: the backpressure bound (with gRPC's own flow control, a client
/// piping 100 MB makes the agent hold a few chunks, not the 100 MB).
const CHANNEL_MESSAGES: usize = 4;
/// How long a client may take to send its `start` message.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn session(
    ctx: &AgentContext,
    req: Request<Streaming<pb::SessionInput>>,
) -> Result<Response<EventStream<pb::SessionOutput>>, Status> {
    let mut inbound = req.into_inner();
    let first = tokio::time::timeout(START_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no `start` message within 30 s"))??;
    let Some(pb::SessionInput {
        input: Some(pb::session_input::Input::Start(start)),
    }) = first
    else {
        return Err(Status::invalid_argument(
            "the first message of a session must be `start`",
        ));
    };
    let request = to_request(&ctx.config.app.service, start)?;
    // Before any Docker call: a refused session holds nothing.
    let max = ctx.config.limits.max_sessions;
    let slot = crate::limits::session_slot(&ctx.counters.sessions, max)?;
    let docker = ctx.docker.get().await?;
    let session = session::open(&ctx.config, &ctx.app, &docker, &request).await?;

    let (out_tx, out_rx) = mpsc::channel(CHANNEL_MESSAGES);
    let started = session.started();
    let started = pb::SessionStarted {
        container_id: started.container_id.clone(),
        container_name: started.container_name.clone(),
        exec_id: started.exec_id.clone().unwrap_or_default(),
    };
    // The channel is empty: this cannot wait.
    let _ = out_tx
        .send(Ok(output(pb::session_output::Output::Started(started))))
        .await;
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_MESSAGES);
    tokio::spawn(read_input(inbound, in_tx));
    tokio::spawn(async move {
        let _slot = slot;
        let (chunk_tx, chunk_rx) = mpsc::channel(CHANNEL_MESSAGES);
        let (ended, out_tx) =
            tokio::join!(session.pump(in_rx, chunk_tx), forward(chunk_rx, out_tx));
        let last = match ended {
            Ok(Ending::Exited(Some(code))) => {
                Ok(output(pb::session_output::Output::Exit(pb::SessionExit {
                    code,
                })))
            }
            Ok(Ending::Exited(None)) => Err(Status::unknown(
                "the process ended but the Docker engine reported no exit code",
            )),
            Ok(Ending::ClientGone) => return,
            Err(e) => Err(Status::from(e)),
        };
        let _ = out_tx.send(last).await;
    });
    Ok(Response::new(counted_stream(ctx, out_rx)))
}

fn to_request(default_service: &str, start: pb::SessionStart) -> Result<SessionRequest, Status> {
    let kind = match pb::SessionKind::try_from(start.kind) {
        Ok(pb::SessionKind::Run) => Kind::Run,
        Ok(pb::SessionKind::Exec) => Kind::Exec,
        Ok(pb::SessionKind::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument("session kind must be run or exec"));
        }
    };
    let service = if start.service.is_empty() {
        default_service.to_owned()
    } else {
        start.service
    };
    Ok(SessionRequest {
        kind,
        service,
        argv: start.argv,
        env: start.env,
        tty: start.tty,
        stdin: start.stdin,
        size: start.size.and_then(size),
    })
}

/// Cells beyond u16 are clamped; a zero size (unknown) is no size.
fn size(s: pb::TerminalSize) -> Option<TtySize> {
    let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
    (s.rows > 0 && s.cols > 0).then(|| TtySize {
        rows: clamp(s.rows),
        cols: clamp(s.cols),
    })
}

/// The client's messages, one at a time: reading waits while the session is busy writing the
/// previous stdin chunk, so HTTP/2 flow control slows the client down. Ends (closing stdin)
/// when the client stops sending or goes away.
async fn read_input(mut inbound: Streaming<pb::SessionInput>, tx: mpsc::Sender<Input>) {
    while let Ok(Some(msg)) = inbound.message().await {
        let item = match msg.input {
            Some(pb::session_input::Input::Stdin(data)) => Input::Stdin(data),
            Some(pb::session_input::Input::Resize(s)) => match size(s) {
                Some(s) => Input::Resize(s),
                None => continue,
            },
            Some(pb::session_input::Input::StdinEof(_)) => Input::StdinEof,
            // A second `start`, or a message from a newer client: nothing to do with it.
            Some(pb::session_input::Input::Start(_)) | None => continue,
        };
        if tx.send(item).await.is_err() {
            return;
        }
    }
}

/// Output chunks to messages until the session's output ends or the client goes away (then
/// dropping `chunks` tells the session). Hands the sender back for the final message.
async fn forward(
    mut chunks: mpsc::Receiver<LogChunk>,
    out: mpsc::Sender<Result<pb::SessionOutput, Status>>,
) -> mpsc::Sender<Result<pb::SessionOutput, Status>> {
    loop {
        let chunk = tokio::select! {
            chunk = chunks.recv() => chunk,
            _ = out.closed() => None,
        };
        let Some(chunk) = chunk else { break };
        let message = match chunk.stream {
            LogStream::Stdout => pb::session_output::Output::Stdout(chunk.data),
            LogStream::Stderr => pb::session_output::Output::Stderr(chunk.data),
        };
        if out.send(Ok(output(message))).await.is_err() {
            break;
        }
    }
    out
}

fn output(o: pb::session_output::Output) -> pb::SessionOutput {
    pb::SessionOutput { output: Some(o) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped_and_zero_is_unknown() {
        let s = |rows, cols| size(pb::TerminalSize { rows, cols });
        assert_eq!(s(0, 80), None);
        assert_eq!(s(24, 80), Some(TtySize { rows: 24, cols: 80 }));
        assert_eq!(
            s(70_000, 80),
            Some(TtySize {
                rows: u16::MAX,
                cols: 80
            })
        );
    }

    #[test]
    fn the_kind_is_required_and_the_service_defaults() {
        let start = pb::SessionStart {
            kind: pb::SessionKind::Exec as i32,
            argv: vec!["true".into()],
            ..Default::default()
        };
        let req = to_request("openclaw-gateway", start).unwrap();
        assert_eq!(req.service, "openclaw-gateway");
        assert_eq!(req.kind, Kind::Exec);
        let bad = to_request("s", pb::SessionStart::default()).unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    }
}
