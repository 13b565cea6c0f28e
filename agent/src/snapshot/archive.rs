//! The tar side of snapshots (blocking code): copying the engine's archives into a snapshot
//! under new names, reading the filesystem when there is no engine route, listing a snapshot's
//! members, and turning one directory of a snapshot back into an archive for the engine.
//!
//! Member names in a snapshot are the host path without its leading `/`
//! (`home/u/.openclaw/openclaw.json`), so a snapshot says by itself where each member belongs;
//! the manifest (the last member) lists the directories and how each was read.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Read, Write},
    path::{Component, Path, PathBuf},
};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{MANIFEST, Manifest, SnapshotDir, SnapshotError};

pub(super) type SnapshotWriter = tar::Builder<BufWriter<File>>;

/// The name of `dir` inside a snapshot: the absolute path without the leading `/`.
pub(super) fn member_root(dir: &Path) -> PathBuf {
    dir.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Maps a member name to its new name, or `None` to leave the member out.
pub(super) type Rename<'a> = &'a dyn Fn(&Path) -> Option<PathBuf>;

/// Copies every member of `input` whose name `rename` maps into `out`, keeping its header
/// (type, mode, owner, times), extended attributes and data. Hard link targets are renamed
/// the same way; symlink targets are kept as they are.
pub(super) fn copy_renamed<W: Write>(
    input: impl Read,
    out: &mut tar::Builder<W>,
    rename: Rename<'_>,
) -> io::Result<u64> {
    let mut archive = tar::Archive::new(input);
    let mut copied = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let Some(name) = rename(&entry.path()?) else {
            continue;
        };
        // Keep xattrs and exact ids/times; names and sizes are written anew.
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(extensions) = entry.pax_extensions()? {
            for ext in extensions {
                let ext = ext?;
                let key = ext.key().map_err(io::Error::other)?;
                if !matches!(key, "path" | "linkpath" | "size") && !key.starts_with("GNU.sparse") {
                    pax.push((key.to_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        if !pax.is_empty() {
            out.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        let mut header = entry.header().clone();
        if kind.is_hard_link() || kind.is_symlink() {
            let target = entry.link_name()?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a link without a target")
            })?;
            let target = if kind.is_hard_link() {
                rename(&target).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("hard link {} points outside the directory", name.display()),
                    )
                })?
            } else {
                target.into_owned()
            };
            header.set_size(0);
            out.append_link(&mut header, &name, &target)?;
        } else {
            out.append_data(&mut header, &name, &mut entry)?;
        }
        copied += 1;
    }
    Ok(copied)
}

/// The rename for an engine archive of one directory: its members are named
/// `<basename>/<rel>`; they become `<root>/<rel>`, except those at or below `excluded`.
pub(super) fn from_engine<'a>(
    root: &'a Path,
    excluded: &'a [PathBuf],
) -> impl Fn(&Path) -> Option<PathBuf> + 'a {
    move |name| {
        let mut components = name.components();
        components.next()?;
        let rel = components.as_path();
        if excluded.iter().any(|e| rel.starts_with(e)) {
            return None;
        }
        Some(join(root, rel))
    }
}

/// The rename for uploading the members of `root` (a directory in a snapshot) as `to/<rel>`.
pub(super) fn to_engine<'a>(
    root: &'a Path,
    to: &'a Path,
) -> impl Fn(&Path) -> Option<PathBuf> + 'a {
    move |name| name.strip_prefix(root).ok().map(|rel| join(to, rel))
}

fn join(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_owned()
    } else {
        root.join(rel)
    }
}

/// Appends `dir` read by this process. Names the path it could not read in the error.
pub(super) fn append_filesystem<W: Write>(
    out: &mut tar::Builder<W>,
    dir: &Path,
    root: &Path,
) -> Result<(), (PathBuf, io::Error)> {
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let rel = path.strip_prefix(dir).unwrap_or(Path::new(""));
        let meta = std::fs::symlink_metadata(&path).map_err(|e| (path.clone(), e))?;
        out.append_path_with_name(&path, join(root, rel))
            .map_err(|e| (path.clone(), e))?;
        if meta.is_dir() {
            let mut children = std::fs::read_dir(&path)
                .and_then(|d| {
                    d.map(|e| e.map(|e| e.path()))
                        .collect::<io::Result<Vec<_>>>()
                })
                .map_err(|e| (path.clone(), e))?;
            // Reverse order on the stack so members come out sorted.
            children.sort();
            children.reverse();
            stack.extend(children);
        }
    }
    Ok(())
}

pub(super) fn append_manifest<W: Write>(
    out: &mut tar::Builder<W>,
    manifest: &Manifest,
) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    header.set_uid(nix::unistd::Uid::effective().as_raw().into());
    header.set_gid(nix::unistd::Gid::effective().as_raw().into());
    header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    out.append_data(&mut header, MANIFEST, data.as_slice())
}

/// What a snapshot holds: its manifest and, per directory, the relative path of every member
/// with whether it is a directory.
#[derive(Debug, Default)]
pub(super) struct Contents {
    pub dirs: Vec<SnapshotDir>,
    pub members: BTreeMap<PathBuf, BTreeMap<PathBuf, bool>>,
}

impl Contents {
    pub fn of(&self, dir: &Path) -> Option<&BTreeMap<PathBuf, bool>> {
        self.members.get(dir)
    }

    pub fn dir(&self, dir: &Path) -> Option<&SnapshotDir> {
        self.dirs.iter().find(|d| d.path == dir)
    }
}

/// Reads a snapshot through. Snapshots from before manifests existed hold the same names;
/// their directories are the shortest directory members.
pub(super) fn contents(path: &Path) -> Result<Contents, SnapshotError> {
    let corrupt = |why: String| SnapshotError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let file = File::open(path).map_err(|source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let mut names: Vec<(PathBuf, bool)> = Vec::new();
    let mut manifest: Option<Manifest> = None;
    for entry in archive.entries().map_err(|e| corrupt(e.to_string()))? {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .into_owned();
        if name == Path::new(MANIFEST) {
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| corrupt(e.to_string()))?;
            manifest = Some(serde_json::from_slice(&data).map_err(|e| corrupt(e.to_string()))?);
            continue;
        }
        let is_dir = entry.header().entry_type().is_dir();
        names.push((name.components().collect(), is_dir));
    }
    let dirs = match manifest {
        Some(m) => m.dirs,
        None => legacy_dirs(&names),
    };
    let mut members: BTreeMap<PathBuf, BTreeMap<PathBuf, bool>> = BTreeMap::new();
    for (name, is_dir) in names {
        // The deepest directory wins, in case one listed directory lies inside another.
        let owner = dirs
            .iter()
            .filter_map(|d| name.strip_prefix(member_root(&d.path)).ok().map(|r| (d, r)))
            .max_by_key(|(d, _)| d.path.components().count());
        if let Some((d, rel)) = owner {
            members
                .entry(d.path.clone())
                .or_default()
                .insert(rel.to_owned(), is_dir);
        }
    }
    Ok(Contents { dirs, members })
}

fn legacy_dirs(names: &[(PathBuf, bool)]) -> Vec<SnapshotDir> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for (name, is_dir) in names {
        if !is_dir || roots.iter().any(|r| name.starts_with(r)) {
            continue;
        }
        roots.retain(|r| !r.starts_with(name));
        roots.push(name.clone());
    }
    roots
        .into_iter()
        .map(|r| SnapshotDir {
            path: Path::new("/").join(r),
            method: super::Method::Filesystem,
            excluded: Vec::new(),
        })
        .collect()
}

/// A blocking `Read` over chunks an async task sends: the engine's download as it arrives.
pub(super) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            chunk: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_are_rebased_and_exclusions_dropped() {
        let excluded = vec![PathBuf::from("workspace")];
        let root = member_root(Path::new("/home/u/.openclaw"));
        let rename = from_engine(&root, &excluded);
        assert_eq!(rename(Path::new(".openclaw")), Some(root.clone()));
        assert_eq!(
            rename(Path::new(".openclaw/a/b")),
            Some(PathBuf::from("home/u/.openclaw/a/b"))
        );
        assert_eq!(rename(Path::new(".openclaw/workspace")), None);
        assert_eq!(rename(Path::new(".openclaw/workspace/x")), None);
        assert!(rename(Path::new(".openclaw/workspaces")).is_some());
        let back = to_engine(&root, Path::new("clawops-state"));
        assert_eq!(
            back(Path::new("home/u/.openclaw/a")),
            Some(PathBuf::from("clawops-state/a"))
        );
        assert_eq!(back(Path::new("home/u/.openclawx/a")), None);
    }

    #[test]
    fn copies_keep_headers_links_and_long_names() {
        let long = format!("{}/f", "d".repeat(150));
        let mut input = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o700);
        dir.set_uid(1000);
        dir.set_size(0);
        input.append_data(&mut dir, "base/", io::empty()).unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_mode(0o600);
        file.set_uid(1000);
        file.set_gid(1001);
        file.set_size(5);
        input
            .append_data(&mut file, format!("base/{long}"), &b"hello"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Link);
        link.set_size(0);
        link.set_mode(0o600);
        link.set_uid(1000);
        link.set_gid(1001);
        input
            .append_link(&mut link, "base/hl", format!("base/{long}"))
            .unwrap();
        let input = input.into_inner().unwrap();

        let root = PathBuf::from("srv/state");
        let mut out = tar::Builder::new(Vec::new());
        let n = copy_renamed(input.as_slice(), &mut out, &from_engine(&root, &[])).unwrap();
        assert_eq!(n, 3);
        let out = out.into_inner().unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = String::new();
                e.read_to_string(&mut data).unwrap();
                (
                    e.path().unwrap().into_owned(),
                    e.header().mode().unwrap(),
                    e.header().uid().unwrap(),
                    e.link_name().unwrap().map(|l| l.into_owned()),
                    data,
                )
            })
            .collect();
        assert_eq!(entries[0].0, root);
        assert_eq!(entries[0].1, 0o700);
        assert_eq!(entries[1].0, root.join(&long));
        assert_eq!((entries[1].1, entries[1].2), (0o600, 1000));
        assert_eq!(entries[1].4, "hello");
        assert_eq!(entries[2].3, Some(root.join(&long)));
    }
}
