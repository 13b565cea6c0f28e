//! Before a snapshot is written: will it fit? A full disk mid-snapshot fails the update late and
//! can take the gateway's own writes down with it; `[snapshots] max_mb` caps what one may take.
use std::path::{Path, PathBuf};

use super::SnapshotError;

/// Room left beside the snapshot for everything else on the disk.
const MARGIN_BYTES: u64 = 64 * 1024 * 1024;

/// Checks that `dirs` (what the snapshot will hold) fit under `max_mb` (0: no cap) and in the
/// free space of `folder`'s filesystem.
pub(super) async fn check(
    folder: &Path,
    dirs: &[PathBuf],
    max_mb: u64,
) -> Result<(), SnapshotError> {
    let folder = folder.to_owned();
    let dirs = dirs.to_vec();
    tokio::task::spawn_blocking(move || {
        let need: u64 = dirs.iter().map(|d| tree_size(d)).sum();
        let stat = nix::sys::statvfs::statvfs(&folder).map_err(|e| SnapshotError::Io {
            path: folder.clone(),
            source: e.into(),
        })?;
        let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
        decide(&folder, need, free, max_mb)
    })
    .await
    .expect("snapshot space task")
}

fn decide(folder: &Path, need: u64, free: u64, max_mb: u64) -> Result<(), SnapshotError> {
    const MIB: u64 = 1024 * 1024;
    if max_mb > 0 && need > max_mb.saturating_mul(MIB) {
        return Err(SnapshotError::TooLarge {
            size_mb: need.div_ceil(MIB),
            max_mb,
        });
    }
    if need.saturating_add(MARGIN_BYTES) > free {
        return Err(SnapshotError::NoSpace {
            folder: folder.to_owned(),
            need_mb: need.div_ceil(MIB),
            free_mb: free / MIB,
        });
    }
    Ok(())
}

/// Bytes of the regular files below `dir`, symlinks not followed. What the agent cannot read
/// is not counted: the estimate errs low, the write itself still fails cleanly when full.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_then_free_space() {
        let f = Path::new("/s");
        const MIB: u64 = 1024 * 1024;
        decide(f, 10 * MIB, 1000 * MIB, 0).unwrap();
        decide(f, 10 * MIB, 1000 * MIB, 10).unwrap();
        let e = decide(f, 11 * MIB, 1000 * MIB, 10).unwrap_err();
        assert!(e.to_string().contains("max_mb"), "{e}");
        let e = decide(f, 10 * MIB, 20 * MIB, 0).unwrap_err();
        assert!(e.to_string().contains("free"), "{e}");
    }
}
