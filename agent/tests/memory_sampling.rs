//! Routine memory samples read files only; the engine is asked again when the project's
//! containers change. Real engine, through a counting proxy (testkit::docker_proxy).
mod memory_support;

use std::time::Duration;

use memory_support::{agent_with, eventually, run_container};
use testkit::docker_proxy::DockerProxy;

const MIB: u64 = 1 << 20;

/// ~`mib` MiB held in a shell variable, then idle. A loop, not a final `sleep`: busybox sh
/// would exec that, and the variable would go with the shell.
fn holding(mib: u32) -> String {
    // 16 bytes doubled 16 times is 1 MiB.
    let doublings = 16 + mib.ilog2();
    format!(
        "x=aaaaaaaaaaaaaaaa; i=0; while [ $i -lt {doublings} ]; do x=$x$x; i=$((i+1)); done; while :; do sleep 60; done"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_read_cgroups_and_follow_container_changes() {
    let image = testkit::image::build(&testkit::unique("clawops-memtest"), &[], r#"["sh"]"#).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = DockerProxy::start(&dir.path().join("docker.sock"));
    let endpoint = proxy.endpoint();
    let agent = agent_with(|c| c.docker_host = Some(endpoint));
    let shared = agent.ctx.memory.shared().clone();
    let docker = testkit::docker::connect().await;
    let latest_usage = || shared.samples().last().and_then(|s| s.container_usage);

    run_container(&docker, &agent.project, &image.tag, &holding(8), None).await;
    eventually(
        Duration::from_secs(20),
        "a sample with the first container",
        || latest_usage().filter(|&u| u >= 8 * MIB),
    )
    .await;

    // Steady: samples keep coming (one a second) without asking the engine.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (asked, sampled) = (proxy.requests(), shared.samples().len());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(shared.samples().len() >= sampled + 3, "sampling went on");
    assert_eq!(proxy.requests(), asked, "no API call for routine samples");

    // A second container: its start event makes the next sample ask again and count it.
    let second = run_container(&docker, &agent.project, &image.tag, &holding(32), None).await;
    eventually(
        Duration::from_secs(20),
        "a sample with both containers",
        || latest_usage().filter(|&u| u >= 40 * MIB),
    )
    .await;
    assert!(proxy.requests() > asked, "the engine was asked again");

    // It goes away: its cgroup is gone, the die event arrives, the usage drops back.
    docker
        .remove_container(
            &second,
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "a sample without the second",
        || latest_usage().filter(|&u| (8 * MIB..32 * MIB).contains(&u)),
    )
    .await;
}
