//! Many clients at once against one agent process, each on its own connection: read-only calls
//! keep working while an Update runs, and concurrent Updates are single-flight (one runs, the
//! others get ABORTED naming it).
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use clawops::{Client, proto};
use support::*;

/// One read-only call of kind `i % 4`; returns its name, and whether Status saw a lock holder.
async fn read_only(client: &mut Client, i: usize) -> Result<(&'static str, bool), tonic::Status> {
    match i % 4 {
        0 => {
            let s = client.agent.status(proto::StatusRequest {}).await?;
            Ok(("Status", s.into_inner().lock_holder.is_some()))
        }
        1 => {
            client
                .agent
                .history(proto::HistoryRequest { limit: 20 })
                .await?;
            Ok(("History", false))
        }
        2 => {
            let mut stream = client
                .agent
                .logs(proto::LogsRequest {
                    tail: Some(20),
                    ..Default::default()
                })
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
            Ok(("Logs", false))
        }
        _ => {
            client
                .agent
                .memory_stats(proto::MemoryRequest {
                    history: true,
                    max_samples: 50,
                })
                .await?;
            Ok(("MemoryStats", false))
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_clients_nineteen_readers_and_single_flight_updates() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let agent = start_agent(&app_config(&app, 30));
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(&agent).await);
    }
    update_ok(&mut clients[0]).await;
    wait_served(&app, "v1").await;

    // 1 updater + 19 readers, each reader calling in a loop until the update has finished.
    app.commit("v2", "ok", "v2").unwrap();
    let mut updater = clients.remove(0);
    let stream = updater
        .agent
        .update(proto::UpdateRequest {
            requested_by: "faults-updater".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The call returned a stream: the update holds the lock from here on.
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let done = done.clone();
            tokio::spawn(async move {
                let (mut calls, mut saw_lock, mut kinds) = (0usize, false, Vec::new());
                let mut k = i;
                while !done.load(Ordering::SeqCst) {
                    match read_only(&mut client, k).await {
                        Ok((kind, locked)) => {
                            calls += 1;
                            saw_lock |= locked;
                            if !kinds.contains(&kind) {
                                kinds.push(kind);
                            }
                        }
                        Err(e) => panic!("reader {i}, call {calls}: {e:?}"),
                    }
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (client, calls, saw_lock, kinds)
            })
        })
        .collect();
    let result = clawops::calls::result_of(stream).await.unwrap();
    done.store(true, Ordering::SeqCst);
    assert_eq!(outcome(&result), proto::Outcome::Succeeded, "{result:?}");
    let mut clients = vec![updater];
    let (mut total, mut saw_lock) = (0, false);
    for r in readers {
        let (client, calls, locked, kinds) = r.await.expect("a reader failed");
        assert!(calls >= 1, "every reader called during the update");
        assert_eq!(kinds.len(), calls.min(4), "{kinds:?}");
        total += calls;
        saw_lock |= locked;
        clients.push(client);
    }
    assert!(saw_lock, "Status showed the update holding the lock");
    wait_served(&app, "v2").await;
    report(
        "20 concurrent clients: 19 readers (Status/History/Logs/MemoryStats) during 1 Update",
        total,
        "nothing: every read-only call succeeded; the update succeeded",
    );

    // 5 concurrent Updates: exactly one runs, the others are told which one.
    app.commit("v3", "ok", "v3").unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(5));
    let attempts: Vec<_> = clients
        .into_iter()
        .take(5)
        .enumerate()
        .map(|(i, mut client)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let call = client
                    .agent
                    .update(proto::UpdateRequest {
                        requested_by: format!("faults-{i}"),
                        ..Default::default()
                    })
                    .await;
                match call {
                    Ok(stream) => Ok(clawops::calls::result_of(stream.into_inner())
                        .await
                        .unwrap()),
                    Err(status) => Err(status),
                }
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refused = Vec::new();
    for a in attempts {
        match a.await.unwrap() {
            Ok(result) => winners.push(result),
            Err(status) => refused.push(status),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update runs: {refused:?}");
    let winner = &winners[0];
    assert_eq!(outcome(winner), proto::Outcome::Succeeded, "{winner:?}");
    assert_eq!(refused.len(), 4);
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
        assert!(
            status.message().contains(&winner.operation_id) && status.message().contains("update"),
            "the refusal names the running update {}: {}",
            winner.operation_id,
            status.message()
        );
    }
    wait_served(&app, "v3").await;
    the_one_gateway(&app).await;
    report(
        "5 concurrent Updates",
        5,
        "nothing: exactly 1 ran (succeeded), 4 got ABORTED naming it",
    );
}
