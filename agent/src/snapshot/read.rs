//! Reading one state directory into the snapshot being written: through the archive API of a
//! container that mounts it, else of a helper container, else with the agent's own access.
use std::{
    io,
    path::{Path, PathBuf},
};

use futures::StreamExt;
use tokio::sync::mpsc;

use super::{
    Engine, Method, SnapshotDir, SnapshotError, archive,
    archive::SnapshotWriter,
    engine::{self, HELPER_PATH, Helper, HelperError, Mounted},
    helper_images,
};

/// The snapshot writer, handed to blocking threads and back.
pub(super) struct Writer(pub(super) Option<SnapshotWriter>);

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

/// Appends one directory; `None` when it does not exist. Read through a container that mounts
/// it, else a helper container, else (no image at all) the agent's own file access.
pub(super) async fn read_dir(
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
        Err(e) => return Err(super::io(dir)(e)),
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
