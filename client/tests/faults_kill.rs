//! `kill -9` of the agent process at each phase of an Update (after the fetch, during the build,
//! while the new container is created, while the old one stops, after it stopped, during the
//! readiness wait). After a restart exactly
//! one container of the service runs and serves a healthy version (the previous one, or the
//! new one if it had been found ready), the lock is free, the journal says `interrupted`, and
//! the next update goes through. `CLAWOPS_FAULT_ROUNDS=N` repeats the table N times.
mod support;

use std::{collections::BTreeMap, time::Duration};

use clawops::proto::{self, deploy_event::Event};
use support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillAt {
    AfterFetch,
    DuringBuild,
    DuringCreate,
    DuringStop,
    AfterStop,
    DuringReadiness,
}

impl KillAt {
    const ALL: [KillAt; 6] = [
        KillAt::AfterFetch,
        KillAt::DuringBuild,
        KillAt::DuringCreate,
        KillAt::DuringStop,
        KillAt::AfterStop,
        KillAt::DuringReadiness,
    ];

    fn describe(self) -> &'static str {
        match self {
            KillAt::AfterFetch => "kill -9 after fetch (phase fetch done)",
            KillAt::DuringBuild => "kill -9 during build (first Dockerfile step line)",
            KillAt::DuringCreate => {
                "kill -9 while the new container is created (old renamed aside, running)"
            }
            KillAt::DuringStop => "kill -9 while the old container stops (phase stop started)",
            KillAt::AfterStop => "kill -9 after stop (phase stop done)",
            KillAt::DuringReadiness => "kill -9 during readiness (never-ready version)",
        }
    }

    /// The gateway mode of the version being deployed: during readiness it must never become
    /// ready, or the kill could land after the swap finished.
    fn mode(self) -> &'static str {
        match self {
            KillAt::DuringReadiness => "never-ready",
            _ => "ok",
        }
    }

    /// Whether the new version may legitimately be the one serving after the restart: only
    /// once the old container was stopped can the new one have been found ready.
    fn new_may_serve(self) -> bool {
        self == KillAt::AfterStop
    }

    fn is_moment(self, e: &proto::DeployEvent) -> bool {
        let phase = |want: proto::Phase, status: proto::PhaseStatus| match &e.event {
            Some(Event::Phase(p)) => p.phase == want as i32 && p.status == status as i32,
            _ => false,
        };
        match self {
            KillAt::AfterFetch => phase(proto::Phase::Fetch, proto::PhaseStatus::Done),
            // A Dockerfile step, not the agent's own "build context …" line: the engine builds.
            KillAt::DuringBuild => matches!(&e.event, Some(Event::Build(b)) if b.step >= 1),
            KillAt::DuringCreate => phase(proto::Phase::Create, proto::PhaseStatus::Started),
            KillAt::DuringStop => phase(proto::Phase::Stop, proto::PhaseStatus::Started),
            KillAt::AfterStop => phase(proto::Phase::Stop, proto::PhaseStatus::Done),
            KillAt::DuringReadiness => phase(proto::Phase::Readiness, proto::PhaseStatus::Started),
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    tries: usize,
    old_served: usize,
    new_served: usize,
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_every_update_phase_then_restart_leaves_one_healthy_container() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let mut agent = start_agent(&app_config(&app, 60));
    let mut client = connect(&agent).await;
    let first = update_ok(&mut client).await;
    wait_served(&app, "v1").await;
    let mut serving = ("v1".to_string(), first.to_sha);
    let mut n = 1;
    let mut tally: BTreeMap<KillAt, Tally> = BTreeMap::new();

    for round in 0..rounds() {
        for at in KillAt::ALL {
            let row_started = std::time::Instant::now();
            n += 1;
            let version = format!("v{n}");
            let sha = app
                .commit(&version, at.mode(), &format!("{version}: {at:?}"))
                .unwrap();
            let mut stream = client
                .agent
                .update(proto::UpdateRequest {
                    requested_by: format!("faults round {round}"),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            loop {
                let e = tokio::time::timeout(Duration::from_secs(120), stream.message())
                    .await
                    .unwrap_or_else(|_| panic!("{at:?}: no event for 120s"))
                    .unwrap()
                    .unwrap_or_else(|| panic!("{at:?}: the update ended early"));
                if let Some(Event::Result(r)) = &e.event {
                    panic!("{at:?}: the update finished before the moment: {r:?}");
                }
                if at.is_moment(&e) {
                    break;
                }
            }
            if at == KillAt::DuringReadiness {
                assert!(
                    app.served_version().await.is_none(),
                    "the old container is stopped during the swap"
                );
            }
            agent.kill9();
            drop(stream);

            let killed_at = std::time::Instant::now();
            agent.restart();
            client = connect(&agent).await;
            let allowed: Vec<&str> = if at.new_may_serve() {
                vec![&serving.0, &version]
            } else {
                vec![&serving.0]
            };
            let entry = last_entry(&mut client).await;
            let served = wait_served_or(
                &app,
                &allowed,
                Duration::from_secs(30),
                &format!("{at:?}: journal {entry:?}\nagent log:\n{}", agent.log()),
            )
            .await;
            let t = tally.entry(at).or_default();
            t.tries += 1;
            if served == serving.0 {
                t.old_served += 1;
            } else {
                t.new_served += 1;
            }
            the_one_gateway_or(&app, &format!("{at:?}: journal {entry:?}")).await;
            eprintln!(
                "{at:?}: serving {served} {:.1}s after the kill",
                killed_at.elapsed().as_secs_f64()
            );
            let st = status(&mut client).await;
            assert!(st.lock_holder.is_none(), "{at:?}: {:?}", st.lock_holder);
            let running = st.containers.iter().filter(|c| c.state == "running");
            assert_eq!(running.count(), 1, "{at:?}: {:?}", st.containers);
            assert_eq!(
                st.deployed_sha, serving.1,
                "{at:?}: the last healthy deploy"
            );
            assert_eq!(entry.kind, "update");
            assert_eq!(entry.result, "interrupted", "{at:?}: {entry:?}");
            if at == KillAt::DuringReadiness {
                assert!(
                    entry.message.contains("put the previous container back"),
                    "{}",
                    entry.message
                );
            }
            // The next update goes through: the interrupted commit itself, or (for the version
            // that never becomes ready) its fix.
            if at.mode() == "ok" {
                let r = update_ok(&mut client).await;
                assert_eq!(r.to_sha, sha);
                wait_served(&app, &version).await;
                serving = (version, sha);
            } else {
                n += 1;
                let fixed = format!("v{n}");
                let fixed_sha = app.commit(&fixed, "ok", &fixed).unwrap();
                update_ok(&mut client).await;
                wait_served(&app, &fixed).await;
                serving = (fixed, fixed_sha);
            }
            eprintln!(
                "{at:?} round {round}: {:.1}s",
                row_started.elapsed().as_secs_f64()
            );
        }
    }

    for (at, t) in &tally {
        report(
            at.describe(),
            t.tries,
            &format!(
                "nothing: one healthy container each time (previous version {}×, new {}×), lock free, journal interrupted, next update ok",
                t.old_served, t.new_served
            ),
        );
    }
}

/// The one window no event marks: the agent dies after renaming the old container aside but
/// before the journal names it (an OOM kill can land anywhere). The journal is written as the
/// dead agent left it; the container is moved aside by hand, running (the current order) and
/// stopped (a crash after the stop, too). The restart must find it by its aside name.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_the_rename_and_its_journal_line_is_recovered_by_name() {
    use clawops_agent::{journal::Journal, lock::Operation};
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let mut agent = start_agent(&app_config(&app, 30));
    let mut client = connect(&agent).await;
    update_ok(&mut client).await;
    wait_served(&app, "v1").await;
    let id = the_one_gateway(&app).await;
    let docker = testkit::docker::connect().await;
    let aside = format!("{}_{}-openclaw-gateway-1", &id[..12], app.project);

    for stopped in [false, true] {
        agent.kill9();
        let journal = Journal::open(&agent.state_dir()).unwrap();
        let op = Operation::new("update", "crash-sim");
        journal.begin(&op, None).unwrap();
        journal.phase(&op.id, "fetch", "done", 5, "").unwrap();
        drop(journal);
        if stopped {
            docker.stop_container(&id, None).await.unwrap();
        }
        clawops_agent::docker::Engine::new(docker.clone())
            .rename(&id, &aside)
            .await
            .unwrap();

        agent.restart();
        client = connect(&agent).await;
        wait_served(&app, "v1").await;
        assert_eq!(the_one_gateway(&app).await, id, "the same container, back");
        let entry = last_entry(&mut client).await;
        assert_eq!(entry.result, "interrupted");
        assert!(
            entry.message.contains("put the previous container back"),
            "{}",
            entry.message
        );
        assert!(status(&mut client).await.lock_holder.is_none());
    }
    app.commit("v2", "ok", "v2").unwrap();
    update_ok(&mut client).await;
    wait_served(&app, "v2").await;
    report(
        "agent crash between renaming the old container aside and journaling it (running; stopped)",
        2,
        "nothing: found by its aside name, put back under its name; next update ok",
    );
}
