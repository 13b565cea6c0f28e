//! The build context as a tar, chosen the way the docker CLI chooses it: `.dockerignore` applied
//! while walking (an excluded directory is skipped unless an exception may re-include something
//! below it), the Dockerfile and `.dockerignore` always sent, owner root, modes and mtimes kept.
//! Unlike the CLI, anything that would reach outside the context is refused: a symlink whose
//! target resolves outside it, a `dockerfile:` with `..` escaping it, a context outside the repo.
//!
//! [`plan`] walks and checks everything first (so errors come before a byte is sent);
//! [`super::archive`] then streams the files from disk without buffering them.
use std::{
    ffi::OsString,
    io,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Component, Path, PathBuf},
};

use super::dockerignore::{DockerIgnore, IgnoreError, go_clean};

const DOCKERIGNORE: &str = ".dockerignore";

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(
        "build context {0} does not exist or is not a directory: check `build: context:` in the compose file (or `[build] context` in agent.toml)"
    )]
    ContextMissing(PathBuf),
    #[error(
        "build context {context} is outside {root}: clawops only builds from inside the repository; change `build: context:` in the compose file (or `[build] context` in agent.toml)"
    )]
    ContextOutsideRoot { context: PathBuf, root: PathBuf },
    #[error(
        "dockerfile {dockerfile:?} is outside the build context {context}: move it into the context or point `build: dockerfile:` at a file inside it"
    )]
    DockerfileOutside {
        dockerfile: String,
        context: PathBuf,
    },
    #[error("no Dockerfile at {0}: add one or set `build: dockerfile:` in the compose file")]
    DockerfileMissing(PathBuf),
    #[error("{}: {source}", path.display())]
    Ignore { path: PathBuf, source: IgnoreError },
    #[error(
        "{link} in the build context is a symlink to {target}, which is outside the context {context}: \
         Docker would send a link that resolves to nothing (or to the wrong file) in the image. \
         Replace it with a copy, or exclude it in .dockerignore"
    )]
    SymlinkEscapes {
        link: String,
        target: PathBuf,
        context: PathBuf,
    },
    #[error("reading the build context at {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} changed while the build context was being sent; run the build again")]
    Changed(String),
    #[error("sending the build context: {0}")]
    Send(io::Error),
    #[error(transparent)]
    Untrusted(#[from] crate::untrusted::UntrustedReadError),
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct ContextOptions {
    /// The build context directory (absolute, or relative to the working directory).
    pub context: PathBuf,
    /// The Dockerfile relative to the context (or absolute inside it); default `Dockerfile`.
    pub dockerfile: Option<String>,
    /// The context must be this directory or inside it (the repository); `None`: no constraint.
    pub root: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { size: u64 },
    Symlink { target: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the context.
    pub path: PathBuf,
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: u64,
}

/// The checked list of what goes into the tar.
#[derive(Debug, Clone)]
pub struct ContextPlan {
    /// The context directory, canonical.
    pub dir: PathBuf,
    /// The Dockerfile's path inside the context, slash-separated (what the build API wants).
    pub dockerfile: String,
    /// The Dockerfile's text (to tell the caller what the builder will need, e.g. BuildKit).
    pub dockerfile_text: String,
    pub entries: Vec<Entry>,
    /// Paths left out by `.dockerignore` (an excluded directory counts once).
    pub excluded: usize,
    /// Sockets, FIFOs and devices: never sent.
    pub skipped_special: Vec<String>,
    /// Sum of the file sizes.
    pub total_bytes: u64,
}

impl ContextPlan {
    pub fn files(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .count()
    }

    pub fn contains(&self, rel: &str) -> bool {
        self.entries.iter().any(|e| e.path == Path::new(rel))
    }
}

/// Walks the context, applies `.dockerignore` and checks every path.
pub fn plan(opts: &ContextOptions) -> Result<ContextPlan, ContextError> {
    let raw = std::path::absolute(&opts.context).map_err(io_err(&opts.context))?;
    if !raw.is_dir() {
        return Err(ContextError::ContextMissing(raw));
    }
    let dir = raw.canonicalize().map_err(io_err(&raw))?;
    if let Some(root) = &opts.root {
        let root = root.canonicalize().map_err(io_err(root))?;
        if !dir.starts_with(&root) {
            return Err(ContextError::ContextOutsideRoot { context: dir, root });
        }
    }
    let dockerfile = dockerfile_in_context(&dir, opts.dockerfile.as_deref())?;
    let df_path = dir.join(&dockerfile);
    let df_meta = std::fs::symlink_metadata(&df_path)
        .map_err(|_| ContextError::DockerfileMissing(df_path.clone()))?;
    if df_meta.file_type().is_symlink() {
        check_symlink(&dir, &df_path, &dockerfile)?;
    }
    if !df_path.is_file() {
        return Err(ContextError::DockerfileMissing(df_path));
    }
    // Bounded reads of regular files: a FIFO or /dev/zero must not hang or bloat the agent.
    // The Dockerfile may be a symlink inside the context (checked above): read its target.
    let df_real = std::fs::canonicalize(&df_path).map_err(io_err(&df_path))?;
    let dockerfile_text = crate::untrusted::read_text(&df_real, crate::untrusted::MAX_TEXT_FILE)?;

    let ignore_path = dir.join(DOCKERIGNORE);
    let mut ignore =
        match crate::untrusted::read_text(&ignore_path, crate::untrusted::MAX_TEXT_FILE) {
            Ok(text) => DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore {
                path: ignore_path.clone(),
                source,
            })?,
            Err(crate::untrusted::UntrustedReadError::NotFound { .. }) => DockerIgnore::default(),
            Err(e) => return Err(e.into()),
        };
    // The docker CLI re-includes these two when the patterns exclude them.
    for keep in [DOCKERIGNORE, dockerfile.as_str()] {
        if ignore.matches_single_parent(keep) {
            ignore
                .push(&format!("!{keep}"))
                .map_err(|source| ContextError::Ignore {
                    path: ignore_path.clone(),
                    source,
                })?;
        }
    }

    let mut walk = Walk {
        dir: &dir,
        ignore: &ignore,
        plan: ContextPlan {
            dir: dir.clone(),
            dockerfile,
            dockerfile_text,
            entries: Vec::new(),
            excluded: 0,
            skipped_special: Vec::new(),
            total_bytes: 0,
        },
    };
    walk.dir_entries(&dir, Path::new(""))?;
    Ok(walk.plan)
}

/// The Dockerfile's path relative to the context; refuses one that escapes it.
fn dockerfile_in_context(dir: &Path, dockerfile: Option<&str>) -> Result<String, ContextError> {
    let outside = |d: &str| ContextError::DockerfileOutside {
        dockerfile: d.to_owned(),
        context: dir.to_owned(),
    };
    let Some(given) = dockerfile.filter(|d| !d.trim().is_empty()) else {
        // The CLI falls back to a lowercase `dockerfile`.
        if !dir.join("Dockerfile").exists() && dir.join("dockerfile").is_file() {
            return Ok("dockerfile".into());
        }
        return Ok("Dockerfile".into());
    };
    let rel = if Path::new(given).is_absolute() {
        let abs = PathBuf::from(go_clean(given));
        let abs = abs.canonicalize().unwrap_or(abs);
        match abs.strip_prefix(dir) {
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => return Err(outside(given)),
        }
    } else {
        go_clean(given)
    };
    if rel == "." || rel == ".." || rel.starts_with("../") {
        return Err(outside(given));
    }
    Ok(rel)
}

struct Walk<'a> {
    dir: &'a Path,
    ignore: &'a DockerIgnore,
    plan: ContextPlan,
}

impl Walk<'_> {
    fn dir_entries(&mut self, abs: &Path, rel: &Path) -> Result<(), ContextError> {
        let mut names: Vec<OsString> = std::fs::read_dir(abs)
            .map_err(io_err(abs))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(abs))?;
        // Go's filepath.Walk order: by name, bytewise.
        names.sort();
        for name in names {
            let abs = abs.join(&name);
            let rel = rel.join(&name);
            self.entry(&abs, &rel)?;
        }
        Ok(())
    }

    fn entry(&mut self, abs: &Path, rel: &Path) -> Result<(), ContextError> {
        let meta = std::fs::symlink_metadata(abs).map_err(io_err(abs))?;
        let rel_str = rel.to_string_lossy();
        let ft = meta.file_type();
        if self.ignore.matches(&rel_str) {
            // An excluded directory is still walked when an exception may re-include
            // something below it; the directory itself is not sent (as in Docker).
            if ft.is_dir()
                && self.ignore.has_exclusions()
                && self.ignore.exception_may_apply_under(&rel_str)
            {
                return self.dir_entries(abs, rel);
            }
            self.plan.excluded += 1;
            return Ok(());
        }
        let mode = meta.mode() & 0o7777;
        let mtime = meta.mtime().max(0) as u64;
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            self.plan.total_bytes += meta.len();
            EntryKind::File { size: meta.len() }
        } else if ft.is_symlink() {
            let target = check_symlink(self.dir, abs, &rel_str)?;
            EntryKind::Symlink { target }
        } else if ft.is_socket() || ft.is_fifo() || ft.is_block_device() || ft.is_char_device() {
            self.plan.skipped_special.push(rel_str.into_owned());
            return Ok(());
        } else {
            return Ok(());
        };
        let is_dir = kind == EntryKind::Dir;
        self.plan.entries.push(Entry {
            path: rel.to_owned(),
            kind,
            mode,
            mtime,
        });
        if is_dir {
            self.dir_entries(abs, rel)?;
        }
        Ok(())
    }
}

/// Returns the link's target when it resolves inside `dir`.
fn check_symlink(dir: &Path, link: &Path, rel: &str) -> Result<PathBuf, ContextError> {
    let target = std::fs::read_link(link).map_err(io_err(link))?;
    let joined = if target.is_absolute() {
        target.clone()
    } else {
        link.parent().unwrap_or(dir).join(&target)
    };
    let resolved = resolve_existing_prefix(&joined);
    if resolved.starts_with(dir) {
        Ok(target)
    } else {
        Err(ContextError::SymlinkEscapes {
            link: rel.to_owned(),
            target,
            context: dir.to_owned(),
        })
    }
}

/// Canonicalizes the longest existing ancestor of `path` and appends the rest lexically, so a
/// dangling link is judged by where it would point.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<OsString> = Vec::new();
    loop {
        if let Ok(canon) = existing.canonicalize() {
            let mut out = canon;
            for part in rest.iter().rev() {
                match Path::new(part).components().next() {
                    Some(Component::ParentDir) => {
                        out.pop();
                    }
                    Some(Component::CurDir) | None => {}
                    _ => out.push(part),
                }
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => {
                // `..` at the end of a path has no file_name: drop it lexically.
                let cleaned = go_clean(&existing.to_string_lossy());
                if cleaned == existing.to_string_lossy() {
                    return existing;
                }
                existing = PathBuf::from(cleaned);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Read, os::unix::fs::symlink};

    use super::*;
    use crate::build::archive::write_tar;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn opts(dir: &Path) -> ContextOptions {
        ContextOptions {
            context: dir.to_owned(),
            dockerfile: None,
            root: None,
        }
    }

    fn tar_names(plan: &ContextPlan) -> Vec<String> {
        let bytes = write_tar(plan, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let mut name = e.path().unwrap().to_string_lossy().into_owned();
                if e.header().entry_type().is_dir() {
                    name = name.trim_end_matches('/').to_owned() + "/";
                }
                name
            })
            .collect()
    }

    #[test]
    fn dockerignore_is_applied_and_build_files_always_sent() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "Dockerfile", "FROM scratch\n");
        write(d, ".dockerignore", "*\n!src\nsrc/secret.txt\n");
        write(d, "src/main.js", "x");
        write(d, "src/secret.txt", "s");
        write(d, "node_modules/a/index.js", "y");
        write(d, "README.md", "r");
        let plan = plan(&opts(d)).unwrap();
        let names = tar_names(&plan);
        assert_eq!(
            names,
            [".dockerignore", "Dockerfile", "src/", "src/main.js"],
            "{names:?}"
        );
        assert_eq!(plan.excluded, 3, "node_modules, README.md, src/secret.txt");
    }

    #[test]
    fn exception_inside_excluded_dir_is_sent_without_the_dir_entry() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "Dockerfile", "FROM scratch\n");
        write(d, ".dockerignore", "build\n!build/keep.txt\n");
        write(d, "build/keep.txt", "k");
        write(d, "build/drop.txt", "d");
        let names = tar_names(&plan(&opts(d)).unwrap());
        assert_eq!(names, [".dockerignore", "Dockerfile", "build/keep.txt"]);
    }

    #[test]
    fn nested_dockerfile_in_excluded_dir_is_still_sent() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "docker/app.Dockerfile", "FROM scratch\n");
        write(d, "docker/other", "o");
        write(d, ".dockerignore", "docker\n.dockerignore\n");
        let mut o = opts(d);
        o.dockerfile = Some("./docker/app.Dockerfile".into());
        let plan = plan(&o).unwrap();
        assert_eq!(plan.dockerfile, "docker/app.Dockerfile");
        let names = tar_names(&plan);
        assert_eq!(names, [".dockerignore", "docker/app.Dockerfile"]);
    }

    #[test]
    fn symlinks_inside_are_kept_outside_refused_unless_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("ctx");
        write(&d, "Dockerfile", "FROM scratch\n");
        write(&d, "real.txt", "r");
        write(dir.path(), "outside.txt", "secret");
        symlink("real.txt", d.join("inside")).unwrap();
        symlink("sub/../real.txt", d.join("dotted")).unwrap();
        symlink("../outside.txt", d.join("escape")).unwrap();
        let err = plan(&opts(&d)).unwrap_err();
        assert!(
            matches!(&err, ContextError::SymlinkEscapes { link, .. } if link == "escape"),
            "{err}"
        );
        assert!(err.to_string().contains(".dockerignore"), "{err}");
        std::fs::remove_file(d.join("escape")).unwrap();
        symlink("/etc/passwd", d.join("abs")).unwrap();
        assert!(matches!(
            plan(&opts(&d)),
            Err(ContextError::SymlinkEscapes { .. })
        ));
        std::fs::remove_file(d.join("abs")).unwrap();
        symlink("../../nowhere/x", d.join("dangling")).unwrap();
        assert!(matches!(
            plan(&opts(&d)),
            Err(ContextError::SymlinkEscapes { .. })
        ));
        write(&d, ".dockerignore", "dangling\n");
        let plan = plan(&opts(&d)).unwrap();
        assert!(plan.contains("inside") && plan.contains("dotted"));
        let bytes = write_tar(&plan, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let link = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap() == Path::new("inside"))
            .unwrap();
        assert_eq!(link.link_name().unwrap().unwrap(), Path::new("real.txt"));
    }

    #[test]
    fn context_and_dockerfile_must_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        write(&repo, "app/Dockerfile", "FROM scratch\n");
        write(dir.path(), "other/Dockerfile", "FROM scratch\n");
        let mut o = ContextOptions {
            context: repo.join("app/../../other"),
            dockerfile: None,
            root: Some(repo.clone()),
        };
        assert!(matches!(
            plan(&o),
            Err(ContextError::ContextOutsideRoot { .. })
        ));
        o.context = repo.join("app");
        o.dockerfile = Some("../Dockerfile".into());
        assert!(matches!(
            plan(&o),
            Err(ContextError::DockerfileOutside { .. })
        ));
        o.dockerfile = Some("sub/../../x".into());
        assert!(matches!(
            plan(&o),
            Err(ContextError::DockerfileOutside { .. })
        ));
        o.dockerfile = Some(dir.path().join("other/Dockerfile").display().to_string());
        assert!(matches!(
            plan(&o),
            Err(ContextError::DockerfileOutside { .. })
        ));
        o.dockerfile = Some(repo.join("app/Dockerfile").display().to_string());
        assert_eq!(plan(&o).unwrap().dockerfile, "Dockerfile");
        o.dockerfile = Some("Missing.Dockerfile".into());
        assert!(matches!(plan(&o), Err(ContextError::DockerfileMissing(_))));
    }

    #[test]
    fn files_keep_mode_and_root_ownership_and_long_names() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "Dockerfile", "FROM scratch\n");
        write(d, "run.sh", "#!/bin/sh\n");
        std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(120));
        write(d, &long, "long");
        let plan = plan(&opts(d)).unwrap();
        let bytes = write_tar(&plan, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen_long = false;
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 0);
            let path = e.path().unwrap().into_owned();
            if path == Path::new("run.sh") {
                assert_eq!(e.header().mode().unwrap() & 0o777, 0o750);
            }
            if path == Path::new(&long) {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                assert_eq!(s, "long");
                seen_long = true;
            }
        }
        assert!(seen_long);
    }

    #[test]
    fn bad_dockerignore_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM scratch\n");
        write(dir.path(), ".dockerignore", "ok\n[broken\n");
        let err = plan(&opts(dir.path())).unwrap_err().to_string();
        assert!(
            err.contains(".dockerignore") && err.contains("line 2"),
            "{err}"
        );
    }
}
