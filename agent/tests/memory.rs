//! MemoryStats against real parts: the Docker engine, /proc, a GCE-like metadata server on
//! loopback (testkit::gce), and a unix-socket proxy in front of dockerd that can be cut to end
//! the events stream as a dockerd restart would (testkit::docker_proxy).
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bollard::models::ContainerStatsResponse;
use clawops_agent::{
    config::Config,
    memory::{
        self, AdviceKind, EventKind, ReportOptions,
        cgroup::{self, CgroupMounts, CgroupVersion},
        metadata::MetadataClient,
    },
};
mod memory_support;

use memory_support::{agent_with, eventually, run_container};
use testkit::docker_proxy::DockerProxy;
use testkit::gce::{E2_MICRO, FakeGce};
use tokio::net::TcpListener;

const MIB: u64 = 1 << 20;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/memory")
            .join(name),
    )
    .unwrap()
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gce_e2_micro_with_sustained_low_memory_advises_e2_small_over_grpc() {
    let gce = FakeGce::start(&E2_MICRO, true);
    let url = gce.url.clone();
    let agent = agent_with(|c| {
        c.memory.metadata_url = url;
        c.memory.metadata_timeout_ms = 5000;
        // Every host is "low" against a 1 PiB threshold; two seconds of it is "sustained".
        c.memory.low_available_mb = 1 << 30;
        c.memory.sustained_secs = 2;
    });
    let shared = agent.ctx.memory.shared().clone();
    eventually(Duration::from_secs(15), "4 samples", || {
        (shared.samples().len() >= 4).then_some(())
    })
    .await;

    // Through the real gRPC server, with the token.
    let token = "memory-test-token-0123456789";
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(clawops_agent::server::serve_tcp(
        agent.ctx.clone(),
        clawops_agent::auth::Token::new(token),
        None,
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = clawops_proto::v1::agent_client::AgentClient::new(channel);
    let mut req = tonic::Request::new(clawops_proto::v1::MemoryRequest {
        history: true,
        max_samples: 2,
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let report = client.memory_stats(req).await.unwrap().into_inner();
    let _ = stop_tx.send(());
    let _ = server.await;

    let machine = report.machine.unwrap();
    assert!(machine.on_gce);
    assert_eq!(machine.machine_type, "e2-micro");
    assert_eq!(machine.name, "openclaw-gateway");
    assert_eq!(machine.zone, "us-central1-a");
    assert_eq!(machine.project, "my-claw-project");
    let upgrade = report
        .advice
        .iter()
        .find(|a| a.kind == clawops_proto::v1::AdviceKind::Upgrade as i32)
        .unwrap_or_else(|| panic!("no upgrade advice in {:?}", report.advice));
    assert_eq!(upgrade.from_machine_type, "e2-micro");
    assert_eq!(upgrade.to_machine_type, "e2-small");
    assert_eq!(upgrade.resize_command, "clawops resize e2-small");
    assert_eq!(
        upgrade.commands,
        [
            "gcloud compute instances stop openclaw-gateway --zone us-central1-a --project my-claw-project",
            "gcloud compute instances set-machine-type openclaw-gateway --machine-type e2-small --zone us-central1-a --project my-claw-project",
            "gcloud compute instances start openclaw-gateway --zone us-central1-a --project my-claw-project",
        ]
    );
    assert_eq!(upgrade.price_before_usd_month, 6.11);
    assert_eq!(upgrade.price_after_usd_month, 12.23);
    assert!(
        upgrade.reason.contains("available memory was under"),
        "{}",
        upgrade.reason
    );
    assert!(!upgrade.downtime.is_empty());
    let history = report.history.unwrap();
    assert_eq!(history.samples.len(), 2, "downsampled to max_samples");
    assert!(history.available.unwrap().min > 0);
    assert!(report.agent_rss_bytes > 0);
    // Every request carried the header, and all four paths were asked for.
    let requests = gce.requests();
    assert!(requests.iter().all(|(_, flavor)| *flavor), "{requests:?}");
    for (path, _) in E2_MICRO {
        assert!(
            requests.iter().any(|(p, _)| p.ends_with(path)),
            "{path} not requested: {requests:?}"
        );
    }
}

#[tokio::test]
async fn metadata_unreachable_or_not_google_is_unknown_quickly() {
    // A closed port: refused at once.
    let port = testkit::free_port();
    let started = Instant::now();
    let client = MetadataClient::new(
        &format!("http://127.0.0.1:{port}/computeMetadata/v1"),
        Duration::from_millis(300),
    )
    .unwrap();
    let m = client.lookup().await;
    assert!(!m.on_gce);
    assert_eq!(
        (m.name.as_str(), m.zone.as_str(), m.machine_type.as_str()),
        ("unknown", "unknown", "unknown")
    );
    // Refused at once: well under the timeout's multiples a slow machine could add.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A server that accepts and never answers: the 300 ms timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/computeMetadata/v1", silent.local_addr().unwrap());
    let started = Instant::now();
    let m = MetadataClient::new(&url, Duration::from_millis(300))
        .unwrap()
        .lookup()
        .await;
    let took = started.elapsed();
    assert!(!m.on_gce);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(silent);

    // Something answering without GCE's Metadata-Flavor header (a proxy, a captive portal).
    let impostor = FakeGce::start(&E2_MICRO, false);
    let m = MetadataClient::new(&impostor.url, Duration::from_millis(300))
        .unwrap()
        .lookup()
        .await;
    assert_eq!(m.machine_type, "unknown");

    // The real thing, for contrast.
    let gce = FakeGce::start(&E2_MICRO, true);
    let m = MetadataClient::new(&gce.url, Duration::from_secs(5))
        .unwrap()
        .lookup()
        .await;
    assert_eq!((m.on_gce, m.machine_type.as_str()), (true, "e2-micro"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_killed_container_is_reported_with_its_events_and_advice() {
    let image = testkit::image::build(&testkit::unique("clawops-memtest"), &[], r#"["sh"]"#).await;
    // After the image, so the containers are removed (dropped) before it.
    let agent = agent_with(|_| {});
    let shared = agent.ctx.memory.shared().clone();
    let docker = testkit::docker::connect().await;
    // busybox has no allocator tool: doubling a shell variable grows sh until the limit.
    let id = run_container(
        &docker,
        &agent.project,
        &image.tag,
        "x=a; while true; do x=$x$x; done",
        Some(32 * MIB as i64),
    )
    .await;

    let events = eventually(Duration::from_secs(30), "oom and die events", || {
        let mine: Vec<_> = shared
            .events()
            .into_iter()
            .filter(|e| e.container_id == id)
            .collect();
        let oom = mine.iter().any(|e| e.kind == EventKind::Oom);
        let die = mine
            .iter()
            .any(|e| e.kind == EventKind::Die && e.exit_code == Some(137));
        (oom && die).then_some(mine)
    })
    .await;
    assert!(events.iter().all(|e| e.service == "gw"), "{events:?}");

    let report = agent.report(ReportOptions::default()).await;
    assert_eq!(report.docker_error, None);
    let c = report
        .containers
        .iter()
        .find(|c| c.id == id)
        .expect("the container is listed");
    assert!(c.oom_killed, "{c:?}");
    assert_eq!(c.exit_code, 137);
    assert!(!c.running);
    assert_eq!(c.limit, Some(32 * MIB));
    assert!(report.history.oom_events >= 1);
    let advice = report
        .advice
        .iter()
        .find(|a| a.kind == AdviceKind::RaiseLimit)
        .unwrap_or_else(|| panic!("no advice for the OOM kill: {:?}", report.advice));
    assert_eq!(advice.service.as_deref(), Some("gw"));
    assert!(advice.reason.contains("32 MiB"), "{}", advice.reason);
    assert!(
        advice.reason.contains("OOM-killed (exit 137)"),
        "{}",
        advice.reason
    );
    assert_eq!(advice.memory_after, 64 * MIB);
    // The kernel counted the kill too (where it counts them).
    if let Some(total) = report.host.oom_kills_total {
        assert!(total >= 1);
        assert!(report.host.oom_kills_since_start >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_container_usage_from_cgroup_matches_docker_stats() {
    let image = testkit::image::build(&testkit::unique("clawops-memtest"), &[], r#"["sh"]"#).await;
    let agent = agent_with(|_| {});
    let docker = testkit::docker::connect().await;
    // ~8 MiB held in a shell variable, then idle (a loop: busybox would exec a final sleep and
    // drop the variable), so two readings a moment apart agree.
    let id = run_container(
        &docker,
        &agent.project,
        &image.tag,
        "x=aaaaaaaaaaaaaaaa; i=0; while [ $i -lt 19 ]; do x=$x$x; i=$((i+1)); done; while :; do sleep 60; done",
        Some(64 * MIB as i64),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = agent.report(ReportOptions::default()).await;
    let c = report.containers.iter().find(|c| c.id == id).unwrap();
    assert!(c.running);
    assert_eq!(c.limit, Some(64 * MIB));
    assert_eq!(c.effective_limit, 64 * MIB);
    let usage = c.usage.expect("usage of a running container");
    assert!(usage > 0 && usage < 64 * MIB, "{usage}");
    let engine = clawops_agent::docker::Engine::new(docker.clone());
    let api = memory::containers::docker_stats(&engine, &id)
        .await
        .expect("docker stats");
    let diff = usage.abs_diff(api.usage);
    assert!(
        diff < 2 * MIB,
        "cgroup {usage} vs docker stats {}",
        api.usage
    );
    if CgroupMounts::detect() != CgroupMounts::default() {
        assert_eq!(c.source, Some(memory::UsageSource::Cgroup));
    }
    let pct = c.percent().unwrap();
    assert!(pct > 0.0 && pct < 100.0);
}

#[test]
fn cgroup_v1_and_v2_from_fixtures() {
    // docker stats API, cgroup v1 (captured from docker 20.10): usage − total_inactive_file.
    let v1: ContainerStatsResponse =
        serde_json::from_str(&fixture("docker-stats-v1.json")).unwrap();
    let m = v1.memory_stats.unwrap();
    let got = cgroup::from_docker_stats(m.usage, m.limit, m.stats.as_ref()).unwrap();
    assert_eq!(got.version, CgroupVersion::V1);
    assert_eq!(got.usage, 2_199_552 - 1_695_744);
    assert_eq!(got.limit, Some(64 * MIB));
    // docker stats API, cgroup v2: usage − inactive_file.
    let v2: ContainerStatsResponse =
        serde_json::from_str(&fixture("docker-stats-v2.json")).unwrap();
    let m = v2.memory_stats.unwrap();
    let got = cgroup::from_docker_stats(m.usage, m.limit, m.stats.as_ref()).unwrap();
    assert_eq!(got.version, CgroupVersion::V2);
    assert_eq!(got.usage, 485_908_480 - 35_532_800);
    assert_eq!(got.limit, Some(1_006_632_960));
    // A stopped container: docker answers an empty memory_stats.
    let stopped: ContainerStatsResponse =
        serde_json::from_str(&fixture("docker-stats-stopped.json")).unwrap();
    let m = stopped.memory_stats.unwrap();
    assert!(cgroup::from_docker_stats(m.usage, m.limit, m.stats.as_ref()).is_none());

    // The same files read from cgroup directories.
    let root = tempfile::tempdir().unwrap();
    let v1_dir = root.path().join("memory/docker/0f1e2d3c4b5a");
    std::fs::create_dir_all(&v1_dir).unwrap();
    std::fs::write(v1_dir.join("memory.usage_in_bytes"), "2199552\n").unwrap();
    std::fs::write(
        v1_dir.join("memory.limit_in_bytes"),
        "9223372036854771712\n",
    )
    .unwrap();
    std::fs::write(v1_dir.join("memory.stat"), fixture("memory.stat.v1")).unwrap();
    let got = cgroup::read_dir(CgroupVersion::V1, &v1_dir).unwrap();
    assert_eq!((got.usage, got.limit), (2_199_552 - 1_695_744, None));
    let v2_dir = root
        .path()
        .join("unified/system.slice/docker-5c8d2f7a9e1b.scope");
    std::fs::create_dir_all(&v2_dir).unwrap();
    std::fs::write(v2_dir.join("memory.current"), "485908480\n").unwrap();
    std::fs::write(v2_dir.join("memory.max"), "1006632960\n").unwrap();
    std::fs::write(v2_dir.join("memory.stat"), fixture("memory.stat.v2")).unwrap();
    let got = cgroup::read_dir(CgroupVersion::V2, &v2_dir).unwrap();
    assert_eq!(got.usage, 485_908_480 - 35_532_800);
    assert_eq!(got.limit, Some(1_006_632_960));

    // Finding the directory: /proc/<pid>/cgroup + mountinfo.
    assert_eq!(
        cgroup::memory_cgroup_of(&fixture("proc-cgroup.v1")),
        Some((CgroupVersion::V1, "/docker/0f1e2d3c4b5a".into()))
    );
    assert_eq!(
        cgroup::memory_cgroup_of(&fixture("proc-cgroup.v2")),
        Some((
            CgroupVersion::V2,
            "/system.slice/docker-5c8d2f7a9e1b.scope".into()
        ))
    );
    let hybrid = CgroupMounts::parse_mountinfo(&fixture("mountinfo.hybrid"));
    assert_eq!(
        hybrid.v1_memory,
        Some(PathBuf::from("/sys/fs/cgroup/memory"))
    );
    let unified = CgroupMounts::parse_mountinfo(
        "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 \
         rw,nsdelegate,memory_recursiveprot\n",
    );
    assert_eq!(unified.v2, Some(PathBuf::from("/sys/fs/cgroup")));
    assert_eq!(unified.v1_memory, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_wraps_in_the_running_sampler() {
    // Three seconds of history at one sample a second: a ring of three.
    let agent = agent_with(|c| c.memory.history_secs = 3);
    let shared = agent.ctx.memory.shared().clone();
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let samples = shared.samples();
    assert_eq!(samples.len(), 3, "{samples:?}");
    assert!(samples.windows(2).all(|w| w[0].at < w[1].at), "{samples:?}");
    let now = chrono::Utc::now().timestamp();
    assert!(
        now - samples[0].at <= 4,
        "the oldest samples were overwritten: {samples:?}"
    );
    let report = agent
        .report(ReportOptions {
            samples: true,
            max_samples: 0,
        })
        .await;
    assert_eq!(report.history.samples.len(), 3);
    assert_eq!(report.history.available.unwrap().count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_memory_from_real_proc() {
    let agent = agent_with(|_| {});
    let report = agent.report(ReportOptions::default()).await;
    let h = &report.host;
    assert!(h.total > 64 * MIB);
    assert!(h.available > 0 && h.available <= h.total);
    assert_eq!(h.used, h.total - h.available);
    let psi = std::fs::read_to_string("/proc/pressure/memory").is_ok();
    assert_eq!(h.pressure.is_some(), psi, "{:?}", h.pressure);
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap();
    assert_eq!(h.oom_kills_total.is_some(), vmstat.contains("oom_kill "));
    let rss = report.agent_rss.unwrap();
    assert!(rss > MIB, "{rss}");
    // Off GCE here (no metadata.google.internal): unknown, not an error.
    assert!(!report.machine.on_gce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_down_still_reports_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock").display().to_string();
    let agent = agent_with(|c| c.docker_host = Some(format!("unix://{socket}")));
    let report = agent.report(ReportOptions::default()).await;
    let err = report.docker_error.expect("a docker error");
    assert!(err.contains("nobody.sock"), "{err}");
    assert!(report.containers.is_empty());
    assert!(report.host.total > 0);
}

// ------------------------------------------------------------------ events watcher

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_survives_the_events_stream_going_away() {
    let image = testkit::image::build(&testkit::unique("clawops-memtest"), &[], r#"["sh"]"#).await;
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::start(&dir.path().join("docker.sock"));
    let endpoint = proxy.endpoint();
    let agent = agent_with(|c| c.docker_host = Some(endpoint));
    let shared = agent.ctx.memory.shared().clone();
    let docker = testkit::docker::connect().await;
    let died = |code: i64| {
        let shared = shared.clone();
        move || {
            shared
                .events()
                .iter()
                .find(|e| e.kind == EventKind::Die && e.exit_code == Some(code))
                .map(|e| e.container_id.clone())
        }
    };

    eventually(Duration::from_secs(10), "the watcher to connect", || {
        shared.watcher.connected().then_some(())
    })
    .await;
    let a = run_container(&docker, &agent.project, &image.tag, "exit 3", None).await;
    assert_eq!(
        eventually(Duration::from_secs(20), "die 3", died(3)).await,
        a
    );

    // Cut the stream and keep the engine away for a while.
    proxy.down();
    eventually(Duration::from_secs(10), "the watcher to notice", || {
        (!shared.watcher.connected()).then_some(())
    })
    .await;
    let connects = shared.watcher.connects();
    // This one dies while nobody is listening: the reconnect's `since` must replay it.
    let b = run_container(&docker, &agent.project, &image.tag, "exit 4", None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(died(4)().is_none());
    proxy.up();

    assert_eq!(
        eventually(Duration::from_secs(30), "die 4 replayed", died(4)).await,
        b
    );
    assert!(shared.watcher.connects() > connects);
    let c = run_container(&docker, &agent.project, &image.tag, "exit 5", None).await;
    assert_eq!(
        eventually(Duration::from_secs(20), "die 5 live", died(5)).await,
        c
    );
    // Replays are not recorded twice.
    let dies_of_a = shared
        .events()
        .iter()
        .filter(|e| e.container_id == a && e.kind == EventKind::Die)
        .count();
    assert_eq!(dies_of_a, 1);
}

#[test]
fn memory_config_errors_name_the_key() {
    let parse = |text: &str| {
        Config::parse(text, Path::new("agent.toml"))
            .err()
            .map(|e| e.to_string())
    };
    let err = parse("[memory]\nmetadata_url = \"https://metadata/x\"\n").unwrap();
    assert!(err.contains("memory.metadata_url"), "{err}");
    let err = parse("[memory]\nhistory_secs = 8640000\nsample_interval_secs = 1\n").unwrap();
    assert!(
        err.contains("memory.history_secs") && err.contains("sample_interval_secs"),
        "{err}"
    );
    let err = parse("[memory]\npressure_some_pct = 0\n").unwrap();
    assert!(err.contains("memory.pressure_some_pct"), "{err}");
    let err = parse("[memory]\nsustained = 300\n").unwrap();
    assert!(err.contains("sustained"), "{err}");
    assert_eq!(
        parse("[memory]\nsample_interval_secs = 5\nsustained_secs = 60\n"),
        None
    );
}
