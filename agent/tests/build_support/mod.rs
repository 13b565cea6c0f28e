//! Shared pieces of the build tests: a busybox build context in a tempdir with a unique image
//! repository (= project), event capture, a throwaway container to read an image's files
//! through the archive API, and cleanup of every image labelled with the test's project.
#![allow(dead_code)]

use std::{collections::BTreeSet, future::Future, path::Path};

use bollard::{
    Docker,
    models::ContainerCreateBody,
    query_parameters::{
        CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
        RemoveContainerOptionsBuilder,
    },
};
use clawops_agent::{
    build::{BuildSpec, LABEL_PROJECT},
    events::{Event, EventSink},
};
use futures::StreamExt;
use tempfile::TempDir;
use tokio::sync::mpsc;

/// The fixture Dockerfile (busybox `FROM scratch`, see testkit) up to the busybox install.
pub const BASE: &str = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

/// A build context holding busybox and a Dockerfile; its project names the image repository.
pub struct Ctx {
    pub dir: TempDir,
    pub project: String,
    pub docker: Docker,
    /// The same engine through the agent's adapter, for the code under test.
    pub engine: clawops_agent::docker::Engine,
    _images: ProjectImages,
}

impl Ctx {
    pub fn new(dockerfile: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(testkit::image::busybox_path(), dir.path().join("busybox")).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
        let project = testkit::unique("clawops-buildtest");
        let docker = testkit::block_on_fresh(testkit::docker::connect());
        Self {
            dir,
            engine: clawops_agent::docker::Engine::new(docker.clone()),
            docker,
            _images: ProjectImages(project.clone()),
            project,
        }
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `<project>:latest`, optionally for a commit; small preflight thresholds so a busy test
    /// machine does not fail the tests that are not about preflight.
    pub fn spec(&self, sha: Option<&str>) -> BuildSpec {
        let mut spec = BuildSpec::new(
            self.dir.path(),
            &format!("{}:latest", self.project),
            &self.project,
        );
        spec.git_sha = sha.map(str::to_owned);
        spec.labels.insert("clawops.test".into(), "1".into());
        spec.preflight.min_free_disk_mb = 64;
        spec.preflight.min_available_memory_mb = 0;
        spec
    }
}

/// Removes every image labelled `clawops.project=<project>` (all tags, by id) on drop; Docker
/// then also deletes their untagged parents (the classic builder's intermediate images).
pub struct ProjectImages(pub String);

impl Drop for ProjectImages {
    fn drop(&mut self) {
        let project = self.0.clone();
        testkit::block_on_fresh(async move { remove_project_images(&project).await });
    }
}

pub async fn remove_project_images(project: &str) {
    testkit::cleanup::remove_images_labelled(&format!("{LABEL_PROJECT}={project}")).await;
}

pub struct Rx {
    pub rx: mpsc::UnboundedReceiver<Event>,
}

impl Rx {
    /// Everything received so far.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            out.push(e);
        }
        out
    }
}

pub fn events() -> (EventSink, Rx) {
    let (tx, rx) = mpsc::unbounded_channel();
    (EventSink::new(tx), Rx { rx })
}

pub fn discard() -> EventSink {
    EventSink::discard()
}

/// The text of the build lines among `events`.
pub fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Build(b) => Some(b.line.clone()),
            _ => None,
        })
        .collect()
}

/// A Docker client speaking API 1.30, older than BuildKit.
pub fn old_api_docker() -> Docker {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| h.starts_with("unix://"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    Docker::connect_with_unix(
        &socket,
        120,
        &bollard::ClientVersion {
            major_version: 1,
            minor_version: 30,
        },
    )
    .unwrap()
}

/// Runs `f` with a (never started) container created from `image`, then removes it, also when
/// `f` panics.
pub async fn with_container<F, Fut, T>(ctx: &Ctx, image: &str, f: F) -> T
where
    F: FnOnce(Docker, String) -> Fut,
    Fut: Future<Output = T>,
{
    let name = testkit::unique(&format!("{}-c", ctx.project));
    let created = ctx
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            ContainerCreateBody {
                image: Some(image.to_owned()),
                cmd: Some(vec!["/bin/true".into()]),
                labels: Some([("clawops.test".to_string(), "1".to_string())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let _guard = ContainerGuard(created.id.clone());
    f(ctx.docker.clone(), created.id).await
}

struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let id = self.0.clone();
        testkit::block_on_fresh(async move {
            let docker = testkit::docker::connect().await;
            let _ = docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
        });
    }
}

/// Paths in the container's filesystem under `path`, as the archive API returns them.
pub async fn archive_paths(docker: &Docker, id: &str, path: &str) -> BTreeSet<String> {
    let mut bytes = Vec::new();
    let mut stream = docker.download_from_container(
        id,
        Some(
            DownloadFromContainerOptionsBuilder::default()
                .path(path)
                .build(),
        ),
    );
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    let mut archive = tar::Archive::new(&bytes[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            e.path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned()
        })
        .collect()
}

pub fn file_exists(dir: &Path, rel: &str) -> bool {
    dir.join(rel).exists()
}
