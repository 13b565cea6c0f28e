//! Restoring a snapshot in place, through the engine. The state directory stays where it is
//! (it may be a mount point, in a home the agent may not write), so its content is replaced
//! instead: the current state is saved as a snapshot, the snapshot is extracted over the
//! directory by the engine (which, as root, sets owners and modes as recorded and replaces a
//! file by a directory or the reverse), and what the snapshot does not hold is removed.
//!
//! The archive API can write but not delete. Removal runs `rm -rf -- <paths>` (an argument
//! vector, no shell) in a helper container from the service's image, as root. OpenClaw's
//! image and busybox have `rm`; an image without it (distroless) cannot delete, so the agent
//! then removes what its own permissions allow, and anything left is reported, not hidden:
//! extracting over the tree already restored every file the snapshot holds, and the extra
//! paths are listed from the snapshot of the state taken just before.
use std::{
    collections::BTreeMap,
    io::{self, BufReader, Write},
    path::{Path, PathBuf},
};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::chunks::ChunkWriter;

use super::{
    Engine, Snapshot, SnapshotDir, SnapshotError, archive, engine, engine::HELPER_PATH,
    engine::Helper, engine::HelperError, engine::HelperFailed, helper_images, prune, write,
};

/// What a restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The state as it was just before: a snapshot like the others (`list` shows it).
    pub before: Snapshot,
    /// The directories restored.
    pub dirs: Vec<PathBuf>,
    /// Paths the snapshot does not hold that could not be removed (nothing else differs).
    pub left_over: Vec<PathBuf>,
}

/// Restores `snapshot` in place. The caller stops every container that writes to its
/// directories first (the gateway must not change its state while it is replaced); a running
/// one is refused with [`SnapshotError::InUse`]. The state it replaces is first saved as a
/// snapshot labelled `before_label`; then only the newest `keep` snapshots are kept.
pub async fn restore(
    engine: &Engine<'_>,
    state_dir: &Path,
    snapshot: &Path,
    before_label: &str,
    keep: u32,
) -> Result<Restored, SnapshotError> {
    if !snapshot.is_file() {
        return Err(SnapshotError::Missing(snapshot.display().to_string()));
    }
    let path = snapshot.to_owned();
    let wanted = tokio::task::spawn_blocking(move || archive::contents(&path))
        .await
        .expect("snapshot task")?;
    let dirs: Vec<PathBuf> = wanted.dirs.iter().map(|d| d.path.clone()).collect();
    let everyone = engine::containers(engine.docker, None).await?;
    for dir in &dirs {
        if let Some(c) = everyone.iter().find(|c| c.active() && c.writes(dir)) {
            return Err(SnapshotError::InUse {
                container: c.name.clone(),
                dir: dir.clone(),
            });
        }
    }

    let before = write(engine, state_dir, before_label, &dirs, 0).await?;
    let path = before.path.clone();
    let current = tokio::task::spawn_blocking(move || archive::contents(&path))
        .await
        .expect("snapshot task")?;
    let project = engine::containers(engine.docker, Some(engine.project)).await?;
    let images = helper_images(engine, &project);
    let mut left_over = Vec::new();
    for dir in &wanted.dirs {
        let Some(members) = wanted.of(&dir.path) else {
            continue;
        };
        // Not in the snapshot of the current state: the directory does not exist now.
        let existing = current.dir(&dir.path).is_some();
        let extras = extras(members, current.of(&dir.path), &dir.excluded);
        left_over.extend(restore_dir(engine, &images, snapshot, dir, existing, extras).await?);
    }
    prune(state_dir, keep)?;
    Ok(Restored {
        before,
        dirs,
        left_over,
    })
}

/// Paths now in a directory that the snapshot does not hold, topmost only (removing those
/// removes the rest), leaving alone the subtrees other mounts cover.
fn extras(
    wanted: &BTreeMap<PathBuf, bool>,
    current: Option<&BTreeMap<PathBuf, bool>>,
    excluded: &[PathBuf],
) -> Vec<PathBuf> {
    let Some(current) = current else {
        return Vec::new();
    };
    current
        .keys()
        .filter(|rel| {
            !rel.as_os_str().is_empty()
                && !wanted.contains_key(*rel)
                && !excluded.iter().any(|e| rel.starts_with(e))
                // Below a path the snapshot replaces by a file, extraction removes it anyway.
                && rel.parent().is_some_and(|p| wanted.get(p) == Some(&true))
        })
        .cloned()
        .collect()
}

/// Upper bound on one `rm` command line (the kernel allows far more; this keeps requests
/// small).
const ARGV_BYTES: usize = 64 * 1024;

fn rm_commands(extras: &[PathBuf]) -> (Vec<Vec<String>>, Vec<PathBuf>) {
    let (mut commands, mut unnamable) = (Vec::new(), Vec::new());
    let mut current: Vec<String> = Vec::new();
    let mut size = 0;
    for rel in extras {
        // Container paths travel as JSON strings.
        let Some(rel_str) = rel.to_str() else {
            unnamable.push(rel.clone());
            continue;
        };
        let arg = format!("{HELPER_PATH}/{rel_str}");
        if size + arg.len() > ARGV_BYTES && !current.is_empty() {
            commands.push(std::mem::take(&mut current));
            size = 0;
        }
        size += arg.len() + 1;
        current.push(arg);
    }
    if !current.is_empty() {
        commands.push(current);
    }
    let argv = commands
        .into_iter()
        .map(|paths| {
            ["rm", "-rf", "--"]
                .into_iter()
                .map(str::to_owned)
                .chain(paths)
                .collect()
        })
        .collect();
    (argv, unnamable)
}

/// Restores one directory; returns the extra paths it could not remove (absolute).
async fn restore_dir(
    engine: &Engine<'_>,
    images: &[String],
    snapshot: &Path,
    dir: &SnapshotDir,
    existing: bool,
    extras: Vec<PathBuf>,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let docker = engine.docker;
    let failed = |why: String| SnapshotError::Restore {
        dir: dir.path.clone(),
        why,
    };
    // A directory that is gone is recreated inside its parent, owner and mode as recorded.
    let (source, target) = if existing {
        (dir.path.clone(), PathBuf::from(HELPER_PATH))
    } else {
        let (Some(parent), Some(name)) = (dir.path.parent(), dir.path.file_name()) else {
            return Err(failed(
                "it is gone and has no parent to recreate it in".into(),
            ));
        };
        (parent.to_owned(), Path::new(HELPER_PATH).join(name))
    };
    let (mut commands, mut left) = rm_commands(&extras);
    let first_rm = (!commands.is_empty()).then(|| commands.remove(0));
    let (helper, image) = writable_helper(engine, images, &source, first_rm.clone(), dir).await?;

    upload(docker, helper.id(), snapshot, dir, &target).await?;

    let ran = match first_rm {
        Some(_) => remove_extras(docker, &helper, &image, &source, commands).await,
        None => Ok(()),
    };
    // Whatever `rm` did, the engine says what is still there.
    for rel in &extras {
        let path = Path::new(HELPER_PATH).join(rel);
        if rel.to_str().is_some()
            && engine::stat_dir(docker, helper.id(), &path)
                .await?
                .is_some()
        {
            left.push(rel.clone());
        }
    }
    helper.remove().await;
    // Last resort, the agent's own permissions.
    left.retain(|rel| remove_path(&dir.path.join(rel)).is_err());
    if !left.is_empty() {
        let why = ran
            .err()
            .map_or_else(|| "rm left them".into(), |e| e.to_string());
        tracing::warn!(
            dir = %dir.path.display(),
            count = left.len(),
            reason = %why,
            "restored every file of the snapshot, but paths it does not hold remain"
        );
    }
    Ok(left.into_iter().map(|rel| dir.path.join(rel)).collect())
}

/// A helper container mounting `source` writable, from the first of `images` that exists;
/// `first_rm` is its command.
async fn writable_helper(
    engine: &Engine<'_>,
    images: &[String],
    source: &Path,
    first_rm: Option<Vec<String>>,
    dir: &SnapshotDir,
) -> Result<(Helper, String), SnapshotError> {
    for image in images {
        match Helper::create(engine.docker, image, source, true, first_rm.clone()).await {
            Ok(h) => return Ok((h, image.clone())),
            Err(HelperError::NoImage) => continue,
            Err(HelperError::NoSource) => {
                return Err(SnapshotError::Restore {
                    dir: dir.path.clone(),
                    why: format!(
                        "{} does not exist; create it (owned by the gateway's user) and retry",
                        source.display()
                    ),
                });
            }
            Err(HelperError::Engine(e)) => return Err(e.into()),
        }
    }
    Err(SnapshotError::NoImage {
        dir: dir.path.clone(),
    })
}

/// Runs the `rm` commands: the first in `helper` (created with it), each other one in a helper
/// of its own, stopping at the first that fails.
async fn remove_extras(
    docker: &crate::docker::Engine,
    helper: &Helper,
    image: &str,
    source: &Path,
    commands: Vec<Vec<String>>,
) -> Result<(), HelperFailed> {
    helper.run().await?;
    for argv in commands {
        match Helper::create(docker, image, source, true, Some(argv)).await {
            Ok(h) => {
                let ran = h.run().await;
                h.remove().await;
                ran?;
            }
            Err(HelperError::Engine(e)) => return Err(e.into()),
            Err(_) => return Err(HelperFailed::NotCreated),
        }
    }
    Ok(())
}

fn remove_path(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Streams the members of `dir` from the snapshot into the helper, renamed to `target`.
async fn upload(
    docker: &crate::docker::Engine,
    container: &str,
    snapshot: &Path,
    dir: &SnapshotDir,
    target: &Path,
) -> Result<(), SnapshotError> {
    let (tx, rx) = mpsc::channel(8);
    let (snapshot, root, target) = (
        snapshot.to_owned(),
        archive::member_root(&dir.path),
        target.strip_prefix("/").unwrap_or(target).to_owned(),
    );
    let producer = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let result = (|| {
            let input = BufReader::new(std::fs::File::open(&snapshot)?);
            let mut out =
                tar::Builder::new(ChunkWriter::new(tx.clone(), "the engine stopped reading"));
            archive::copy_renamed(input, &mut out, &archive::to_engine(&root, &target))?;
            out.into_inner()?.flush()
        })();
        if let Err(e) = &result {
            // Fail the request body too, so the engine does not take a cut archive for whole.
            let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    let (uploaded, produced) = tokio::join!(
        engine::upload(docker, container, ReceiverStream::new(rx)),
        producer
    );
    produced
        .expect("snapshot task")
        .map_err(|source| SnapshotError::Copy {
            dir: dir.path.clone(),
            via: "the engine".into(),
            source,
        })?;
    uploaded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, bool)]) -> BTreeMap<PathBuf, bool> {
        list.iter().map(|(p, d)| (PathBuf::from(p), *d)).collect()
    }

    #[test]
    fn extras_are_the_topmost_paths_the_snapshot_lacks() {
        let wanted = members(&[("", true), ("a", true), ("a/x", false), ("f", false)]);
        let current = members(&[
            ("", true),
            ("a", true),
            ("a/x", false),
            ("a/new", true),
            ("a/new/deep", false),
            ("new.txt", false),
            // A directory the snapshot has as a file: extraction replaces it.
            ("f", true),
            ("f/inner", false),
            ("workspace", true),
            ("workspace/w", false),
        ]);
        assert_eq!(
            extras(&wanted, Some(&current), &[PathBuf::from("workspace")]),
            [PathBuf::from("a/new"), PathBuf::from("new.txt")]
        );
        assert!(extras(&wanted, None, &[]).is_empty());
    }

    #[test]
    fn rm_commands_are_argument_vectors_split_by_size() {
        let many: Vec<PathBuf> = (0..3000)
            .map(|i| PathBuf::from(format!("f{i:05}")))
            .collect();
        let (commands, unnamable) = rm_commands(&many);
        assert!(unnamable.is_empty());
        assert!(commands.len() > 1);
        assert!(commands.iter().all(|c| c[..3] == ["rm", "-rf", "--"]));
        assert_eq!(commands.iter().map(|c| c.len() - 3).sum::<usize>(), 3000);
        assert_eq!(commands[0][3], "/clawops-state/f00000");
    }
}
