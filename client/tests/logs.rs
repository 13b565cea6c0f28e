//! Logs against containers whose output the test controls, with the agent in-process.

mod support;

use std::time::Duration;

use bollard::query_parameters::{RenameContainerOptionsBuilder, StopContainerOptionsBuilder};
use clawops::{Client, proto};
use clawops_agent::config::Config;
use testkit::{cleanup::ProjectGuard, container::ServiceContainer, image, unique};

#[derive(Debug)]
struct Line {
    stream: i32,
    text: String,
    ts: Option<prost_types::Timestamp>,
}

async fn agent(project: &str, dir: &std::path::Path) -> Client {
    let mut config = Config {
        state_dir: dir.join("state"),
        ..Config::default()
    };
    config.app.repo = Some(dir.to_owned());
    config.app.project = Some(project.to_owned());
    config.app.service = "app".into();
    clawops::local::connect_with_config(config).await.unwrap()
}

fn request() -> proto::LogsRequest {
    proto::LogsRequest {
        all: true,
        ..Default::default()
    }
}

async fn collect(client: &mut Client, req: proto::LogsRequest) -> Result<Vec<Line>, tonic::Status> {
    let mut stream = client.agent.logs(req).await?.into_inner();
    let mut lines = Vec::new();
    while let Some(chunk) = stream.message().await? {
        if let Some(proto::log_chunk::Event::Lines(batch)) = chunk.event {
            for l in batch.lines {
                // Without timestamps, runs of lines arrive as one chunk.
                for text in String::from_utf8_lossy(&l.data).lines() {
                    lines.push(Line {
                        stream: l.stream,
                        text: text.to_owned(),
                        ts: l.timestamp,
                    });
                }
            }
        }
    }
    Ok(lines)
}

fn texts(lines: &[Line]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

fn rfc3339(ts: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

async fn wait_for_line(client: &mut Client, text: &str) {
    for _ in 0..100 {
        let lines = collect(client, request()).await.unwrap();
        if lines.iter().any(|l| l.text == text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{text:?} never appeared in the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_since_until_grep_timestamps_and_streams() {
    let project = unique("clawops-logs");
    let _cleanup = ProjectGuard::new(&project);
    let dir = tempfile::tempdir().unwrap();
    let img = image::build(&format!("clawops-test/{project}:1"), &[], r#"["/bin/sh"]"#).await;
    ServiceContainer::new(&project, "app", &img.tag)
        .script(
            "for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; done; sleep 1.5; \
             echo late 1; echo late 2; exec sleep 600",
        )
        .start()
        .await;
    let mut client = agent(&project, dir.path()).await;
    wait_for_line(&mut client, "late 2").await;

    let all = collect(
        &mut client,
        proto::LogsRequest {
            timestamps: true,
            ..request()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 12, "{:?}", texts(&all));
    let stderr: Vec<_> = all
        .iter()
        .filter(|l| l.stream == proto::OutputStream::Stderr as i32)
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(stderr, ["err 1", "err 2", "err 3", "err 4", "err 5"]);
    assert!(all.iter().all(|l| l.ts.is_some()));
    let without_ts = collect(&mut client, request()).await.unwrap();
    assert!(without_ts.iter().all(|l| l.ts.is_none()));

    let tail = collect(
        &mut client,
        proto::LogsRequest {
            tail: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(texts(&tail), ["late 1", "late 2"]);
    let default_tail = collect(&mut client, proto::LogsRequest::default())
        .await
        .unwrap();
    assert_eq!(default_tail.len(), 12, "default tail is 100");

    let late1 = all.iter().find(|l| l.text == "late 1").unwrap();
    let since = collect(
        &mut client,
        proto::LogsRequest {
            since: rfc3339(late1.ts.as_ref().unwrap()),
            ..request()
        },
    )
    .await
    .unwrap();
    assert_eq!(texts(&since), ["late 1", "late 2"]);
    // stdout and stderr are separate pipes, stamped as dockerd reads them: take the newest
    // stamp of the early lines rather than assuming their order.
    let early_end = all
        .iter()
        .filter(|l| !l.text.starts_with("late"))
        .filter_map(|l| l.ts)
        .max_by_key(|t| (t.seconds, t.nanos))
        .unwrap();
    let until = collect(
        &mut client,
        proto::LogsRequest {
            until: rfc3339(&early_end),
            ..request()
        },
    )
    .await
    .unwrap();
    assert_eq!(until.len(), 10, "{:?}", texts(&until));
    let recent = collect(
        &mut client,
        proto::LogsRequest {
            since: "10m".into(),
            ..request()
        },
    )
    .await
    .unwrap();
    assert_eq!(recent.len(), 12);

    let grep = collect(
        &mut client,
        proto::LogsRequest {
            grep: "^(late|err) [12]$".into(),
            ..request()
        },
    )
    .await
    .unwrap();
    assert_eq!(texts(&grep), ["err 1", "err 2", "late 1", "late 2"]);

    let bad = collect(
        &mut client,
        proto::LogsRequest {
            grep: "(".into(),
            ..request()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("--grep"));
    let bad = collect(
        &mut client,
        proto::LogsRequest {
            since: "yesterday".into(),
            ..request()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("RFC 3339"));
    let missing = collect(
        &mut client,
        proto::LogsRequest {
            service: "nope".into(),
            ..request()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(missing.message().contains("clawops up"));
}

async fn follow_count(client: &mut Client) -> u32 {
    support::status(client).await.active_log_follows
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_switches_to_the_recreated_container_and_stops_when_the_client_leaves() {
    let project = unique("clawops-follow");
    let _cleanup = ProjectGuard::new(&project);
    let dir = tempfile::tempdir().unwrap();
    let img = image::build(&format!("clawops-test/{project}:1"), &[], r#"["/bin/sh"]"#).await;
    let first = ServiceContainer::new(&project, "app", &img.tag)
        .script("i=0; while true; do i=$((i+1)); echo old $i; sleep 0.2; done")
        .start()
        .await;
    let mut client = agent(&project, dir.path()).await;
    let mut stream = client
        .agent
        .logs(proto::LogsRequest {
            follow: true,
            tail: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen_old = 0;
    while seen_old < 3 {
        if let Some(proto::log_chunk::Event::Lines(b)) =
            stream.message().await.unwrap().unwrap().event
        {
            seen_old += b.lines.len();
        }
    }
    assert_eq!(follow_count(&mut client).await, 1);

    // What an update does: stop the old container, keep it under another name, start a new one.
    let docker = testkit::docker::connect().await;
    docker
        .stop_container(
            &first,
            Some(StopContainerOptionsBuilder::default().t(1).build()),
        )
        .await
        .unwrap();
    docker
        .rename_container(
            &first,
            RenameContainerOptionsBuilder::default()
                .name(&format!("{project}-app-previous"))
                .build(),
        )
        .await
        .unwrap();
    ServiceContainer::new(&project, "app", &img.tag)
        .script("i=0; while true; do i=$((i+1)); echo new $i; sleep 0.2; done")
        .start()
        .await;

    let mut notice = None;
    let mut new_lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while new_lines.len() < 2 {
        let msg = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the follower did not switch to the new container")
            .unwrap()
            .unwrap();
        match msg.event {
            Some(proto::log_chunk::Event::Notice(n)) => notice = Some(n),
            Some(proto::log_chunk::Event::Lines(b)) => {
                for l in b.lines {
                    let text = String::from_utf8_lossy(&l.data).to_string();
                    if text.starts_with("new") {
                        assert!(notice.is_some(), "new lines before the notice");
                        new_lines.push(text);
                    }
                }
            }
            None => {}
        }
    }
    assert!(notice.unwrap().contains("recreated"));
    assert!(new_lines[0].starts_with("new 1"), "{new_lines:?}");

    // The client leaves: the agent's follow task ends (no leaked tasks).
    drop(stream);
    for _ in 0..50 {
        if follow_count(&mut client).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the follow task outlived its client");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_reattach_stops_with_the_container() {
    let project = unique("clawops-noreattach");
    let _cleanup = ProjectGuard::new(&project);
    let dir = tempfile::tempdir().unwrap();
    let img = image::build(&format!("clawops-test/{project}:1"), &[], r#"["/bin/sh"]"#).await;
    ServiceContainer::new(&project, "app", &img.tag)
        .script("echo one; sleep 1; echo two")
        .start()
        .await;
    let mut client = agent(&project, dir.path()).await;
    let mut stream = client
        .agent
        .logs(proto::LogsRequest {
            follow: true,
            no_reattach: true,
            ..request()
        })
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    let mut notice = String::new();
    let read = async {
        while let Some(chunk) = stream.message().await.unwrap() {
            match chunk.event {
                Some(proto::log_chunk::Event::Lines(b)) => {
                    lines.extend(b.lines.into_iter().flat_map(|l| {
                        String::from_utf8_lossy(&l.data)
                            .lines()
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    }))
                }
                Some(proto::log_chunk::Event::Notice(n)) => notice = n,
                None => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("follow ended with the container");
    assert_eq!(lines, ["one", "two"]);
    assert!(notice.contains("--no-reattach"), "{notice}");
}
