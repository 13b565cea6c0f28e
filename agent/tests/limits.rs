//! Server limits (issue 13.5) against the real engine: an oversized `requested_by` is refused
//! before anything is locked or journaled; log follows beyond the configured number get
//! RESOURCE_EXHAUSTED; check-config lists the limits.
use std::{path::Path, sync::Arc, time::Duration};

use clawops_agent::{config::Config, context::AgentContext, journal::Journal, rpc::AgentService};
use clawops_proto::v1::{self as pb, agent_server::Agent};
use testkit::{cleanup::ProjectGuard, container::ServiceContainer, image, unique};
use tonic::{Code, Request};

const SERVICE: &str = "openclaw-gateway";

fn context(root: &Path, project: &str, limits: &str) -> Arc<AgentContext> {
    std::fs::create_dir_all(root.join("repo")).unwrap();
    let mut toml = format!(
        "state_dir = \"{state}\"\n[app]\nrepo = \"{repo}\"\nproject = \"{project}\"\n",
        state = root.join("state").display(),
        repo = root.join("repo").display(),
    );
    if !limits.is_empty() {
        toml.push_str(&format!("[limits]\n{limits}\n"));
    }
    let config = Config::parse(&toml, Path::new("agent.toml")).unwrap();
    let app = config.resolve_app().unwrap();
    let journal = Journal::open(&config.state_dir).unwrap();
    AgentContext::new(config, app, journal)
}

#[tokio::test]
async fn oversized_requested_by_is_refused_and_not_journaled() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(tmp.path(), &unique("lim"), "");
    let svc = AgentService::new(ctx.clone());
    let huge = "x".repeat(1024 * 1024);
    let codes = [
        svc.up(Request::new(pb::UpRequest {
            requested_by: huge.clone(),
            ..Default::default()
        }))
        .await
        .err(),
        svc.update(Request::new(pb::UpdateRequest {
            requested_by: huge.clone(),
            ..Default::default()
        }))
        .await
        .err(),
        svc.build(Request::new(pb::BuildRequest {
            requested_by: huge.clone(),
            ..Default::default()
        }))
        .await
        .err(),
        svc.rollback(Request::new(pb::RollbackRequest {
            requested_by: huge.clone(),
            ..Default::default()
        }))
        .await
        .err(),
    ];
    for status in codes {
        let status = status.expect("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("at most 256"), "{status:?}");
        assert!(status.message().len() < 200);
    }
    assert!(ctx.journal.entries(10).is_empty());
    assert!(ctx.lock.holder().is_none());
    let journal = std::fs::metadata(ctx.journal.path()).unwrap().len();
    assert_eq!(journal, 0);
}

fn follow() -> Request<pb::LogsRequest> {
    Request::new(pb::LogsRequest {
        follow: true,
        tail: Some(1),
        ..Default::default()
    })
}

#[tokio::test]
async fn log_follows_beyond_the_limit_are_refused() {
    let project = unique("lim");
    let _guard = ProjectGuard::new(&project);
    let tag = format!("{project}:latest");
    let img = image::build(&tag, &[], "[\"/bin/sleep\", \"3600\"]").await;
    ServiceContainer::new(&project, SERVICE, &img.tag)
        .start()
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(tmp.path(), &project, "max_log_follows = 2");
    let svc = AgentService::new(ctx.clone());

    let first = svc.logs(follow()).await.unwrap();
    let _second = svc.logs(follow()).await.unwrap();
    let err = svc.logs(follow()).await.err().expect("third refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("max_log_follows"), "{err:?}");
    // Not following is not limited.
    svc.logs(Request::new(pb::LogsRequest::default()))
        .await
        .unwrap();

    // A follow that ends gives its slot back.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match svc.logs(follow()).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn check_config_lists_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[limits]\nmax_log_follows = 3\n[snapshots]\nmax_mb = 500\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(testkit::agent::agent_binary())
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "[limits]",
        "max_requested_by_bytes = 256",
        "max_log_follows = 3",
        "max_streams_per_connection = 32",
        "max_requests_per_connection = 32",
        "journal_max_mb = 8",
        "max_mb = 500",
    ] {
        assert!(stdout.contains(want), "{want} missing:\n{stdout}");
    }

    std::fs::write(&config, "[limits]\nmax_streams_per_connection = 0\n").unwrap();
    let out = std::process::Command::new(testkit::agent::agent_binary())
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_streams_per_connection"));
}
