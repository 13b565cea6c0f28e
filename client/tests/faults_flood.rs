//! Abuse that must not hurt the agent: floods of calls without a token, with a wrong token, and
//! of connections that do not speak HTTP/2, while an operator's authenticated calls keep their
//! latency; and a container printing a 1 MiB line without a newline.
mod support;

use std::time::{Duration, Instant};

use clawops::{Client, proto};
use support::*;
use testkit::{
    agent::AgentProcess, cleanup::ProjectGuard, container::ServiceContainer, image, unique,
};
use tokio::io::AsyncWriteExt;

const FLOOD_TASKS: usize = 8;
const CALLS_PER_TASK: usize = 250;
/// 250 calls × 16 ms ≈ 4 s per task: 2000 calls in a few seconds, not a CPU-starving storm
/// (that would measure the scheduler, not the agent).
const FLOOD_PACE: Duration = Duration::from_millis(16);
const GARBAGE_CONNECTIONS: usize = 200;

fn repo_agent(project: &str, repo: &std::path::Path) -> AgentProcess {
    AgentProcess::start(&format!(
        "[app]\nrepo = {:?}\nproject = {project:?}\nservice = \"app\"\n\
         [memory]\nmetadata_url = {NO_METADATA:?}\n",
        repo.display().to_string(),
    ))
}

/// Authenticated Status calls, one after the other, until `until` says stop (at least `min`).
async fn timed_status_calls(
    client: &mut Client,
    min: usize,
    until: impl Fn() -> bool,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    while samples.len() < min || !until() {
        let t = Instant::now();
        status(client).await;
        samples.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    samples
}

/// A client with no token at all: a plain channel, no interceptor.
async fn anonymous(
    agent: &AgentProcess,
) -> proto::agent_client::AgentClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(agent.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    proto::agent_client::AgentClient::new(channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_floods_do_not_slow_authenticated_calls() {
    let dir = tempfile::tempdir().unwrap();
    let agent = repo_agent(&unique("clawops-flood"), dir.path());
    let mut operator = connect(&agent).await;
    // Warm up, then the baseline.
    timed_status_calls(&mut operator, 20, || true).await;
    let mut quiet = timed_status_calls(&mut operator, 200, || true).await;
    let base = p50(&mut quiet);

    let started = Instant::now();
    let mut flood = Vec::new();
    for t in 0..FLOOD_TASKS {
        let wrong = t % 2 == 1;
        let mut bad = if wrong {
            Some(connect_with(&agent, "wrong-token-0123456789abcdef").await)
        } else {
            None
        };
        let mut anon = anonymous(&agent).await;
        flood.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLOOD_PACE);
            let mut refused = 0;
            for i in 0..CALLS_PER_TASK {
                tick.tick().await;
                let result = match (&mut bad, i % 2) {
                    (Some(bad), 0) => bad.agent.status(proto::StatusRequest {}).await.map(|_| ()),
                    (Some(bad), _) => bad
                        .agent
                        .update(proto::UpdateRequest::default())
                        .await
                        .map(|_| ()),
                    (None, 0) => anon.status(proto::StatusRequest {}).await.map(|_| ()),
                    (None, _) => anon
                        .history(proto::HistoryRequest { limit: 1 })
                        .await
                        .map(|_| ()),
                };
                match result {
                    Err(s) if s.code() == tonic::Code::Unauthenticated => refused += 1,
                    other => panic!("flood call {i} was not refused: {other:?}"),
                }
            }
            refused
        }));
    }
    // Connections that send garbage instead of HTTP/2, then hang up.
    let addr = agent.addr;
    let garbage = tokio::spawn(async move {
        let mut sent = 0;
        for i in 0..GARBAGE_CONNECTIONS {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                let junk: Vec<u8> = (0..512).map(|b| (b * 7 + i) as u8).collect();
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
                let _ = s.write_all(&junk).await;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        sent
    });
    let flood_done = || flood_finished(started);
    let mut loaded = timed_status_calls(&mut operator, 100, flood_done).await;
    let mut refused = 0;
    for f in flood {
        refused += f.await.expect("a flood task failed");
    }
    let garbage_sent = garbage.await.unwrap();
    let flood_secs = started.elapsed().as_secs_f64();
    let under_flood = p50(&mut loaded);
    println!(
        "authenticated Status p50: {base:?} quiet, {under_flood:?} under the flood \
         ({refused} refused calls + {garbage_sent} garbage connections in {flood_secs:.1}s)"
    );
    assert_eq!(refused, FLOOD_TASKS * CALLS_PER_TASK);
    // A correctness bound, not a benchmark: generous factor and slack (the flood and the
    // other tests share two cores with the agent), with an absolute ceiling.
    assert!(
        under_flood < base * 10 + Duration::from_millis(20)
            && under_flood < Duration::from_millis(100),
        "Status p50 {base:?} → {under_flood:?} under the flood"
    );
    // And the agent is still fine afterwards.
    status(&mut operator).await;
    report(
        &format!(
            "unauthenticated + wrong-token flood ({} calls, {FLOOD_TASKS} tasks, {flood_secs:.0}s) + {GARBAGE_CONNECTIONS} garbage connections",
            FLOOD_TASKS * CALLS_PER_TASK
        ),
        FLOOD_TASKS * CALLS_PER_TASK + GARBAGE_CONNECTIONS,
        &format!(
            "nothing: all refused as UNAUTHENTICATED; authenticated Status p50 {:.2} ms → {:.2} ms",
            base.as_secs_f64() * 1e3,
            under_flood.as_secs_f64() * 1e3
        ),
    );
}

/// The flood's tasks run ~4 s; measure the operator's calls for that long.
fn flood_finished(started: Instant) -> bool {
    started.elapsed() >= FLOOD_PACE * CALLS_PER_TASK as u32
}

const MIB: usize = 1024 * 1024;
/// The size of each of the two lines the container prints without a newline: 1 MiB, or
/// `CLAWOPS_BIG_LINE_MIB` (bigger lines show how large one Logs message can get).
fn line_size() -> usize {
    std::env::var("CLAWOPS_BIG_LINE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        * MIB
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_mib_line_without_newline_is_logged_and_the_agent_stays_responsive() {
    let line = line_size();
    let project = unique("clawops-bigline");
    let _cleanup = ProjectGuard::new(&project);
    let dir = tempfile::tempdir().unwrap();
    let img = image::build(&format!("clawops-test/{project}:1"), &[], r#"["/bin/sh"]"#).await;
    // Wait a moment so a follower is attached before the line is printed; then the line, with
    // no newline, twice (once to a follower, once after it); then idle.
    ServiceContainer::new(&project, "app", &img.tag)
        .script(&format!(
            "sleep 2; head -c {line} /dev/zero | tr '\\0' x; sleep 1; \
             head -c {line} /dev/zero | tr '\\0' y; exec sleep 600"
        ))
        .start()
        .await;
    let agent = repo_agent(&project, dir.path());
    let mut client = connect(&agent).await;
    let mut follower = connect(&agent).await;

    let mut stream = follower
        .agent
        .logs(proto::LogsRequest {
            all: true,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let follow = tokio::spawn(async move {
        let (mut bytes, mut chunks) = (Vec::new(), 0);
        while bytes.len() < 2 * line {
            let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .expect("log data within 30s")
                .unwrap()
            else {
                break;
            };
            if let Some(proto::log_chunk::Event::Lines(batch)) = chunk.event {
                for l in batch.lines {
                    chunks += 1;
                    bytes.extend_from_slice(&l.data);
                }
            }
        }
        (bytes, chunks)
    });
    // Status keeps answering quickly while the big line streams.
    let mut latencies = Vec::new();
    while !follow.is_finished() && latencies.len() < 2000 {
        let t = Instant::now();
        status(&mut client).await;
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (followed, chunks) = follow.await.unwrap();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    assert!(worst < Duration::from_secs(3), "Status took {worst:?}");
    assert_eq!(followed.len(), 2 * line, "both lines, whole");
    assert!(followed[..line].iter().all(|&b| b == b'x'));
    assert!(followed[line..].iter().all(|&b| b == b'y'));

    // Not following: the same bytes, in chunks of at most 16 KiB (docker's line limit).
    let mut stream = client
        .agent
        .logs(proto::LogsRequest {
            all: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut all, mut largest_line, mut largest_message) = (Vec::new(), 0, 0);
    while let Some(chunk) = stream.message().await.unwrap() {
        if let Some(proto::log_chunk::Event::Lines(batch)) = chunk.event {
            let mut size = 0;
            for l in batch.lines {
                largest_line = largest_line.max(l.data.len());
                size += l.data.len();
                all.extend_from_slice(&l.data);
            }
            largest_message = largest_message.max(size);
        }
    }
    assert_eq!(all, followed);
    println!("largest line chunk {largest_line} B, largest message {largest_message} B");
    // gRPC's default message limit in other clients (grpcurl, grpcio) is 4 MiB.
    assert!(largest_message <= 4 * MIB, "{largest_message}");
    status(&mut client).await;
    report(
        &format!(
            "a container printing {} MiB lines without newline (×2), followed and tailed",
            line / MIB
        ),
        2,
        &format!(
            "nothing: all {} MiB delivered, followed ({chunks} chunks) and tailed (largest message \
             {largest_message} B); Status worst {:.0} ms meanwhile",
            2 * line / MIB,
            worst.as_secs_f64() * 1e3
        ),
    );
}
