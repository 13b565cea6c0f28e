//! Reaching into containers: the archive API (stat, download, upload), exec, and throwaway
//! containers made only for that.
use std::{io, time::Duration};

use bollard::{
    exec::{CreateExecOptions, StartExecOptions, StartExecResults},
    query_parameters::{
        ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
        UploadToContainerOptionsBuilder,
    },
};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{
    DockerError, Engine, ListFilter, containers::chunk, models::ContainerCreateBody, short_id,
};
use crate::events::LogStream;

/// What the archive API says about a path in a container.
#[derive(Debug, Clone, PartialEq)]
pub struct PathStat {
    pub size: u64,
    /// Go's `os.FileMode` bits.
    pub mode: u32,
    pub mtime: Option<String>,
    pub link_target: String,
}

/// What an exec printed (each stream capped) and how it exited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutput {
    /// `None` when the engine had not recorded it yet.
    pub exit_code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Engine {
    /// `None` when nothing is at `path`.
    pub async fn stat_path(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<PathStat>, DockerError> {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        match self
            .docker
            .get_container_archive_info(container, Some(options))
            .await
        {
            Ok(s) => Ok(Some(PathStat {
                size: s.size.max(0) as u64,
                mode: s.file_mode,
                mtime: s.modification_time,
                link_target: s.link_target,
            })),
            Err(e) => match self.err(format!("looking at {path} in {}", short_id(container)))(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The engine's tar of `path` in the container, members named `<basename>/…`.
    pub fn download(
        &self,
        container: &str,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes, DockerError>> + Send + 'static + use<> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let endpoint = self.endpoint.clone();
        let action = format!("reading {path} in {}", short_id(container));
        self.docker
            .download_from_container(container, Some(options))
            .map(move |c| c.map_err(|e| DockerError::classify(action.clone(), &endpoint, e)))
    }

    /// Extracts a tar into the container at `/`. The engine applies the members' owners and
    /// modes and replaces a file by a directory (and the reverse) where the tar says so.
    pub async fn upload(
        &self,
        container: &str,
        body: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> Result<(), DockerError> {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        self.docker
            .upload_to_container(container, Some(options), bollard::body_try_stream(body))
            .await
            .map_err(self.err(format!("writing into {container}")))
    }

    /// Runs `argv` in the running container (no shell) as `user` (`None`: the container's
    /// configured user); each stream is kept up to `max_output` bytes. `None` when it did not
    /// finish within `timeout` (counted from its start, not from the engine accepting it).
    pub async fn exec(
        &self,
        container: &str,
        user: Option<&str>,
        argv: &[String],
        max_output: usize,
        timeout: Duration,
    ) -> Result<Option<ExecOutput>, DockerError> {
        let err = || self.err(format!("exec in {}", short_id(container)));
        let exec = self
            .docker
            .create_exec(
                container,
                CreateExecOptions::<String> {
                    cmd: Some(argv.to_vec()),
                    user: user.map(str::to_owned),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(err())?;
        let action = format!("exec in {}", short_id(container));
        let endpoint = self.endpoint.clone();
        let classify = move |e| DockerError::classify(action.clone(), &endpoint, e);
        match tokio::time::timeout(timeout, self.run_exec(&exec.id, max_output, classify)).await {
            Ok(out) => out.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn run_exec(
        &self,
        exec_id: &str,
        max_output: usize,
        err: impl Fn(bollard::errors::Error) -> DockerError,
    ) -> Result<ExecOutput, DockerError> {
        let mut out = ExecOutput::default();
        let start = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(exec_id, Some(start))
            .await
            .map_err(&err)?
        {
            while let Some(item) = output.next().await {
                let Some(c) = chunk(item.map_err(&err)?) else {
                    continue;
                };
                let buf = match c.stream {
                    LogStream::Stderr => &mut out.stderr,
                    LogStream::Stdout => &mut out.stdout,
                };
                let room = max_output.saturating_sub(buf.len());
                buf.extend_from_slice(&c.data[..c.data.len().min(room)]);
            }
        }
        // The stream ends when the process exits; the exit code can lag a moment behind.
        for _ in 0..50 {
            let inspect = self.docker.inspect_exec(exec_id).await.map_err(&err)?;
            if inspect.running != Some(true) {
                out.exit_code = inspect.exit_code;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(out)
    }

    /// Removes the containers carrying `label` created more than `age` ago: throwaway
    /// containers an interrupted agent left behind (never one an operation still uses).
    pub async fn remove_stale(&self, label: &str, age: Duration, what: &'static str) {
        let Ok(list) = self.list_containers(ListFilter::Label(label)).await else {
            return;
        };
        let cutoff = chrono::Utc::now().timestamp() - age.as_secs() as i64;
        for c in list {
            if let (Some(id), Some(created)) = (c.id, c.created)
                && created < cutoff
            {
                remove_quietly(self, &id, what).await;
            }
        }
    }
}

async fn remove_quietly(engine: &Engine, id: &str, what: &str) {
    if let Err(e) = engine.remove_with_volumes(id).await {
        tracing::warn!(container = short_id(id), error = %e, "cannot remove a {what} container");
    }
}

/// A container created only to reach an image's or a directory's files. Removed (with the
/// anonymous volumes its image declares) by [`TempContainer::remove`], or in the background
/// when dropped before that (cancelled or failed half-way).
#[derive(Debug)]
pub struct TempContainer {
    engine: Engine,
    id: Option<String>,
    /// Says which kind it is in a failed removal's log line.
    what: &'static str,
}

impl TempContainer {
    /// Creates it as `<prefix>-<random>`.
    pub async fn create(
        engine: &Engine,
        prefix: &str,
        what: &'static str,
        body: ContainerCreateBody,
    ) -> Result<Self, DockerError> {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Self::create_named(engine, &name, what, body).await
    }

    /// Creates it as `name`.
    pub async fn create_named(
        engine: &Engine,
        name: &str,
        what: &'static str,
        body: ContainerCreateBody,
    ) -> Result<Self, DockerError> {
        let id = engine.create_container(Some(name), body).await?;
        Ok(Self {
            engine: engine.clone(),
            id: Some(id),
            what,
        })
    }

    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub async fn remove(mut self) {
        if let Some(id) = self.id.take() {
            remove_quietly(&self.engine, &id, self.what).await;
        }
    }
}

impl Drop for TempContainer {
    fn drop(&mut self) {
        if let (Some(id), Ok(rt)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let (engine, what) = (self.engine.clone(), self.what);
            rt.spawn(async move { remove_quietly(&engine, &id, what).await });
        }
    }
}
