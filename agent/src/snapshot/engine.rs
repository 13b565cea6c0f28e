//! The Docker side of snapshots. The agent runs unprivileged, so it cannot read state files
//! the gateway made private nor write into a read-only home; the engine runs as root and
//! reaches every bind-mounted directory through the archive API of a container that mounts it,
//! also a stopped or never-started one.
use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::SnapshotError;
use crate::docker::{
    Engine, LABEL_PROJECT, LABEL_SERVICE, ListFilter, TempContainer,
    models::{ContainerCreateBody, HealthConfig, HostConfig, Mount, MountType},
};

/// Marks the short-lived containers snapshots create, so leftovers can be found.
pub(super) const LABEL_HELPER: &str = "clawops.snapshot-helper";
/// Where a helper container mounts the directory it serves.
pub(super) const HELPER_PATH: &str = "/clawops-state";

/// A container with its bind mounts, as the engine lists it.
#[derive(Debug, Clone)]
pub(super) struct Mounted {
    pub id: String,
    pub name: String,
    pub service: Option<String>,
    pub state: String,
    pub image_id: String,
    /// (host source, container destination, read-write)
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
}

impl Mounted {
    pub fn active(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused" | "restarting")
    }

    /// Whether a writable mount of this container holds `dir`, lies inside it, or contains it.
    pub fn writes(&self, dir: &Path) -> bool {
        self.mounts
            .iter()
            .any(|(src, _, rw)| *rw && (dir.starts_with(src) || src.starts_with(dir)))
    }
}

/// Containers (running or not), all of them or those of one compose project.
pub(super) async fn containers(
    docker: &Engine,
    project: Option<&str>,
) -> Result<Vec<Mounted>, SnapshotError> {
    let label = project.map(|p| format!("{LABEL_PROJECT}={p}"));
    let filter = match &label {
        Some(l) => ListFilter::Label(l),
        None => ListFilter::All,
    };
    let list = docker.list_containers(filter).await?;
    Ok(list
        .into_iter()
        .map(|c| Mounted {
            id: c.id.unwrap_or_default(),
            name: crate::docker::container_name(c.names),
            service: c.labels.and_then(|mut l| l.remove(LABEL_SERVICE)),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            image_id: c.image_id.unwrap_or_default(),
            mounts: c
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| {
                    Some((
                        PathBuf::from(m.source?),
                        PathBuf::from(m.destination?),
                        m.rw.unwrap_or(false),
                    ))
                })
                .collect(),
        })
        .collect())
}

/// How to reach a host directory inside a container.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Route {
    pub container: String,
    pub name: String,
    /// The directory's path inside the container.
    pub path: PathBuf,
    /// Paths below it (relative) that another mount of the container covers with a different
    /// host directory: what the container shows there is not in `dir` on the host.
    pub excluded: Vec<PathBuf>,
}

/// The first container (the service's own first) that shows host directory `dir`: a bind
/// mount of `dir` itself or of a directory above it, not hidden by a deeper mount.
pub(super) fn route(containers: &[Mounted], service: &str, dir: &Path) -> Option<Route> {
    let mut ordered: Vec<&Mounted> = containers.iter().collect();
    ordered.sort_by_key(|c| c.service.as_deref() != Some(service));
    let forms = host_forms(dir);
    for c in ordered {
        for dir in &forms {
            for (src, dest, _) in &c.mounts {
                let Ok(rel) = dir.strip_prefix(src) else {
                    continue;
                };
                let path = dest.join(rel);
                // The mount deepest above `path` is the one the container shows there.
                let shown = c
                    .mounts
                    .iter()
                    .filter(|(_, d, _)| path.starts_with(d))
                    .max_by_key(|(_, d, _)| d.components().count());
                if shown.map(|(_, d, _)| d) != Some(dest) {
                    continue;
                }
                let excluded = c
                    .mounts
                    .iter()
                    .filter_map(|(s, d, _)| {
                        let sub = d.strip_prefix(&path).ok()?;
                        (!sub.as_os_str().is_empty() && *s != dir.join(sub)).then(|| sub.to_owned())
                    })
                    .collect();
                return Some(Route {
                    container: c.id.clone(),
                    name: c.name.clone(),
                    path,
                    excluded,
                });
            }
        }
    }
    None
}

/// `dir` as configured, and with symlinks resolved when that differs (compose files name bind
/// sources either way).
fn host_forms(dir: &Path) -> Vec<PathBuf> {
    let mut forms = vec![dir.to_owned()];
    if let Ok(real) = std::fs::canonicalize(dir)
        && real != dir
    {
        forms.push(real);
    }
    forms
}

/// Whether `path` exists in the container and is a directory; `None` when it does not exist.
pub(super) async fn stat_dir(
    docker: &Engine,
    container: &str,
    path: &Path,
) -> Result<Option<bool>, SnapshotError> {
    let stat = docker.stat_path(container, &path.to_string_lossy()).await?;
    // Go's os.ModeDir.
    Ok(stat.map(|s| s.mode & (1 << 31) != 0))
}

/// The engine's tar of `path` in the container, members named `<basename>/…`.
pub(super) fn download(
    docker: &Engine,
    container: &str,
    path: &Path,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static + use<> {
    docker
        .download(container, &path.to_string_lossy())
        .map(|chunk| chunk.map_err(io::Error::other))
}

/// Extracts a tar into the container at `/`.
pub(super) async fn upload(
    docker: &Engine,
    container: &str,
    body: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
) -> Result<(), SnapshotError> {
    Ok(docker.upload(container, body).await?)
}

/// A container created from the service's image with one host directory bind-mounted at
/// [`HELPER_PATH`], only to reach that directory through the engine. Removed on drop.
#[derive(Debug)]
pub(super) struct Helper(TempContainer);

/// Why a helper could not be made.
#[derive(Debug)]
pub(super) enum HelperError {
    /// The host directory to mount does not exist.
    NoSource,
    /// The image is not on this machine.
    NoImage,
    Engine(crate::docker::DockerError),
}

impl Helper {
    /// `argv`: what the container runs if started, as root and without network; `None` for a
    /// container that is never started (the engine still wants a command, and an image may
    /// define none).
    pub async fn create(
        docker: &Engine,
        image: &str,
        source: &Path,
        writable: bool,
        argv: Option<Vec<String>>,
    ) -> Result<Self, HelperError> {
        let entrypoint = argv.unwrap_or_else(|| vec!["clawops-snapshot-never-started".into()]);
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(entrypoint[..1].to_vec()),
            cmd: Some(entrypoint[1..].to_vec()),
            user: Some("0:0".into()),
            working_dir: Some("/".into()),
            network_disabled: Some(true),
            healthcheck: Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([(LABEL_HELPER.to_string(), "1".to_string())])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                // `Mounts`, not `Binds`: a missing source is an error instead of a new empty
                // directory owned by root.
                mounts: Some(vec![Mount {
                    typ: Some(MountType::BIND),
                    source: Some(source.to_string_lossy().into_owned()),
                    target: Some(HELPER_PATH.into()),
                    read_only: Some(!writable),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match TempContainer::create(docker, "clawops-snapshot", "snapshot helper", body).await {
            Ok(c) => Ok(Self(c)),
            Err(e) if e.is_not_found() => Err(HelperError::NoImage),
            Err(e)
                if e.status_code() == Some(400)
                    && e.engine_message()
                        .is_some_and(|m| m.contains("does not exist")) =>
            {
                Err(HelperError::NoSource)
            }
            Err(e) => Err(HelperError::Engine(e)),
        }
    }

    pub fn id(&self) -> &str {
        self.0.id()
    }

    /// Starts it and waits for it to exit; `Err` says why it did not run or did not succeed.
    pub async fn run(&self) -> Result<(), HelperFailed> {
        let engine = self.0.engine();
        engine.start(self.id()).await?;
        match engine.wait(self.id()).await? {
            Some(0) => Ok(()),
            Some(code) => Err(HelperFailed::Exited(code)),
            None => Err(HelperFailed::NoExitCode),
        }
    }

    pub async fn remove(self) {
        self.0.remove().await
    }
}

/// Why a helper that was meant to run did not succeed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HelperFailed {
    #[error(transparent)]
    Engine(#[from] crate::docker::DockerError),
    #[error("exited with {0}")]
    Exited(i64),
    #[error("the engine did not report how it exited")]
    NoExitCode,
    #[error("the helper container could not be created")]
    NotCreated,
}

/// Removes helpers an interrupted agent left behind (older than an hour, so never one that
/// another operation is using).
pub(super) async fn remove_stale_helpers(docker: &Engine) {
    let label = format!("{LABEL_HELPER}=1");
    docker
        .remove_stale(&label, Duration::from_secs(3600), "snapshot helper")
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(service: &str, mounts: &[(&str, &str)]) -> Mounted {
        Mounted {
            id: format!("id-{service}"),
            name: service.into(),
            service: Some(service.into()),
            state: "running".into(),
            image_id: String::new(),
            mounts: mounts
                .iter()
                .map(|(s, d)| (PathBuf::from(s), PathBuf::from(d), true))
                .collect(),
        }
    }

    #[test]
    fn routes_prefer_the_service_and_honour_nested_mounts() {
        let dir = Path::new("/home/u/.openclaw");
        let other = container("cli", &[("/home/u/.openclaw", "/state")]);
        let gateway = container(
            "gateway",
            &[
                ("/home/u/.openclaw", "/home/node/.openclaw"),
                ("/srv/ws", "/home/node/.openclaw/workspace"),
                ("/home/u/.openclaw/skills", "/home/node/.openclaw/skills"),
            ],
        );
        let r = route(&[other.clone(), gateway], "gateway", dir).unwrap();
        assert_eq!(r.container, "id-gateway");
        assert_eq!(r.path, Path::new("/home/node/.openclaw"));
        assert_eq!(r.excluded, vec![PathBuf::from("workspace")]);
        assert_eq!(
            route(std::slice::from_ref(&other), "gateway", dir)
                .unwrap()
                .path,
            Path::new("/state")
        );

        // A mount of the home shows the directory below it, unless a deeper mount hides it.
        let home = container("gateway", &[("/home/u", "/home/node")]);
        assert_eq!(
            route(std::slice::from_ref(&home), "gateway", dir)
                .unwrap()
                .path,
            Path::new("/home/node/.openclaw")
        );
        let hidden = container(
            "gateway",
            &[
                ("/home/u", "/home/node"),
                ("/tmp/x", "/home/node/.openclaw"),
            ],
        );
        assert_eq!(route(&[hidden], "gateway", dir), None);
        assert_eq!(route(&[other], "gateway", Path::new("/home/u")), None);
    }
}
