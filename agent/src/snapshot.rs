//! Snapshots of the gateway's state directories (`~/.openclaw`) taken before each update,
//! because a new OpenClaw version may migrate its state in ways the old one cannot read. A
//! snapshot is one tar file (modes, owners and symlinks preserved) under the agent's state dir.
//! Restoring never deletes: the current directory is moved aside first.
use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use chrono::Utc;

pub const SNAPSHOT_DIR: &str = "snapshots";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no snapshot {0}")]
    Missing(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// State directories it holds (those that existed).
    pub dirs: Vec<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `dirs` (absolute paths; missing ones are skipped) into a new tar named after `label`,
/// then keeps only the newest `keep` snapshots. Runs on a blocking thread.
pub async fn take(
    state_dir: &Path,
    label: &str,
    dirs: &[PathBuf],
    keep: u32,
) -> Result<Snapshot, SnapshotError> {
    let state_dir = state_dir.to_owned();
    let label = label.to_owned();
    let dirs = dirs.to_vec();
    tokio::task::spawn_blocking(move || take_blocking(&state_dir, &label, &dirs, keep))
        .await
        .expect("snapshot task")
}

fn take_blocking(
    state_dir: &Path,
    label: &str,
    dirs: &[PathBuf],
    keep: u32,
) -> Result<Snapshot, SnapshotError> {
    let folder = state_dir.join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    let name = format!("{}-{label}.tar", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let path = folder.join(&name);
    let partial = folder.join(format!(".{name}.partial"));
    let file = File::create(&partial).map_err(io(&partial))?;
    let mut archive = tar::Builder::new(BufWriter::new(file));
    archive.follow_symlinks(false);
    let mut included = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            continue;
        }
        // Stored under their absolute path (without the leading /) so a restore knows where
        // each one belongs.
        let inner = dir.strip_prefix("/").unwrap_or(dir);
        archive.append_dir_all(inner, dir).map_err(io(dir))?;
        included.push(dir.clone());
    }
    let mut writer = archive.into_inner().map_err(io(&partial))?;
    writer.flush().map_err(io(&partial))?;
    writer
        .into_inner()
        .map_err(|e| SnapshotError::Io {
            path: partial.clone(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(io(&partial))?;
    // Only complete snapshots get their final name.
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    let size_bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
    prune(&folder, keep)?;
    Ok(Snapshot {
        path,
        size_bytes,
        dirs: included,
    })
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

fn prune(folder: &Path, keep: u32) -> Result<(), SnapshotError> {
    let state_dir = folder.parent().unwrap_or(folder);
    for old in list(state_dir)?.into_iter().skip(keep.max(1) as usize) {
        std::fs::remove_file(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Restores `snapshot`: every directory it holds is moved aside to
/// `<dir>.before-restore-<time>` and then unpacked from the tar. Returns the moved-aside paths.
pub async fn restore(snapshot: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let snapshot = snapshot.to_owned();
    tokio::task::spawn_blocking(move || restore_blocking(&snapshot))
        .await
        .expect("restore task")
}

fn restore_blocking(snapshot: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    if !snapshot.exists() {
        return Err(SnapshotError::Missing(snapshot.display().to_string()));
    }
    let roots = top_dirs(snapshot)?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut moved = Vec::new();
    for root in &roots {
        if root.exists() {
            let aside = PathBuf::from(format!("{}.before-restore-{stamp}", root.display()));
            std::fs::rename(root, &aside).map_err(io(root))?;
            moved.push(aside);
        }
    }
    let mut archive = tar::Archive::new(File::open(snapshot).map_err(io(snapshot))?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(false);
    archive.unpack("/").map_err(io(snapshot))?;
    Ok(moved)
}

/// The directories a snapshot holds: the shortest stored paths that are directories.
fn top_dirs(snapshot: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut archive = tar::Archive::new(File::open(snapshot).map_err(io(snapshot))?);
    let mut roots: Vec<PathBuf> = Vec::new();
    for entry in archive.entries().map_err(io(snapshot))? {
        let entry = entry.map_err(io(snapshot))?;
        if entry.header().entry_type() != tar::EntryType::Directory {
            continue;
        }
        // Components drop the trailing `/` that tar stores on directory names.
        let path: PathBuf = Path::new("/")
            .join(entry.path().map_err(io(snapshot))?)
            .components()
            .collect();
        if !roots.iter().any(|r| path.starts_with(r)) {
            roots.retain(|r| !r.starts_with(&path));
            roots.push(path);
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn snapshot_restore_round_trip_keeps_the_current_state_aside() {
        let home = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let dir = home.path().join(".openclaw");
        std::fs::create_dir_all(dir.join("workspace")).unwrap();
        std::fs::write(dir.join("openclaw.json"), "{\"v\":1}").unwrap();
        std::fs::write(dir.join("workspace/notes.md"), "hello").unwrap();
        std::os::unix::fs::symlink("openclaw.json", dir.join("link")).unwrap();

        let snap = take(
            state.path(),
            "op1",
            &[dir.clone(), home.path().join("missing")],
            2,
        )
        .await
        .unwrap();
        assert!(snap.size_bytes > 0);
        assert_eq!(snap.dirs, std::slice::from_ref(&dir));

        std::fs::write(dir.join("openclaw.json"), "{\"v\":2}").unwrap();
        let moved = restore(&snap.path).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("openclaw.json")).unwrap(),
            "{\"v\":1}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("workspace/notes.md")).unwrap(),
            "hello"
        );
        assert!(
            std::fs::symlink_metadata(dir.join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(moved.len(), 1);
        assert_eq!(
            std::fs::read_to_string(moved[0].join("openclaw.json")).unwrap(),
            "{\"v\":2}"
        );
    }

    #[tokio::test]
    async fn keeps_the_newest_n() {
        let state = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for i in 0..4 {
            take(state.path(), &format!("op{i}"), &[dir.path().to_owned()], 2)
                .await
                .unwrap();
            // Names carry a one-second timestamp; make them distinct.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
        let left = list(state.path()).unwrap();
        assert_eq!(left.len(), 2);
        assert!(left[0].display().to_string().contains("op3"));
        assert!(left[1].display().to_string().contains("op2"));
    }
}
