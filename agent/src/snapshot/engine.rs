//! The Docker side of snapshots. The agent runs unprivileged, so it cannot read state files
//! the gateway made private nor write into a read-only home; the engine runs as root and
//! reaches every bind-mounted directory through the archive API of a container that mounts it,
//! also a stopped or never-started one.
use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
};

use bollard::{
    Docker,
    models::{ContainerCreateBody, HealthConfig, HostConfig, Mount, MountType},
    query_parameters::{
        ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder,
        DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder,
        RemoveContainerOptionsBuilder, StartContainerOptions, UploadToContainerOptionsBuilder,
        WaitContainerOptions,
    },
};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::SnapshotError;
use crate::docker::{LABEL_PROJECT, LABEL_SERVICE};

/// Marks the short-lived containers snapshots create, so leftovers can be found.
pub(super) const LABEL_HELPER: &str = "clawops.snapshot-helper";
/// Where a helper container mounts the directory it serves.
pub(super) const HELPER_PATH: &str = "/clawops-state";

fn engine(doing: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> SnapshotError {
    let doing = doing.into();
    move |source| SnapshotError::Engine { doing, source }
}

fn status(e: &bollard::errors::Error) -> Option<(u16, &str)> {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => Some((*status_code, message.as_str())),
        _ => None,
    }
}

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
    docker: &Docker,
    project: Option<&str>,
) -> Result<Vec<Mounted>, SnapshotError> {
    let mut filters = HashMap::new();
    if let Some(p) = project {
        filters.insert("label".to_string(), vec![format!("{LABEL_PROJECT}={p}")]);
    }
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(options))
        .await
        .map_err(engine("listing containers"))?;
    Ok(list
        .into_iter()
        .map(|c| Mounted {
            id: c.id.unwrap_or_default(),
            name: c
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
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
    docker: &Docker,
    container: &str,
    path: &Path,
) -> Result<Option<bool>, SnapshotError> {
    let options = ContainerArchiveInfoOptionsBuilder::default()
        .path(&path.to_string_lossy())
        .build();
    match docker
        .get_container_archive_info(container, Some(options))
        .await
    {
        // Go's os.ModeDir.
        Ok(stat) => Ok(Some(stat.file_mode & (1 << 31) != 0)),
        Err(e) if status(&e).is_some_and(|(code, _)| code == 404) => Ok(None),
        Err(e) => Err(engine(format!(
            "looking at {} in {container}",
            path.display()
        ))(e)),
    }
}

/// The engine's tar of `path` in the container, members named `<basename>/…`.
pub(super) fn download(
    docker: &Docker,
    container: &str,
    path: &Path,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(&path.to_string_lossy())
        .build();
    docker
        .download_from_container(container, Some(options))
        .map(|chunk| chunk.map_err(io::Error::other))
}

/// Extracts a tar into the container at `/`. The engine applies the members' owners and modes
/// and replaces a file by a directory (and the reverse) where the tar says so.
pub(super) async fn upload(
    docker: &Docker,
    container: &str,
    body: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
) -> Result<(), SnapshotError> {
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    docker
        .upload_to_container(container, Some(options), bollard::body_try_stream(body))
        .await
        .map_err(engine(format!("writing into {container}")))
}

/// A container created from the service's image with one host directory bind-mounted at
/// [`HELPER_PATH`], only to reach that directory through the engine. Removed on drop.
#[derive(Debug)]
pub(super) struct Helper {
    docker: Docker,
    pub id: String,
    removed: bool,
}

/// Why a helper could not be made.
#[derive(Debug)]
pub(super) enum HelperError {
    /// The host directory to mount does not exist.
    NoSource,
    /// The image is not on this machine.
    NoImage,
    Engine(SnapshotError),
}

impl Helper {
    /// `argv`: what the container runs if started, as root and without network; `None` for a
    /// container that is never started (the engine still wants a command, and an image may
    /// define none).
    pub async fn create(
        docker: &Docker,
        image: &str,
        source: &Path,
        writable: bool,
        argv: Option<Vec<String>>,
    ) -> Result<Self, HelperError> {
        let name = format!(
            "clawops-snapshot-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
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
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        match docker.create_container(Some(options), body).await {
            Ok(created) => Ok(Self {
                docker: docker.clone(),
                id: created.id,
                removed: false,
            }),
            Err(e) => match status(&e) {
                Some((404, _)) => Err(HelperError::NoImage),
                Some((400, m)) if m.contains("does not exist") => Err(HelperError::NoSource),
                _ => Err(HelperError::Engine(engine(format!(
                    "creating a helper container from {image}"
                ))(e))),
            },
        }
    }

    /// Starts it and waits for it to exit; `Err` says why it did not run or did not succeed.
    pub async fn run(&self) -> Result<(), String> {
        self.docker
            .start_container(&self.id, None::<StartContainerOptions>)
            .await
            .map_err(|e| e.to_string())?;
        let mut wait = self
            .docker
            .wait_container(&self.id, None::<WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(r)) if r.status_code == 0 => Ok(()),
            Some(Ok(r)) => Err(format!("exited with {}", r.status_code)),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the engine did not report how it exited".into()),
        }
    }

    pub async fn remove(mut self) {
        self.removed = true;
        remove(&self.docker, &self.id).await;
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Cancelled or failed half-way: remove it in the background.
        if !self.removed
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (docker, id) = (self.docker.clone(), self.id.clone());
            handle.spawn(async move { remove(&docker, &id).await });
        }
    }
}

async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        // Anonymous volumes the image declares were created with it.
        .v(true)
        .build();
    if let Err(e) = docker.remove_container(id, Some(options)).await {
        tracing::warn!(container = %id, error = %e, "cannot remove a snapshot helper container");
    }
}

/// Removes helpers an interrupted agent left behind (older than an hour, so never one that
/// another operation is using).
pub(super) async fn remove_stale_helpers(docker: &Docker) {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_HELPER}=1")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(list) = docker.list_containers(Some(options)).await else {
        return;
    };
    let hour_ago = chrono::Utc::now().timestamp() - 3600;
    for c in list {
        if let (Some(id), Some(created)) = (c.id, c.created)
            && created < hour_ago
        {
            remove(docker, &id).await;
        }
    }
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
