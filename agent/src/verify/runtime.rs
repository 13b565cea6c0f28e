//! Binaries that exist only in the running container. Anything written into a container after
//! it started lives in its writable layer and is gone when the container is recreated (every
//! update); the container's filesystem diff (`GET /containers/{id}/changes`) names those files.
//! The diff walks the whole tree on some storage drivers (fuse-overlayfs, vfs), so it is asked
//! for only when the image and the container disagree about a binary.
use std::collections::HashMap;

use super::{
    VerifyError,
    resolve::{Found, Lookup, short},
};
use crate::docker::{Engine, models::ChangeType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Modified,
    Added,
    Deleted,
}

/// The container's writable-layer changes.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    paths: HashMap<String, Change>,
}

impl Changes {
    pub fn from_pairs<I: IntoIterator<Item = (String, Change)>>(pairs: I) -> Self {
        Self {
            paths: pairs.into_iter().collect(),
        }
    }

    /// How `path` changed; a file below an added directory counts as added.
    pub fn of(&self, path: &str) -> Option<Change> {
        if let Some(c) = self.paths.get(path) {
            return Some(*c);
        }
        let mut p = path;
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if p.is_empty() {
                break;
            }
            if self.paths.get(p) == Some(&Change::Added) {
                return Some(Change::Added);
            }
        }
        None
    }
}

pub async fn changes(docker: &Engine, container: &str) -> Result<Changes, VerifyError> {
    let list = docker
        .changes(container)
        .await
        .map_err(|source| VerifyError::Diff {
            container: short(container).to_owned(),
            source,
        })?;
    Ok(Changes::from_pairs(list.into_iter().map(|c| {
        let kind = match c.kind {
            ChangeType::_0 => Change::Modified,
            ChangeType::_1 => Change::Added,
            ChangeType::_2 => Change::Deleted,
        };
        (c.path, kind)
    })))
}

/// How the running container's view of a binary differs from the image's.
#[derive(Debug, Clone, PartialEq)]
pub enum Drift {
    /// Same file in both.
    None,
    /// Not in the image; written into the container after it started.
    RuntimeOnly { path: String, detail: String },
    /// Not in the image; on a volume or bind mount, which outlives the container.
    FromMount { path: String, mount: String },
    /// The image has it, but the container resolves the name to another file or a changed one.
    Diverged {
        container_path: String,
        detail: String,
    },
    /// The image has it; the container has lost it.
    DeletedAtRuntime { path: String },
}

/// True when only the diff can tell what happened between the image and the container.
pub fn needs_diff(image: &Lookup, container: &Lookup) -> bool {
    match (image, container) {
        (Lookup::Found(i), Lookup::Found(c)) => !same_file(i, c),
        (_, Lookup::Found(_)) => true,
        _ => false,
    }
}

fn same_file(i: &Found, c: &Found) -> bool {
    i.path == c.path && i.target == c.target && i.size == c.size && i.mtime == c.mtime
}

/// Compares the two lookups of one name. `mounts`: destinations of the container's mounts.
pub fn drift(
    name: &str,
    image: &Lookup,
    container: &Lookup,
    changes: Option<&Changes>,
    mounts: &[String],
) -> Drift {
    let Some(c) = container.found() else {
        return match image {
            Lookup::Found(i) => Drift::DeletedAtRuntime {
                path: i.path.clone(),
            },
            _ => Drift::None,
        };
    };
    if let Some(drift) = on_mount(name, image, c, mounts) {
        return drift;
    }
    match image {
        Lookup::Found(i) if same_file(i, c) => Drift::None,
        Lookup::Found(i) => diverged(name, i, c, change_of(c, changes)),
        Lookup::NotExecutable(i) if i.target == c.target => Drift::RuntimeOnly {
            path: c.path.clone(),
            detail: format!(
                "made executable at runtime (mode {:04o} in the image): the chmod is lost on \
                 restart; set the mode in the Dockerfile",
                i.mode & 0o7777
            ),
        },
        _ => {
            let confirmed = matches!(
                change_of(c, changes),
                Some(Change::Added | Change::Modified)
            );
            let detail = if confirmed {
                format!(
                    "installed at runtime, will vanish on restart: add it to the Dockerfile \
                     ({} is in the container's writable layer, not in the image)",
                    c.path
                )
            } else {
                format!(
                    "installed at runtime, will vanish on restart: add it to the Dockerfile \
                     ({} is in the running container but not in the image)",
                    c.path
                )
            };
            Drift::RuntimeOnly {
                path: c.path.clone(),
                detail,
            }
        }
    }
}

/// How the container's writable layer changed the file (deletions aside).
fn change_of(f: &Found, changes: Option<&Changes>) -> Option<Change> {
    changes.and_then(|ch| {
        [ch.of(&f.path), ch.of(&f.target)]
            .into_iter()
            .flatten()
            .find(|c| *c != Change::Deleted)
    })
}

/// The container resolves the name on a mount, to something other than the image's file.
fn on_mount(name: &str, image: &Lookup, c: &Found, mounts: &[String]) -> Option<Drift> {
    let mount = mounts
        .iter()
        .find(|m| under(&c.path, m) || under(&c.target, m))
        .cloned()?;
    Some(match image {
        Lookup::Found(i) if same_file(i, c) => return None,
        Lookup::Found(i) => Drift::Diverged {
            container_path: c.path.clone(),
            detail: format!(
                "the running container resolves {name} to {} on the mount {mount}; \
                 the image's own is {}",
                c.path, i.path
            ),
        },
        _ => Drift::FromMount {
            path: c.path.clone(),
            mount,
        },
    })
}

/// Image and container both have the name, as different files.
fn diverged(name: &str, i: &Found, c: &Found, change: Option<Change>) -> Drift {
    if change.is_none() && i.path == c.path && i.target == c.target {
        // Same file, only a stat detail differs (e.g. timestamps across layers).
        return Drift::None;
    }
    let what = match change {
        Some(Change::Added) => "installed at runtime",
        _ => "changed at runtime",
    };
    let detail = if i.path == c.path {
        format!(
            "{} was {what}; a restart brings back the image's version",
            c.target
        )
    } else {
        format!(
            "the running container resolves {name} to {} ({what}); after a restart {} \
             runs instead",
            c.path, i.path
        )
    };
    Drift::Diverged {
        container_path: c.path.clone(),
        detail,
    }
}

fn under(path: &str, mount: &str) -> bool {
    let mount = mount.trim_end_matches('/');
    !mount.is_empty()
        && (path == mount
            || path
                .strip_prefix(mount)
                .is_some_and(|rest| rest.starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(path: &str, size: u64) -> Found {
        Found {
            path: path.into(),
            target: path.into(),
            size,
            mode: 0o100755,
            mtime: Some("t".into()),
        }
    }

    fn missing() -> Lookup {
        Lookup::Missing { notes: vec![] }
    }

    #[test]
    fn added_directory_covers_its_files() {
        let ch = Changes::from_pairs([
            ("/opt".to_string(), Change::Modified),
            ("/opt/tool".to_string(), Change::Added),
        ]);
        assert_eq!(ch.of("/opt/tool/bin/x"), Some(Change::Added));
        assert_eq!(ch.of("/opt/other"), None);
        assert_eq!(ch.of("/opt"), Some(Change::Modified));
    }

    #[test]
    fn runtime_only_when_the_image_lacks_it() {
        let c = Lookup::Found(found("/usr/local/bin/wacli", 10));
        assert!(needs_diff(&missing(), &c));
        let ch = Changes::from_pairs([("/usr/local/bin/wacli".to_string(), Change::Added)]);
        match drift("wacli", &missing(), &c, Some(&ch), &[]) {
            Drift::RuntimeOnly { detail, .. } => {
                assert!(detail.starts_with("installed at runtime, will vanish on restart"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mounts_outlive_the_container() {
        let c = Lookup::Found(found("/home/node/.openclaw/bin/x", 10));
        let d = drift("x", &missing(), &c, None, &["/home/node/.openclaw".into()]);
        assert!(matches!(d, Drift::FromMount { .. }), "{d:?}");
    }

    #[test]
    fn same_file_is_no_drift_and_needs_no_diff() {
        let i = Lookup::Found(found("/bin/gog", 10));
        assert!(!needs_diff(&i, &i.clone()));
        assert_eq!(drift("gog", &i, &i.clone(), None, &[]), Drift::None);
    }

    #[test]
    fn shadowed_and_modified() {
        let i = Lookup::Found(found("/usr/bin/gog", 10));
        let c = Lookup::Found(found("/usr/local/bin/gog", 20));
        let ch = Changes::from_pairs([("/usr/local/bin/gog".to_string(), Change::Added)]);
        match drift("gog", &i, &c, Some(&ch), &[]) {
            Drift::Diverged { detail, .. } => {
                assert!(detail.contains("after a restart"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        let c = Lookup::Found(found("/usr/bin/gog", 30));
        let ch = Changes::from_pairs([("/usr/bin/gog".to_string(), Change::Modified)]);
        match drift("gog", &i, &c, Some(&ch), &[]) {
            Drift::Diverged { detail, .. } => assert!(detail.contains("changed at runtime")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chmod_at_runtime() {
        let mut f = found("/bin/x", 1);
        f.mode = 0o100644;
        let i = Lookup::NotExecutable(f);
        let c = Lookup::Found(found("/bin/x", 1));
        match drift("x", &i, &c, None, &[]) {
            Drift::RuntimeOnly { detail, .. } => assert!(detail.contains("0644"), "{detail}"),
            other => panic!("{other:?}"),
        }
    }
}
