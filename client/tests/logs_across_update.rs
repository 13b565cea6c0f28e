//! `logs -f` keeps following the gateway when an update replaces its container.
use std::time::Duration;

use clawops::{demo::DemoApp, proto};
use testkit::cleanup::AppGuard;

#[tokio::test(flavor = "multi_thread")]
async fn follow_survives_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let app = DemoApp::create(dir.path(), &testkit::unique("l")[2..]).unwrap();
    let _cleanup = AppGuard::new(&app.project, &app.image_repo);
    let mut client = clawops::local::connect_with_config(app.config())
        .await
        .unwrap();
    let update = |mut c: clawops::Client| async move {
        c.update_to_end(proto::UpdateRequest::default())
            .await
            .unwrap()
            .outcome
    };
    assert_eq!(
        update(client.clone()).await,
        proto::Outcome::Succeeded as i32
    );

    let mut follow = client
        .agent
        .logs(proto::LogsRequest {
            follow: true,
            all: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    app.commit("v2", "ok", "v2").unwrap();
    let updater = tokio::spawn(update(client.clone()));

    let mut notice = None;
    let read = async {
        loop {
            let chunk = follow.message().await.unwrap().expect("follow ended");
            match chunk.event {
                Some(proto::log_chunk::Event::Notice(n)) => notice = Some(n),
                Some(proto::log_chunk::Event::Lines(b))
                    if b.lines.iter().any(|l| {
                        String::from_utf8_lossy(&l.data).contains("starting openclaw gateway v2")
                    }) =>
                {
                    return;
                }
                Some(proto::log_chunk::Event::Lines(_)) => {}
                None => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the follower never showed the new container's output");
    assert!(
        notice.as_deref().is_some_and(|n| n.contains("recreated")),
        "{notice:?}"
    );
    assert_eq!(updater.await.unwrap(), proto::Outcome::Succeeded as i32);
    drop(follow);
    for _ in 0..50 {
        let s = client
            .agent
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.active_log_follows == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the follow task outlived its client");
}
