//! Image mode end to end: a real registry on loopback (Debian's docker-registry), busybox
//! gateway images pushed to it with the docker CLI, and the agent pulling, no-op'ing, rolling
//! back and returning to earlier digests on the real engine.

mod support;

use std::time::{Duration, Instant};

use clawops::{Client, demo::DemoApp, proto};
use proto::deploy_event::Event;
use support::demo_app;
use testkit::{
    deploy::{assert_outcome, assert_says},
    gateway,
    registry::Registry,
};

fn image_config(app: &DemoApp, image: &str) -> clawops_agent::config::Config {
    let mut config = app.config();
    config.app.image = Some(image.to_owned());
    config.readiness.timeout_secs = 8;
    config.build.keep_images = 3;
    config
}

async fn update_events(
    client: &mut Client,
    req: proto::UpdateRequest,
) -> (Vec<proto::DeployEvent>, proto::DeployResult) {
    let stream = client.agent.update(req).await.unwrap().into_inner();
    testkit::deploy::drain(stream).await
}

async fn update(client: &mut Client, git_ref: &str) -> proto::DeployResult {
    let req = proto::UpdateRequest {
        git_ref: git_ref.to_owned(),
        ..Default::default()
    };
    client.update_to_end(req).await.unwrap()
}

async fn rollback(client: &mut Client, to: &str) -> proto::DeployResult {
    let req = proto::RollbackRequest {
        to_sha: to.to_owned(),
        ..Default::default()
    };
    client.rollback_to_end(req).await.unwrap()
}

async fn container_id(app: &DemoApp) -> String {
    testkit::gateway::container(&app.project).await.0
}

fn hex12(digest: &str) -> &str {
    &digest["sha256:".len().."sha256:".len() + 12]
}

#[tokio::test(flavor = "multi_thread")]
async fn image_mode_pulls_noops_rolls_back_and_returns_to_earlier_digests() {
    let mut registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let (name, v1) = registry.publish_new_gateway("current").await;
    let config = image_config(&app, &v1.reference);
    let mut client = clawops::local::connect_with_config(config).await.unwrap();

    // First deploy: the tag resolves to v1's digest, which is pulled with progress.
    let (events, first) = update_events(&mut client, Default::default()).await;
    assert_outcome(&first, proto::Outcome::Succeeded);
    assert_eq!(first.to_sha, v1.digest);
    assert!(first.image.ends_with(hex12(&v1.digest)), "{}", first.image);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));
    let pulls: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Pull(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let last = pulls.last().expect("pull progress events");
    assert!(last.layers_total >= 2, "{last:?}");
    // Layers this engine already holds (busybox, built by other tests) come as "Already
    // exists": bytes are checked with a layer of its own in the mid-pull test below.
    assert_eq!(last.layers_done, last.layers_total, "{last:?}");
    let phases: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Phase(p)) => Some(proto::Phase::try_from(p.phase).unwrap()),
            _ => None,
        })
        .collect();
    assert!(phases.contains(&proto::Phase::Resolve) && phases.contains(&proto::Phase::Pull));
    assert!(!phases.contains(&proto::Phase::Build), "{phases:?}");

    // The tag moves to v2: pulled and swapped.
    let v2 = registry
        .publish_gateway(&name, &["current", "v2"], "ok", "v2")
        .await;
    let second = update(&mut client, "").await;
    assert_outcome(&second, proto::Outcome::Succeeded);
    assert_eq!(
        (second.from_sha.as_str(), second.to_sha.as_str()),
        (v1.digest.as_str(), v2.digest.as_str())
    );
    assert!(second.downtime_ms > 0);
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    // Nothing new: a no-op, the container untouched. (The bench holds its speed; a bound here
    // would only measure how loaded the machine is.)
    let before = container_id(&app).await;
    let started = Instant::now();
    let noop = update(&mut client, "").await;
    let took = started.elapsed();
    assert_outcome(&noop, proto::Outcome::UpToDate);
    assert!(took < Duration::from_secs(10), "no-op took {took:?}");
    assert_eq!(container_id(&app).await, before);

    // v3 exits at start: rolled back to v2's digest, which serves again.
    let v3 = registry
        .publish_gateway(&name, &["current"], "exit", "v3")
        .await;
    let broken = update(&mut client, "").await;
    assert_outcome(&broken, proto::Outcome::RolledBack);
    assert_eq!(broken.to_sha, v3.digest);
    assert_says(&broken, &[hex12(&v2.digest)]);
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));

    // --ref DIGEST deploys that digest (already here: no download), --ref TAG resolves a tag.
    let by_digest = update(&mut client, &v1.digest).await;
    assert_outcome(&by_digest, proto::Outcome::Succeeded);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));
    let by_tag = update(&mut client, "v2").await;
    assert_outcome(&by_tag, proto::Outcome::Succeeded);
    assert_eq!(by_tag.to_sha, v2.digest);

    // Rollback to an earlier digest, by a prefix without `sha256:`.
    let back = rollback(&mut client, &hex12(&v1.digest)[..10]).await;
    assert_outcome(&back, proto::Outcome::Succeeded);
    assert_eq!(back.to_sha, v1.digest);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));

    // A bad --ref is a usage error before anything starts.
    let bad = client
        .agent
        .update(proto::UpdateRequest {
            git_ref: "Not/A:Tag".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(
        bad.message().contains("neither an image tag"),
        "{}",
        bad.message()
    );

    // The registry goes away: resolving fails clearly, nothing is stopped, v1 serves on.
    let v4 = registry.publish_gateway(&name, &["v4"], "ok", "v4").await;
    registry.stop();
    let serving = container_id(&app).await;
    let down = update(&mut client, "v4").await;
    assert_outcome(&down, proto::Outcome::Failed);
    assert_says(
        &down,
        &["could not ask the registry", "nothing was stopped"],
    );
    // Pulling a digest needs no resolution: the pull itself fails, just as clearly.
    let pull_down = update(&mut client, &v4.digest).await;
    assert_outcome(&pull_down, proto::Outcome::Failed);
    assert_says(&pull_down, &["pulling", "nothing was stopped"]);
    assert_eq!(container_id(&app).await, serving);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));

    // The journal holds digests: history shows what ran.
    let history = client
        .agent
        .history(proto::HistoryRequest { limit: 20 })
        .await
        .unwrap()
        .into_inner();
    let newest_ok = history
        .entries
        .iter()
        .find(|e| e.result == "succeeded")
        .unwrap();
    assert_eq!(newest_ok.to_sha, v1.digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compose_service_with_only_an_image_is_pulled() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let (_, v1) = registry.publish_new_gateway("1.0").await;
    // The compose file names a registry image and has no build: image mode without
    // `[app] image`.
    let compose = app.checkout.join("docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    let text = text
        .replace("${OPENCLAW_IMAGE}", &v1.reference)
        .replace("    build: .\n", "");
    std::fs::write(&compose, text).unwrap();
    let mut config = app.config();
    config.readiness.timeout_secs = 8;
    let mut client = clawops::local::connect_with_config(config).await.unwrap();
    let first = update(&mut client, "").await;
    assert_outcome(&first, proto::Outcome::Succeeded);
    assert_eq!(first.to_sha, v1.digest);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));
    let noop = update(&mut client, "").await;
    assert_outcome(&noop, proto::Outcome::UpToDate);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_registry_needs_the_auth_file() {
    let registry = Registry::start_with_auth("deployer", "pa55-w0rd");
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let (_, v1) = registry.publish_new_gateway("1.0").await;

    // Anonymous: refused, and the error says what to configure (never a secret).
    let anonymous = clawops::local::connect_with_config(image_config(&app, &v1.reference));
    let mut client = anonymous.await.unwrap();
    let refused = update(&mut client, "").await;
    assert_outcome(&refused, proto::Outcome::Failed);
    assert_says(&refused, &["auth_file"]);
    drop(client);

    let mut config = image_config(&app, &v1.reference);
    config.registry.auth_file = Some(registry.docker_config().join("config.json"));
    let mut client = clawops::local::connect_with_config(config).await.unwrap();
    let pulled = update(&mut client, "").await;
    assert_outcome(&pulled, proto::Outcome::Succeeded);
    assert!(!pulled.message.contains("pa55-w0rd"), "{}", pulled.message);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));
}

/// An image with a layer of `mib` MiB of random bytes, which no engine holds yet.
fn big_files(version: &str, mib: usize) -> Vec<testkit::image::ImageFile> {
    use std::io::Read;
    let mut noise = vec![0u8; mib * 1024 * 1024];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    let mut files = gateway::files("ok", version);
    files.push(testkit::image::ImageFile::new("big.bin", noise, 0o644));
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_stopped_mid_pull_stops_nothing_and_the_next_update_pulls() {
    let mut registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (app, _cleanup) = demo_app(dir.path());
    let (name, v1) = registry.publish_new_gateway("current").await;
    let mut client = clawops::local::connect_with_config(image_config(&app, &v1.reference))
        .await
        .unwrap();
    let first = update(&mut client, "").await;
    assert_outcome(&first, proto::Outcome::Succeeded);
    let serving = container_id(&app).await;

    // v2 carries a big layer; the registry stops as soon as the pull starts.
    let v2 = registry
        .publish(&name, &["current"], &big_files("v2", 96), gateway::CMD)
        .await;
    let started = Instant::now();
    let mut stream = client
        .agent
        .update(proto::UpdateRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut result = None;
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Phase(p))
                if p.phase == proto::Phase::Pull as i32
                    && p.status == proto::PhaseStatus::Started as i32 =>
            {
                registry.stop();
            }
            Some(Event::Result(r)) => result = Some(r),
            _ => {}
        }
    }
    let failed = result.expect("a result");
    eprintln!("the interrupted pull failed after {:?}", started.elapsed());
    assert_outcome(&failed, proto::Outcome::Failed);
    assert_says(
        &failed,
        &[
            v2.digest.as_str(),
            "Is the registry up?",
            "nothing was stopped",
        ],
    );
    assert_eq!(container_id(&app).await, serving);
    assert_eq!(app.served_version().await.as_deref(), Some("v1"));

    // The registry is back: the same update pulls every byte of the big layer and deploys v2.
    registry.restart();
    let (events, second) = update_events(&mut client, Default::default()).await;
    assert_outcome(&second, proto::Outcome::Succeeded);
    let last = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Pull(p)) => Some(p.clone()),
            _ => None,
        })
        .next_back()
        .expect("pull progress");
    assert!(last.bytes_done >= 96 * 1024 * 1024, "{last:?}");
    assert_eq!(last.bytes_done, last.bytes_total, "{last:?}");
    assert_eq!(app.served_version().await.as_deref(), Some("v2"));
}
