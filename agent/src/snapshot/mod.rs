//! Snapshots of the gateway's state directories (`~/.openclaw`) taken before each update,
//! because a new OpenClaw version may migrate its state in ways the old one cannot read. A
//! snapshot is one tar file (modes, owners, links preserved) under the agent's state dir.
//!
//! The agent runs as an unprivileged user in a sandbox where the owner's home is read-only,
//! and OpenClaw makes some of its files private, so the directories are read and written
//! through the Docker engine (root): the archive API of a container that bind-mounts them,
//! else of a short-lived helper container from the service's image. Only when neither is
//! possible does the agent read a directory itself (and says how to let it, if it may not).
//! Restoring never loses the current state: it is saved as a snapshot first.
use std::{
    fs::{DirBuilder, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod archive;
mod engine;
mod restore;
mod space;

pub use restore::{Restored, restore};

use archive::SnapshotWriter;
use engine::{HELPER_PATH, Helper, HelperError, Mounted};

pub const SNAPSHOT_DIR: &str = "snapshots";
/// The member that lists what a snapshot holds (written last, as it is known only then).
const MANIFEST: &str = ".clawops-snapshot.json";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no snapshot {0}")]
    Missing(String),
    #[error(
        "snapshot {path} is damaged ({why}); restore another one (`clawops history` lists them)"
    )]
    Corrupt { path: PathBuf, why: String },
    #[error("[snapshots] dirs: {0} is not an absolute path (use /… or ~/…)")]
    NotAbsolute(PathBuf),
    #[error("[snapshots] dirs: {0} is not a directory; list the directories to snapshot")]
    NotADirectory(PathBuf),
    #[error(transparent)]
    Engine(#[from] crate::docker::DockerError),
    #[error("copying {dir} through {via}: {source}")]
    Copy {
        dir: PathBuf,
        via: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: permission denied. {hint}")]
    Unreadable { path: PathBuf, hint: String },
    #[error(
        "container {container} is running and writes to {dir}; stop it before restoring, the \
         state must not change under a running gateway"
    )]
    InUse { container: String, dir: PathBuf },
    #[error(
        "restoring {dir} needs a helper container, and there is no image to create one from \
         (neither the service's image nor a container of the project): build it first \
         (`clawops update` or `clawops up`)"
    )]
    NoImage { dir: PathBuf },
    #[error("restoring {dir}: {why}")]
    Restore { dir: PathBuf, why: String },
    #[error(
        "the state directories hold {size_mb} MiB, more than [snapshots] max_mb = {max_mb}; \
         raise it in agent.toml or make the state smaller"
    )]
    TooLarge { size_mb: u64, max_mb: u64 },
    #[error(
        "not enough free space for a snapshot in {}: it needs about {need_mb} MiB (plus a \
         margin), {free_mb} MiB are free; free some space (old images: `docker image prune`)",
        folder.display()
    )]
    NoSpace {
        folder: PathBuf,
        need_mb: u64,
        free_mb: u64,
    },
}

/// Where to reach the state directories through the engine.
#[derive(Debug, Clone, Copy)]
pub struct Engine<'a> {
    pub docker: &'a crate::docker::Engine,
    /// The compose project whose containers may bind-mount the directories.
    pub project: &'a str,
    /// Its service, whose container is tried first.
    pub service: &'a str,
    /// The service's image, for helper containers when no container mounts a directory (the
    /// first deploy). The image of a container of the project is tried after it.
    pub image: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// State directories it holds (those that existed), and how each was read.
    pub dirs: Vec<SnapshotDir>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDir {
    /// The directory on the host.
    pub path: PathBuf,
    pub method: Method,
    /// Paths below it (relative) left out: the container mounts other host directories there.
    pub excluded: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// The archive API of a container of the project that bind-mounts it (`path` inside).
    Container { container: String, path: PathBuf },
    /// A helper container created (never started) from `image` with it bind-mounted.
    Helper { image: String },
    /// Read by the agent itself: no container mounts it and no image was at hand.
    Filesystem,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    label: String,
    created: DateTime<Utc>,
    dirs: Vec<SnapshotDir>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `dirs` (absolute paths; missing ones are skipped) into a new tar named after `label`,
/// then keeps only the newest `keep` snapshots.
pub async fn take(
    engine: &Engine<'_>,
    state_dir: &Path,
    label: &str,
    dirs: &[PathBuf],
    keep: u32,
) -> Result<Snapshot, SnapshotError> {
    take_capped(engine, state_dir, label, dirs, keep, 0).await
}

/// [`take`], refused up front when the directories exceed `max_mb` (0: no cap) or the free
/// space beside the snapshots.
pub async fn take_capped(
    engine: &Engine<'_>,
    state_dir: &Path,
    label: &str,
    dirs: &[PathBuf],
    keep: u32,
    max_mb: u64,
) -> Result<Snapshot, SnapshotError> {
    let snap = write(engine, state_dir, label, dirs, max_mb).await?;
    prune(state_dir, keep)?;
    Ok(snap)
}

/// Snapshots, newest first.
pub fn list(state_dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let folder = state_dir.join(SNAPSHOT_DIR);
    if !folder.exists() {
        return Ok(Vec::new());
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(io(&folder))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    // Names start with a UTC timestamp, so lexical order is time order.
    names.sort();
    names.reverse();
    Ok(names)
}

fn prune(state_dir: &Path, keep: u32) -> Result<(), SnapshotError> {
    for old in list(state_dir)?.into_iter().skip(keep.max(1) as usize) {
        std::fs::remove_file(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// A snapshot being written: removed unless it was completed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The snapshot writer, handed to blocking threads and back.
struct Writer(Option<SnapshotWriter>);

impl Writer {
    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut SnapshotWriter) -> T + Send + 'static,
    ) -> T {
        let mut w = self
            .0
            .take()
            .expect("the snapshot writer is back after each use");
        let (w, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut w);
            (w, out)
        })
        .await
        .expect("snapshot task");
        self.0 = Some(w);
        out
    }
}

async fn write(
    engine: &Engine<'_>,
    state_dir: &Path,
    label: &str,
    dirs: &[PathBuf],
    max_mb: u64,
) -> Result<Snapshot, SnapshotError> {
    let dirs = covering(dirs)?;
    engine::remove_stale_helpers(engine.docker).await;
    let folder = state_dir.join(SNAPSHOT_DIR);
    // The state holds the gateway's credentials: only the agent may read snapshots.
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)
        .map_err(io(&folder))?;
    space::check(&folder, &dirs, max_mb).await?;
    let name = format!(
        "{}-{}.tar",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        file_safe(label)
    );
    let path = folder.join(&name);
    let partial_path = folder.join(format!(".{name}.partial"));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial_path)
        .map_err(io(&partial_path))?;
    let mut partial = Partial(Some(partial_path.clone()));
    let mut builder = tar::Builder::new(BufWriter::new(file));
    builder.follow_symlinks(false);
    let mut out = Writer(Some(builder));

    let containers = engine::containers(engine.docker, Some(engine.project)).await?;
    let mut included = Vec::new();
    for dir in dirs {
        if let Some(d) = read_dir(engine, &containers, &dir, &mut out).await? {
            included.push(d);
        }
    }
    let manifest = Manifest {
        version: 1,
        label: label.to_owned(),
        created: Utc::now(),
        dirs: included.clone(),
    };
    let builder = out.0.take().expect("writer");
    tokio::task::spawn_blocking(move || -> io::Result<()> {
        let mut builder = builder;
        archive::append_manifest(&mut builder, &manifest)?;
        let mut writer = builder.into_inner()?;
        writer.flush()?;
        writer.into_inner().map_err(|e| e.into_error())?.sync_all()
    })
    .await
    .expect("snapshot task")
    .map_err(io(&partial_path))?;
    // Only complete snapshots get their final name.
    std::fs::rename(&partial_path, &path).map_err(io(&path))?;
    partial.0 = None;
    let size_bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
    Ok(Snapshot {
        path,
        size_bytes,
        dirs: included,
    })
}

/// The directories to snapshot: absolute, each once, none inside another one listed.
fn covering(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut normal = Vec::new();
    for d in dirs {
        if !d.is_absolute() {
            return Err(SnapshotError::NotAbsolute(d.clone()));
        }
        normal.push(d.components().collect::<PathBuf>());
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for d in &normal {
        let inside_another = normal.iter().any(|o| o != d && d.starts_with(o));
        if !inside_another && !out.contains(d) {
            out.push(d.clone());
        }
    }
    Ok(out)
}

fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Images a helper container can be created from: the service's, then those of the
/// project's containers (the service's first).
fn helper_images(engine: &Engine<'_>, containers: &[Mounted]) -> Vec<String> {
    let mut ordered: Vec<&Mounted> = containers.iter().collect();
    ordered.sort_by_key(|c| c.service.as_deref() != Some(engine.service));
    let mut images: Vec<String> = engine.image.map(str::to_owned).into_iter().collect();
    for c in ordered {
        if !c.image_id.is_empty() && !images.contains(&c.image_id) {
            images.push(c.image_id.clone());
        }
    }
    images
}

/// Appends one directory; `None` when it does not exist. Read through a container that mounts
/// it, else a helper container, else (no image at all) the agent's own file access.
async fn read_dir(
    engine: &Engine<'_>,
    containers: &[Mounted],
    dir: &Path,
    out: &mut Writer,
) -> Result<Option<SnapshotDir>, SnapshotError> {
    if let Some(route) = engine::route(containers, engine.service, dir) {
        return read_through_container(engine, route, dir, out).await;
    }
    for image in helper_images(engine, containers) {
        match read_through_helper(engine, image, dir, out).await? {
            Helped::NoImage => continue,
            Helped::Read(found) => return Ok(found),
        }
    }
    read_from_filesystem(dir, out).await
}

/// A snapshot directory read by `method`.
fn found(dir: &Path, method: Method, excluded: Vec<PathBuf>) -> Option<SnapshotDir> {
    Some(SnapshotDir {
        path: dir.to_owned(),
        method,
        excluded,
    })
}

/// Through the archive API of a container that mounts `dir`.
async fn read_through_container(
    engine: &Engine<'_>,
    route: engine::Route,
    dir: &Path,
    out: &mut Writer,
) -> Result<Option<SnapshotDir>, SnapshotError> {
    let docker = engine.docker;
    match engine::stat_dir(docker, &route.container, &route.path).await? {
        None => return Ok(None),
        Some(false) => return Err(SnapshotError::NotADirectory(dir.to_owned())),
        Some(true) => {}
    }
    let via = format!("container {}", route.name);
    copy_from(
        docker,
        &route.container,
        &route.path,
        dir,
        &route.excluded,
        &via,
        out,
    )
    .await?;
    let method = Method::Container {
        container: route.name,
        path: route.path,
    };
    Ok(found(dir, method, route.excluded))
}

/// What a helper container from one image could do.
enum Helped {
    /// The image is gone: try the next one.
    NoImage,
    Read(Option<SnapshotDir>),
}

/// Through a helper container from `image` that mounts `dir` (created, never started).
async fn read_through_helper(
    engine: &Engine<'_>,
    image: String,
    dir: &Path,
    out: &mut Writer,
) -> Result<Helped, SnapshotError> {
    let docker = engine.docker;
    let helper = match Helper::create(docker, &image, dir, false, None).await {
        Ok(h) => h,
        Err(HelperError::NoSource) => return Ok(Helped::Read(None)),
        Err(HelperError::NoImage) => return Ok(Helped::NoImage),
        Err(HelperError::Engine(e)) => return Err(e.into()),
    };
    let via = format!("a helper container from {image}");
    let copied = match engine::stat_dir(docker, helper.id(), Path::new(HELPER_PATH)).await {
        Ok(Some(true)) => {
            copy_from(
                docker,
                helper.id(),
                Path::new(HELPER_PATH),
                dir,
                &[],
                &via,
                out,
            )
            .await
        }
        Ok(_) => Err(SnapshotError::NotADirectory(dir.to_owned())),
        Err(e) => Err(e),
    };
    helper.remove().await;
    copied?;
    Ok(Helped::Read(found(
        dir,
        Method::Helper { image },
        Vec::new(),
    )))
}

/// With the agent's own permissions, when no image is there to make a helper from.
async fn read_from_filesystem(
    dir: &Path,
    out: &mut Writer,
) -> Result<Option<SnapshotDir>, SnapshotError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(unreadable(dir, dir.to_owned()));
        }
        Err(e) => return Err(io(dir)(e)),
        Ok(m) if !m.is_dir() => return Err(SnapshotError::NotADirectory(dir.to_owned())),
        Ok(_) => {}
    }
    let (owned, root) = (dir.to_owned(), archive::member_root(dir));
    out.with(move |w| archive::append_filesystem(w, &owned, &root))
        .await
        .map_err(|(path, e)| match e.kind() {
            io::ErrorKind::PermissionDenied => unreadable(dir, path),
            _ => SnapshotError::Io { path, source: e },
        })?;
    Ok(found(dir, Method::Filesystem, Vec::new()))
}

/// Streams the engine's archive of `path` in `container` into the snapshot as `dir`.
async fn copy_from(
    docker: &crate::docker::Engine,
    container: &str,
    path: &Path,
    dir: &Path,
    excluded: &[PathBuf],
    via: &str,
    out: &mut Writer,
) -> Result<(), SnapshotError> {
    let (tx, rx) = mpsc::channel(16);
    let download = engine::download(docker, container, path);
    let pump = async move {
        let mut download = std::pin::pin!(download);
        while let Some(chunk) = download.next().await {
            let failed = chunk.is_err();
            // A closed channel: the copy ended (or failed) and wants no more.
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    };
    let (root, excluded) = (archive::member_root(dir), excluded.to_vec());
    let copy = out.with(move |w| {
        let rename = archive::from_engine(&root, &excluded);
        archive::copy_renamed(archive::ChannelReader::new(rx), w, &rename)
    });
    let ((), copied) = tokio::join!(pump, copy);
    match copied {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(SnapshotError::Copy {
            dir: dir.to_owned(),
            via: via.to_owned(),
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "the engine sent no files"),
        }),
        Err(source) => Err(SnapshotError::Copy {
            dir: dir.to_owned(),
            via: via.to_owned(),
            source,
        }),
    }
}

fn unreadable(dir: &Path, path: PathBuf) -> SnapshotError {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::Uid::effective().to_string());
    let hint = format!(
        "No container of the project mounts {dir} and there was no image to create a helper \
         container from, so the agent read it itself. Best: deploy once (`clawops update`) so \
         the service's container mounts it and the Docker engine reads it. Or let the agent \
         read it: `sudo setfacl -R -m u:{user}:rX,d:u:{user}:rX {dir}` (deploy/startup-script.sh \
         does this; a later `chmod 600` by OpenClaw hides files again)",
        dir = dir.display()
    );
    SnapshotError::Unreadable { path, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_dirs_are_absolute_unique_and_not_nested() {
        let dirs = [
            PathBuf::from("/home/u/.openclaw/workspace"),
            PathBuf::from("/home/u/.openclaw/"),
            PathBuf::from("/home/u/.openclaw"),
            PathBuf::from("/srv/other"),
        ];
        assert_eq!(
            covering(&dirs).unwrap(),
            [
                PathBuf::from("/home/u/.openclaw"),
                PathBuf::from("/srv/other")
            ]
        );
        assert!(matches!(
            covering(&[PathBuf::from("rel/dir")]),
            Err(SnapshotError::NotAbsolute(_))
        ));
        assert_eq!(file_safe("op-1/abc def"), "op-1_abc_def");
    }

    #[test]
    fn list_is_newest_first_and_prune_keeps_n() {
        let state = tempfile::tempdir().unwrap();
        let folder = state.path().join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&folder).unwrap();
        for name in [
            "20250101T000000.000Z-a.tar",
            "20250102T000000.000Z-b.tar",
            "20250103T000000.000Z-c.tar",
            ".20250104T000000.000Z-d.tar.partial",
        ] {
            std::fs::write(folder.join(name), "").unwrap();
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(list(state.path()).unwrap()),
            [
                "20250103T000000.000Z-c.tar",
                "20250102T000000.000Z-b.tar",
                "20250101T000000.000Z-a.tar"
            ]
        );
        prune(state.path(), 2).unwrap();
        assert_eq!(names(list(state.path()).unwrap()).len(), 2);
        prune(state.path(), 0).unwrap();
        assert_eq!(
            names(list(state.path()).unwrap()),
            ["20250103T000000.000Z-c.tar"]
        );
    }
}
