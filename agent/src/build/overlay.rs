//! A thin overlay on top of a base image: `[build] overlay = "/abs/path/Dockerfile"`, a file the
//! owner keeps outside the checkout, built `FROM` the base (`ARG BASE_IMAGE`) with its folder as
//! the context (`.dockerignore` honoured). Skill binaries go there: a layer that builds in
//! seconds, with no change to upstream files.
//!
//! The overlaid image carries two labels: [`LABEL_OVERLAY`], a hash of the overlay's context
//! (update's no-op check compares it, so an edited overlay is rebuilt), and
//! [`LABEL_OVERLAY_BASE`], the base image's id (verify looks binaries up there too, to say which
//! of the two provides each).
//!
//! Public API: [`build`] with any base image reference (built here, or pulled), [`check_path`]
//! for the config check at start, [`context_hash`] and [`is_current`].
use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use super::{
    BuildError, BuildSpec, Builder, BuilderChoice, ContextError, ContextOptions, ContextPlan,
    context, context::EntryKind, engine, info_line,
};
use crate::{docker::Engine, events::EventSink};

/// Hash of the overlay context the image was built from.
pub const LABEL_OVERLAY: &str = "clawops.overlay";
/// Id of the base image the overlay was built on.
pub const LABEL_OVERLAY_BASE: &str = "clawops.overlay-base";
/// The build argument the overlay's `FROM ${BASE_IMAGE}` reads.
pub const BASE_ARG: &str = "BASE_IMAGE";
const KEY: &str = "[build] overlay";

/// What to build on top of a base image.
#[derive(Debug, Clone)]
pub struct OverlaySpec {
    /// The overlay's Dockerfile, absolute; its folder is the build context.
    pub dockerfile: PathBuf,
    /// Labels of the result (our project and sha labels, `[build] labels`).
    pub labels: HashMap<String, String>,
    pub builder: BuilderChoice,
    pub no_cache: bool,
    pub timeout: Duration,
}

impl OverlaySpec {
    /// The overlay of `spec`'s build: same labels, builder, cache choice and timeout.
    pub fn for_build(spec: &BuildSpec, dockerfile: PathBuf) -> Self {
        Self {
            dockerfile,
            labels: spec.image_labels(),
            builder: spec.builder,
            no_cache: spec.no_cache,
            timeout: spec.timeout,
        }
    }
}

/// The overlaid image.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayImage {
    pub image_id: String,
    /// The hash in [`LABEL_OVERLAY`].
    pub context_hash: String,
    pub base_image_id: String,
    pub builder: Builder,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{KEY} = {0:?}: give an absolute path to the overlay's Dockerfile")]
    NotAbsolute(PathBuf),
    #[error("{KEY} = {path:?}: {source}; create the file or fix the path")]
    Missing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{KEY} = {0:?} is a symlink: point the key at the file itself")]
    Symlink(PathBuf),
    #[error("{KEY} = {0:?} is not a regular file: point the key at the overlay's Dockerfile")]
    NotFile(PathBuf),
    #[error("{KEY} = {path:?} cannot be read by the agent: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{KEY}: {0}")]
    Context(#[from] ContextError),
    #[error("{KEY}: cannot inspect the base image {base}: {source}")]
    NoBase {
        base: String,
        source: crate::docker::DockerError,
    },
    #[error("{KEY}: hashing the context stopped unexpectedly: {0}")]
    Task(String),
}

/// Refuses a path that is not absolute, is a symlink (the last component), is not a regular
/// file, or cannot be read.
pub fn check_path(path: &Path) -> Result<(), OverlayError> {
    if !path.is_absolute() {
        return Err(OverlayError::NotAbsolute(path.to_owned()));
    }
    let meta = std::fs::symlink_metadata(path).map_err(|source| OverlayError::Missing {
        path: path.to_owned(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(OverlayError::Symlink(path.to_owned()));
    }
    if !meta.is_file() {
        return Err(OverlayError::NotFile(path.to_owned()));
    }
    std::fs::File::open(path).map_err(|source| OverlayError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}

/// The overlay's context, checked and walked like a repository's (its folder, `.dockerignore`).
pub fn plan(dockerfile: &Path) -> Result<ContextPlan, OverlayError> {
    check_path(dockerfile)?;
    let name = dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let opts = ContextOptions {
        context: dockerfile.parent().unwrap_or(Path::new("/")).to_owned(),
        dockerfile: name,
        root: None,
    };
    Ok(context::plan(&opts)?)
}

/// A hash of everything the overlay build is sent: names, kinds, modes and file contents.
/// Modification times are left out, so touching a file does not force a rebuild.
pub fn context_hash(dockerfile: &Path) -> Result<String, OverlayError> {
    hash_plan(&plan(dockerfile)?)
}

fn hash_plan(plan: &ContextPlan) -> Result<String, OverlayError> {
    let mut hasher = Sha256::new();
    hasher.update(plan.dockerfile.as_bytes());
    hasher.update([0]);
    let mut buf = vec![0u8; 64 * 1024];
    for entry in &plan.entries {
        hasher.update(entry.path.to_string_lossy().as_bytes());
        hasher.update(entry.mode.to_le_bytes());
        match &entry.kind {
            EntryKind::Dir => hasher.update(b"d"),
            EntryKind::Symlink { target } => {
                hasher.update(b"l");
                hasher.update(target.to_string_lossy().as_bytes());
            }
            EntryKind::File { size } => {
                hasher.update(b"f");
                hasher.update(size.to_le_bytes());
                let path = plan.dir.join(&entry.path);
                let io = |source| ContextError::Io {
                    path: path.clone(),
                    source,
                };
                let mut file = std::fs::File::open(&path).map_err(io)?;
                loop {
                    let n = file.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
            }
        }
        hasher.update([0]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Builds the overlay `FROM base_ref` (any reference the engine resolves: a tag built here, a
/// pulled image) and tags the result with every one of `tags` (the first names the build).
/// Reports build lines to `sink`; phases are the caller's.
pub async fn build(
    docker: &Engine,
    spec: &OverlaySpec,
    base_ref: &str,
    tags: &[String],
    sink: &EventSink,
) -> Result<OverlayImage, BuildError> {
    let started = Instant::now();
    let Some(first) = tags.first() else {
        return Err(BuildError::InvalidSpec(
            "an overlay build needs a tag".into(),
        ));
    };
    let base_image_id = docker
        .inspect_image(base_ref)
        .await
        .map_err(|source| OverlayError::NoBase {
            base: base_ref.to_owned(),
            source,
        })?
        .id
        .unwrap_or_default();
    let dockerfile = spec.dockerfile.clone();
    let (plan, context_hash) = tokio::task::spawn_blocking(move || {
        let plan = plan(&dockerfile)?;
        let hash = hash_plan(&plan)?;
        Ok::<_, OverlayError>((plan, hash))
    })
    .await
    .map_err(|e| OverlayError::Task(e.to_string()))??;
    let plan = Arc::new(plan);
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_OVERLAY.into(), context_hash.clone());
    labels.insert(LABEL_OVERLAY_BASE.into(), base_image_id.clone());
    let request = engine::Request {
        plan: &plan,
        tag: first,
        labels,
        args: HashMap::from([(BASE_ARG.to_owned(), base_ref.to_owned())]),
        target: None,
        no_cache: spec.no_cache,
        timeout: spec.timeout,
    };
    let info = docker.info().await?;
    let (image_id, builder) =
        engine::build_with_fallback(docker, &request, &info, spec.builder, sink).await?;
    for t in &tags[1..] {
        docker.tag(&image_id, t).await?;
    }
    let duration = started.elapsed();
    info_line(
        sink,
        format!(
            "overlay {} built on {base_ref} in {:.1}s",
            spec.dockerfile.display(),
            duration.as_secs_f64()
        ),
    );
    Ok(OverlayImage {
        image_id,
        context_hash,
        base_image_id,
        builder,
        duration,
    })
}

/// Was `image` built with the overlay as it is now (or without one, when none is configured)?
/// An overlay that cannot be read counts as changed: the build then says what is wrong.
pub async fn is_current(docker: &Engine, image: &str, overlay: Option<&Path>) -> bool {
    let label = docker
        .inspect_image(image)
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.labels)
        .and_then(|mut l| l.remove(LABEL_OVERLAY));
    let Some(path) = overlay.map(Path::to_owned) else {
        return label.is_none();
    };
    let expected = tokio::task::spawn_blocking(move || context_hash(&path)).await;
    matches!((expected, label), (Ok(Ok(e)), Some(l)) if e == l)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn bad_paths_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let df = dir.path().join("Dockerfile");
        std::fs::write(&df, "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n").unwrap();
        assert!(check_path(&df).is_ok());
        let link = dir.path().join("link");
        symlink(&df, &link).unwrap();
        for (bad, want) in [
            (PathBuf::from("rel/Dockerfile"), "absolute"),
            (dir.path().join("missing"), "create the file"),
            (link, "symlink"),
            (dir.path().to_owned(), "not a regular file"),
        ] {
            let e = check_path(&bad).unwrap_err().to_string();
            assert!(e.contains("[build] overlay") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn hash_follows_content_and_dockerignore_not_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let df = dir.path().join("Dockerfile");
        std::fs::write(
            &df,
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY gog /usr/local/bin/\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("gog"), "v1").unwrap();
        let h1 = context_hash(&df).unwrap();
        std::fs::write(dir.path().join("gog"), "v1").unwrap();
        assert_eq!(context_hash(&df).unwrap(), h1, "same content");
        std::fs::write(dir.path().join("gog"), "v2").unwrap();
        let h2 = context_hash(&df).unwrap();
        assert_ne!(h2, h1);
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert_ne!(context_hash(&df).unwrap(), h2);
        std::fs::write(dir.path().join(".dockerignore"), "notes.txt\n").unwrap();
        let h3 = context_hash(&df).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "changed, ignored").unwrap();
        assert_eq!(context_hash(&df).unwrap(), h3);
    }
}
