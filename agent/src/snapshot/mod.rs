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
use serde::{Deserialize, Serialize};

mod archive;
mod engine;
mod read;
mod restore;
mod space;

pub use restore::{Restored, restore};

use engine::Mounted;
use read::{Writer, read_dir};

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
