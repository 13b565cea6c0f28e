//! The Docker engine going away and coming back while the agent keeps running: a unix-socket
//! proxy in front of dockerd (testkit::docker_proxy) cuts every connection and removes the
//! socket, as a dockerd restart does, without restarting the engine other tests share. The
//! agent process is the same one before and after (its pid is checked).
mod support;

use std::time::{Duration, Instant};

use clawops::{Client, proto};
use support::*;
use testkit::{
    agent::AgentProcess, cleanup::ProjectGuard, container::ServiceContainer,
    docker_proxy::DockerProxy, image, unique,
};

/// An agent that reaches dockerd only through `proxy`, for a project with one service `app`.
fn agent_behind(proxy: &DockerProxy, project: &str, repo: &std::path::Path) -> AgentProcess {
    AgentProcess::start(&format!(
        "docker_host = {:?}\n[app]\nrepo = {:?}\nproject = {project:?}\nservice = \"app\"\n\
         [memory]\nsample_interval_secs = 1\nmetadata_url = {NO_METADATA:?}\n",
        proxy.endpoint(),
        repo.display().to_string(),
    ))
}

/// A container of service `app` printing `line N` ten times a second.
async fn chatty(project: &str) -> image::TestImage {
    let img = image::build(&format!("clawops-test/{project}:1"), &[], r#"["/bin/sh"]"#).await;
    ServiceContainer::new(project, "app", &img.tag)
        .script("i=0; while true; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done")
        .start()
        .await;
    img
}

fn numbers(chunk: &proto::LogChunk) -> Vec<u64> {
    match &chunk.event {
        Some(proto::log_chunk::Event::Lines(batch)) => batch
            .lines
            .iter()
            // Without timestamps the agent sends runs of lines as one chunk.
            .flat_map(|l| {
                String::from_utf8_lossy(&l.data)
                    .lines()
                    .filter_map(|line| line.strip_prefix("line ").and_then(|n| n.parse().ok()))
                    .collect::<Vec<u64>>()
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn follow_request() -> proto::LogsRequest {
    proto::LogsRequest {
        tail: Some(0),
        follow: true,
        ..Default::default()
    }
}

/// Reads a follow until `n` numbered lines arrived.
async fn read_lines(stream: &mut tonic::Streaming<proto::LogChunk>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("log lines within 10s")
            .expect("the follow failed")
            .expect("the follow ended");
        got.extend(numbers(&chunk));
    }
    got
}

/// Status, History and MemoryStats answer while the engine is away, and say so.
async fn still_serving(client: &mut Client) {
    let started = Instant::now();
    let st = status(client).await;
    assert!(!st.docker_error.is_empty(), "{st:?}");
    client
        .agent
        .history(proto::HistoryRequest { limit: 5 })
        .await
        .unwrap();
    let mem = client
        .agent
        .memory_stats(proto::MemoryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!mem.docker_error.is_empty(), "{:?}", mem.docker_error);
    assert!(mem.host.unwrap().total_bytes > 0);
    // Status waits at most 3 s for the engine; an absent socket fails at once.
    assert!(started.elapsed() < Duration::from_secs(5), "{started:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerd_restart_during_a_logs_follow() {
    let project = unique("clawops-fdl");
    let _cleanup = ProjectGuard::new(&project);
    let _img = chatty(&project).await;
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::start(&dir.path().join("docker.sock"));
    let agent = agent_behind(&proxy, &project, dir.path());
    let pid = agent.pid();
    let mut client = connect(&agent).await;
    let mut follower = connect(&agent).await;
    let mut stream = follower
        .agent
        .logs(follow_request())
        .await
        .unwrap()
        .into_inner();
    let before = read_lines(&mut stream, 5).await;

    proxy.down();
    // The follower either fails with a status (the engine went away) or, if the engine is
    // back in time, carries on; it must not hang silently forever or crash the agent.
    let cut = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.message().await {
                Err(status) => return Some(status),
                Ok(None) => return None,
                Ok(Some(_)) => {}
            }
        }
    })
    .await;
    still_serving(&mut client).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.up();

    let outcome = match cut {
        Ok(Some(status)) => {
            assert!(!status.message().is_empty(), "{status:?}");
            format!("follower got {:?}: {}", status.code(), status.message())
        }
        Ok(None) => "follower ended cleanly".to_string(),
        // Still open after 15 s: it must resume now that the engine is back, in order.
        Err(_) => {
            let after = read_lines(&mut stream, 5).await;
            assert!(after[0] > *before.last().unwrap(), "{before:?} {after:?}");
            assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");
            "follower resumed in order".to_string()
        }
    };

    // A new call works at once, without restarting the agent.
    let mut tail = client
        .agent
        .logs(proto::LogsRequest {
            tail: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut tailed = Vec::new();
    while let Some(chunk) = tail.message().await.unwrap() {
        tailed.extend(numbers(&chunk));
    }
    assert_eq!(tailed.len(), 3, "{tailed:?}");
    let mut again = client
        .agent
        .logs(follow_request())
        .await
        .unwrap()
        .into_inner();
    let fresh = read_lines(&mut again, 3).await;
    assert!(fresh[0] > *before.last().unwrap());
    let st = status(&mut client).await;
    assert!(st.docker_error.is_empty(), "{}", st.docker_error);
    assert_eq!(st.containers.len(), 1);
    assert_eq!(agent.pid(), pid, "the agent was not restarted");
    report(
        "dockerd restart (proxy cut 1 s) during a Logs follow",
        1,
        &format!("nothing: {outcome}; other calls answered meanwhile; new follow works after"),
    );
}

fn latest_sample(report: &proto::MemoryReport) -> Option<proto::MemorySample> {
    report.history.as_ref()?.samples.last().cloned()
}

async fn memory(client: &mut Client) -> proto::MemoryReport {
    client
        .agent
        .memory_stats(proto::MemoryRequest {
            history: true,
            max_samples: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits for a sample newer than `after` (unix seconds) that `accept` likes.
async fn sample_after(
    client: &mut Client,
    after: i64,
    accept: impl Fn(&proto::MemorySample) -> bool,
) -> proto::MemoryReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let report = memory(client).await;
        if let Some(s) = latest_sample(&report)
            && s.at.as_ref().is_some_and(|t| t.seconds > after)
            && accept(&s)
        {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no such memory sample after {after} within 20s");
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerd_restart_during_memory_sampling() {
    let project = unique("clawops-fdm");
    let _cleanup = ProjectGuard::new(&project);
    let _img = chatty(&project).await;
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::start(&dir.path().join("docker.sock"));
    let agent = agent_behind(&proxy, &project, dir.path());
    let pid = agent.pid();
    let mut client = connect(&agent).await;

    let t0 = now();
    sample_after(&mut client, t0, |s| s.container_usage_bytes > 0).await;
    proxy.down();
    let cut_at = now();
    // Sampling goes on while the engine is away: the host's numbers, and the container's
    // from its cgroup (it still runs; routine samples do not ask the engine).
    let during = sample_after(&mut client, cut_at + 1, |s| s.available_bytes > 0).await;
    assert!(!during.docker_error.is_empty());
    assert!(during.containers.is_empty());
    let sample = latest_sample(&during).unwrap();
    assert!(sample.container_usage_bytes > 0, "{sample:?}");
    still_serving(&mut client).await;
    proxy.up();
    let back_at = now();

    let after = sample_after(&mut client, back_at, |s| s.container_usage_bytes > 0).await;
    assert!(after.docker_error.is_empty(), "{}", after.docker_error);
    assert_eq!(after.containers.len(), 1, "{:?}", after.containers);
    assert!(after.containers[0].usage_bytes > 0);
    // The events watcher reconnects too (with a backoff).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !memory(&mut client).await.events_watcher_connected {
        assert!(
            Instant::now() < deadline,
            "the events watcher did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let samples = after.history.unwrap().samples;
    let gaps = samples
        .windows(2)
        .filter_map(|w| Some(w[1].at.as_ref()?.seconds - w[0].at.as_ref()?.seconds))
        .filter(|&gap| gap > 4)
        .count();
    assert_eq!(gaps, 0, "sampling never paused: {samples:?}");
    assert_eq!(agent.pid(), pid, "the agent was not restarted");
    report(
        "dockerd restart (proxy cut ~2 s) during MemoryStats sampling (1 s interval)",
        1,
        "nothing: host and cgroup samples continued during the cut, the engine's view and the events watcher resumed after, no agent restart",
    );
}
