//! Building the service's image through the engine, with BuildKit (OpenClaw's Dockerfile uses
//! `RUN --mount=type=cache`, which the classic builder rejects) and the classic builder only as
//! a fallback when the engine cannot do BuildKit. Progress is streamed as it happens; the result
//! is tagged `<repo>:<sha12>` and with the compose `image:` name, and older sha tags beyond the
//! configured number are pruned.
//!
//! Public API: [`build`] with a [`BuildSpec`] → [`BuiltImage`] or [`BuildError`]; emits
//! `Phase::Preflight` and `Phase::Build` events (started/done/failed), `Event::Build` lines and
//! warnings to the [`EventSink`] — callers should not wrap it in Build phase events of their own.
use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub mod archive;
pub mod context;
pub mod dockerignore;
mod engine;
pub mod overlay;
pub mod preflight;
pub mod progress;
pub mod service;
pub mod tags;

pub use context::{ContextError, ContextOptions, ContextPlan};
pub use engine::buildkit_features;
pub use overlay::{OverlayImage, OverlaySpec};
pub use preflight::{PreflightError, PreflightLimits};
pub use progress::Failure;
pub use tags::{ImageRef, ImageRefError, LABEL_GIT_SHA, LABEL_PROJECT};

use crate::{
    docker::{DockerError, Engine, models::SystemInfo},
    events::{BuildLine, Event, EventSink, Phase, PhaseStatus},
};

/// Which builder to use (`[build] builder` in agent.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderChoice {
    /// BuildKit, falling back to the classic builder (with a warning) when the engine lacks it.
    #[default]
    Auto,
    /// BuildKit or fail.
    Buildkit,
    /// The classic builder (cannot build Dockerfiles that use `RUN --mount`).
    Classic,
}

/// The builder that produced the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Builder {
    BuildKit,
    Classic,
}

impl Builder {
    pub fn as_str(self) -> &'static str {
        match self {
            Builder::BuildKit => "BuildKit",
            Builder::Classic => "the classic builder",
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The build context directory (compose `build: context:`, resolved).
    pub context: PathBuf,
    /// Relative to the context; default `Dockerfile`.
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// The compose `image:` name, e.g. `openclaw:latest`; its repository names the sha tags.
    pub image: String,
    /// Full sha of the commit being built; tags `<repo>:<sha12>` and labels the image.
    pub git_sha: Option<String>,
    pub no_cache: bool,
    /// How many sha tags to keep (the new one included).
    pub keep: u32,
    /// Compose project, for the `clawops.project` label (sha tags are per project).
    pub project: String,
    /// The compose service, for events.
    pub service: String,
    /// The context must stay inside this directory (the repository); `None`: no constraint.
    pub root: Option<PathBuf>,
    /// Extra image labels (tests add `clawops.test=1`).
    pub labels: BTreeMap<String, String>,
    pub builder: BuilderChoice,
    pub preflight: PreflightLimits,
    /// Stop a build that runs longer (a hung one would hold the single-flight lock forever).
    pub timeout: Duration,
    /// `[build] overlay`: a Dockerfile built `FROM` this build's result, which then gets the
    /// tags (the base keeps `<tag>-base`).
    pub overlay: Option<PathBuf>,
}

impl BuildSpec {
    /// The labels of every image this build makes: `[build] labels`, our project and sha.
    pub fn image_labels(&self) -> std::collections::HashMap<String, String> {
        let mut labels: std::collections::HashMap<String, String> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(LABEL_PROJECT.into(), self.project.clone());
        if let Some(sha) = &self.git_sha {
            labels.insert(LABEL_GIT_SHA.into(), sha.clone());
        }
        labels
    }
}

impl BuildSpec {
    /// A spec with the defaults of `[build]` for everything but the context and image.
    pub fn new(context: impl Into<PathBuf>, image: &str, project: &str) -> Self {
        Self {
            context: context.into(),
            dockerfile: None,
            args: BTreeMap::new(),
            target: None,
            image: image.to_owned(),
            git_sha: None,
            no_cache: false,
            keep: crate::config::BuildConfig::default().keep_images,
            project: project.to_owned(),
            service: String::new(),
            root: None,
            labels: BTreeMap::new(),
            builder: BuilderChoice::Auto,
            preflight: PreflightLimits::default(),
            timeout: Duration::from_secs(crate::config::BuildConfig::default().timeout_secs),
            overlay: None,
        }
    }
}

/// A built, tagged image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuiltImage {
    /// `sha256:…`
    pub image_id: String,
    /// `<repo>:<sha12>` (when a sha was given) and the compose `image:` name.
    pub tags: Vec<String>,
    pub size_bytes: u64,
    /// Old sha tags pruned by retention.
    pub removed_tags: Vec<String>,
    pub duration: Duration,
    pub builder: Builder,
    pub git_sha: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    InvalidSpec(String),
    #[error(transparent)]
    Image(#[from] ImageRefError),
    #[error(transparent)]
    Overlay(#[from] overlay::OverlayError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// A build step failed: the step, the builder's message and the step's last output lines.
    #[error("{}", failure_message(.0))]
    Failed(Failure),
}

fn failure_message(f: &Failure) -> String {
    if f.step.is_empty() {
        format!("the build failed: {}", f.message)
    } else {
        format!("the build failed at step {}: {}", f.step, f.message)
    }
}

impl BuildError {
    /// The failed step, when a step failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            BuildError::Failed(f) => Some(f),
            _ => None,
        }
    }
}

/// Builds `spec`, streaming progress to `sink`. See the module docs.
pub async fn build(
    docker: &Engine,
    spec: &BuildSpec,
    sink: &EventSink,
) -> Result<BuiltImage, BuildError> {
    let started = Instant::now();
    let image = check_spec(spec)?;
    let svc = spec.service.as_str();
    let info = docker.info().await?;
    preflight_phase(docker, spec, &image, &info, sink).await?;

    let t = Instant::now();
    sink.phase(Phase::Build, PhaseStatus::Started, svc, "", Duration::ZERO);
    let result = build_and_tag(docker, spec, &image, &info, sink, started).await;
    match &result {
        Ok(b) => sink.phase(
            Phase::Build,
            PhaseStatus::Done,
            svc,
            format!(
                "{} ({}) tagged {}",
                short_id(&b.image_id),
                preflight::mib(b.size_bytes),
                b.tags.join(", ")
            ),
            t.elapsed(),
        ),
        Err(e) => sink.phase(
            Phase::Build,
            PhaseStatus::Failed,
            svc,
            e.to_string(),
            t.elapsed(),
        ),
    }
    result
}

/// The image name, and a refusal of a spec no build could satisfy.
fn check_spec(spec: &BuildSpec) -> Result<ImageRef, BuildError> {
    let image = ImageRef::parse(&spec.image)?;
    if spec.keep == 0 {
        return Err(BuildError::InvalidSpec(
            "keep must be at least 1: the previous image is what rollback starts".into(),
        ));
    }
    if let Some(sha) = &spec.git_sha
        && !tags::is_hex_sha(sha)
    {
        return Err(BuildError::InvalidSpec(format!(
            "{sha:?} is not a git commit sha (at least {} hex digits)",
            tags::SHA_TAG_LEN
        )));
    }
    Ok(image)
}

/// Disk and memory checks, reported as the `Preflight` phase.
async fn preflight_phase(
    docker: &Engine,
    spec: &BuildSpec,
    image: &ImageRef,
    info: &SystemInfo,
    sink: &EventSink,
) -> Result<(), BuildError> {
    let svc = spec.service.as_str();
    let t = Instant::now();
    sink.phase(
        Phase::Preflight,
        PhaseStatus::Started,
        svc,
        "",
        Duration::ZERO,
    );
    let root = info.docker_root_dir.as_deref();
    let limits = &spec.preflight;
    match preflight::run(docker, root, limits, &image.repo, &spec.project, sink).await {
        Ok(r) => {
            let disk = r.free_disk_bytes.map_or("unknown".into(), preflight::mib);
            let mem = r
                .available_memory_bytes
                .map_or("unknown".into(), preflight::mib);
            let message = format!("{disk} free disk, {mem} memory available");
            sink.phase(
                Phase::Preflight,
                PhaseStatus::Done,
                svc,
                message,
                t.elapsed(),
            );
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            sink.phase(
                Phase::Preflight,
                PhaseStatus::Failed,
                svc,
                message,
                t.elapsed(),
            );
            Err(e.into())
        }
    }
}

async fn build_and_tag(
    docker: &Engine,
    spec: &BuildSpec,
    image: &ImageRef,
    info: &SystemInfo,
    sink: &EventSink,
    started: Instant,
) -> Result<BuiltImage, BuildError> {
    let plan = plan_context(spec, sink).await?;
    let sha_tag = spec.git_sha.as_deref().map(|s| image.sha_tag(s));
    let mut all_tags: Vec<String> = sha_tag.iter().cloned().collect();
    all_tags.push(image.full());
    let base_tag = spec.overlay.as_ref().map(|_| tags::base_tag(&all_tags[0]));
    let previous_ids = existing_ids(docker, all_tags.iter().chain(&base_tag)).await;

    let (image_id, builder) = match (&spec.overlay, &base_tag) {
        (Some(dockerfile), Some(base_tag)) => {
            let request = engine::Request::for_spec(spec, &plan, base_tag);
            engine::build_with_fallback(docker, &request, info, spec.builder, sink).await?;
            let overlay = OverlaySpec::for_build(spec, dockerfile.clone());
            let built = overlay::build(docker, &overlay, base_tag, &all_tags, sink).await?;
            (built.image_id, built.builder)
        }
        _ => {
            let request = engine::Request::for_spec(spec, &plan, &all_tags[0]);
            let built =
                engine::build_with_fallback(docker, &request, info, spec.builder, sink).await?;
            for t in all_tags.iter().skip(1) {
                docker.tag(&built.0, t).await?;
            }
            built
        }
    };
    let inspected = docker.inspect_image(&image_id).await?;
    let size_bytes = inspected.size.unwrap_or(0).max(0) as u64;
    let removed_tags = prune(docker, spec, image, &image_id, sink).await;
    for id in tags::remove_if_dangling(docker, &previous_ids, &image_id).await {
        info_line(
            sink,
            format!("removed the previous image {} (no tag left)", short_id(&id)),
        );
    }
    Ok(BuiltImage {
        image_id,
        tags: all_tags,
        size_bytes,
        removed_tags,
        duration: started.elapsed(),
        builder,
        git_sha: spec.git_sha.clone(),
    })
}

/// Walks and checks the context (off the runtime's threads), and says what will be sent.
async fn plan_context(spec: &BuildSpec, sink: &EventSink) -> Result<Arc<ContextPlan>, BuildError> {
    let opts = ContextOptions {
        context: spec.context.clone(),
        dockerfile: spec.dockerfile.clone(),
        root: spec.root.clone(),
    };
    let plan = tokio::task::spawn_blocking(move || context::plan(&opts))
        .await
        .map_err(|e| BuildError::InvalidSpec(format!("planning the build context: {e}")))??;
    describe_context(&plan, sink);
    Ok(Arc::new(plan))
}

fn describe_context(plan: &ContextPlan, sink: &EventSink) {
    info_line(
        sink,
        format!(
            "build context {}: {} files, {}{}",
            plan.dir.display(),
            plan.files(),
            human_bytes(plan.total_bytes),
            match plan.excluded {
                0 => String::new(),
                1 => " (1 path excluded by .dockerignore)".into(),
                n => format!(" ({n} paths excluded by .dockerignore)"),
            }
        ),
    );
    if !plan.skipped_special.is_empty() {
        sink.warning(format!(
            "not sent (sockets, FIFOs or devices): {}",
            plan.skipped_special.join(", ")
        ));
    }
}

/// The ids `tags` point at now: a rebuild may leave them without a tag.
async fn existing_ids<'a>(
    docker: &Engine,
    tags: impl Iterator<Item = &'a String>,
) -> HashSet<String> {
    let mut ids = HashSet::new();
    for t in tags {
        if let Ok(i) = docker.inspect_image(t).await
            && let Some(id) = i.id
        {
            ids.insert(id);
        }
    }
    ids
}

/// Retention of the sha tags, reported line by line; the tags removed.
async fn prune(
    docker: &Engine,
    spec: &BuildSpec,
    image: &ImageRef,
    image_id: &str,
    sink: &EventSink,
) -> Vec<String> {
    match tags::retain(docker, &image.repo, &spec.project, spec.keep, image_id).await {
        Ok(r) => {
            for t in &r.removed {
                info_line(
                    sink,
                    format!("removed old image tag {t} (keeping {})", spec.keep),
                );
            }
            for t in &r.kept_in_use {
                info_line(sink, format!("kept old image tag {t}: a container uses it"));
            }
            for (t, e) in &r.failed {
                sink.warning(format!("could not remove old image tag {t}: {e}"));
            }
            r.removed
        }
        Err(e) => {
            sink.warning(format!("could not prune old image tags: {e}"));
            Vec::new()
        }
    }
}

pub(crate) fn info_line(sink: &EventSink, line: String) {
    sink.emit(Event::Build(BuildLine {
        step: 0,
        total_steps: 0,
        step_name: String::new(),
        line,
    }));
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn human_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 * 1_048_576), "3.0 MiB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
