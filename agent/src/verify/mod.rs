//! VerifyBinaries: are the binaries the skills need baked into the image, and do they run?
//! One call replaces `docker compose exec openclaw-gateway which gog` run name by name:
//! - the image: PATH lookup in a throwaway container created (never started) from the image the
//!   service's container runs, through the archive API — no shell, nothing executed;
//! - the running container: the same lookup, then `<bin> --version` through exec with a timeout
//!   (a success is reused for the same file in the same container run: see `cache`);
//! - the difference between the two, explained by the container's filesystem diff: what was
//!   installed at runtime vanishes on the next recreate.
//!
//! Both sides run concurrently; the diff (slow on some storage drivers) only when they disagree.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::{
    config::{Config, ResolvedApp, VerifyConfig},
    docker::{DockerError, Engine},
};

pub mod cache;
mod container;
mod image;
pub mod probe;
pub mod report;
pub mod requirements;
pub mod resolve;
pub mod runtime;
pub mod skills;
mod target;

pub use cache::{PROBE_REUSE, VerifyCache};
pub use report::{BinaryReport, BinaryStatus, ContainerInfo, ProvidedBy, Report};

use container::{ContainerSide, ProbePlan, container_side_all, reprobe_image_files};
use image::{Cached, image_side_all};
use report::{ImageSide, NotRunReason};
use requirements::Requirements;
use runtime::Drift;

pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(120);
/// Lookups and probes in flight at once: enough to hide latency, few enough for a 2-core VM.
const CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("binary name {name:?} {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error(
        "no container of service {service:?} in compose project {project:?}, {why}: start it \
         (`clawops up`), or pass --image NAME to check an image without a container"
    )]
    NoContainer {
        service: String,
        project: String,
        why: String,
    },
    #[error(
        "image {image:?} does not exist on this machine: build it (`clawops build`) or check the \
         name with `docker images`"
    )]
    ImageNotFound { image: String },
    #[error("cannot inspect {what}: {source}")]
    Inspect { what: String, source: DockerError },
    #[error(
        "cannot create a temporary (never started) container from image {image} to read its \
         files: {source}"
    )]
    Scratch { image: String, source: DockerError },
    #[error("cannot read {path} in container {container}: {source}")]
    Archive {
        path: String,
        container: String,
        source: DockerError,
    },
    #[error("cannot run a probe in container {container}: {source}")]
    Exec {
        container: String,
        source: DockerError,
    },
    #[error("cannot read the filesystem changes of container {container}: {source}")]
    Diff {
        container: String,
        source: DockerError,
    },
    #[error("the verification task stopped unexpectedly: {0}")]
    Task(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOptions {
    /// Names to check in addition to the config's and the skills'.
    pub binaries: Vec<String>,
    /// The compose service whose container is checked.
    pub service: String,
    /// Check this image instead of the service's container (nothing is run).
    pub image: Option<String>,
    /// Run `--version` probes in a running container (else look only).
    pub run_probes: bool,
    pub probe_timeout: Duration,
    /// Run every probe, even where this container run has a recent result for the same file.
    pub fresh: bool,
}

pub async fn verify(
    docker: &Engine,
    app: &ResolvedApp,
    agent_config: &Config,
    cache: &VerifyCache,
    opts: VerifyOptions,
) -> Result<Report, VerifyError> {
    let started = Instant::now();
    let config = &agent_config.verify;
    let plan = plan(docker, app, agent_config, &opts).await?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "verify: target found"
    );
    let mut looked = look(docker, cache, &plan, &opts, config).await?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "verify: image and container checked"
    );
    let ctr = plan.target.container.as_ref();
    let changes = match (ctr, &looked.containers) {
        (Some(c), Some(sides))
            if looked
                .images
                .iter()
                .zip(sides)
                .any(|(i, s)| runtime::needs_diff(&i.lookup, &s.lookup)) =>
        {
            Some(runtime::changes(docker, &c.id).await?)
        }
        _ => None,
    };
    // The probe ran what the container resolves; after a restart the image's file runs, so
    // where they differ, probe that one.
    if let (Some(c), Some(sides)) = (
        ctr.filter(|c| c.running && opts.run_probes),
        looked.containers.as_mut(),
    ) {
        reprobe_image_files(docker, c, &plan.names, &looked.images, sides, config, &opts).await;
    }
    let binaries = binary_reports(&plan, &looked, changes.as_ref(), &opts);
    let ok = binaries.iter().all(|b| !b.required || b.status.usable());
    let Plan {
        target,
        scan,
        mut notes,
        search_path,
        ..
    } = plan;
    notes.extend(looked.tag_note.take());
    Ok(Report {
        image: target.image_name,
        image_id: target.image_id,
        container: target.container,
        engine_arch: looked.engine_arch,
        search_path,
        binaries,
        skill_problems: scan.problems,
        notes,
        ok,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// What is checked, and for which names.
struct Plan {
    target: target::Target,
    scan: skills::SkillScan,
    reqs: Requirements,
    notes: Vec<String>,
    search_path: Vec<String>,
    names: Vec<String>,
    /// The overlay's base image id, when the image is an overlay whose base is still here.
    base_image: Option<String>,
}

async fn plan(
    docker: &Engine,
    app: &ResolvedApp,
    agent_config: &Config,
    opts: &VerifyOptions,
) -> Result<Plan, VerifyError> {
    for name in &opts.binaries {
        skills::check_name(name).map_err(|reason| VerifyError::InvalidName {
            name: name.clone(),
            reason,
        })?;
    }
    target::sweep_stale(docker.clone());
    let roots = skills::skill_roots(&app.repo, &app.home);
    let scan = tokio::task::spawn_blocking(move || skills::scan(&roots));
    let service = &opts.service;
    let target = target::find(docker, agent_config, app, service, opts.image.as_deref()).await?;
    let scan = scan.await.map_err(|e| VerifyError::Task(e.to_string()))?;
    let reqs = Requirements::gather(&opts.binaries, &agent_config.verify.binaries, &scan.skills);

    let mut notes = target.notes.clone();
    notes.extend(reqs.notes.iter().cloned());
    let search_path = target::search_path(target.path_env.as_deref(), &mut notes);
    let names: Vec<String> = reqs.names().map(str::to_owned).collect();
    if names.is_empty() {
        notes.push(
            "nothing to check: no binary was requested, [verify] binaries is empty, and no \
             skill declares requires.bins or requires.anyBins"
                .to_owned(),
        );
    }
    let base_image = target::overlay_base(docker, &target.image_id, &mut notes).await;
    Ok(Plan {
        target,
        scan,
        reqs,
        notes,
        search_path,
        names,
        base_image,
    })
}

/// What the lookups found.
struct Looked {
    engine_arch: String,
    images: Vec<ImageSide>,
    containers: Option<Vec<ContainerSide>>,
    /// The same names in the overlay's base image.
    base: Option<Vec<ImageSide>>,
    tag_note: Option<String>,
}

/// The image (and the overlay's base), and the container, looked at concurrently.
async fn look(
    docker: &Engine,
    cache: &VerifyCache,
    plan: &Plan,
    opts: &VerifyOptions,
    config: &VerifyConfig,
) -> Result<Looked, VerifyError> {
    let (names, search_path) = (&plan.names, &plan.search_path);
    let image = Cached::split(cache, &plan.target.image_id, search_path, names);
    let depths = image.depths(names, search_path);
    let ctr = plan.target.container.as_ref();
    let container = async {
        let Some(c) = ctr else { return Ok(None) };
        let probes = (c.running && opts.run_probes).then_some(ProbePlan {
            timeout: opts.probe_timeout,
            reuse: (!opts.fresh).then_some(cache),
        });
        container_side_all(docker, c, names, &depths, search_path, config, probes)
            .await
            .map(Some)
    };
    let base = async {
        let Some(id) = &plan.base_image else {
            return Ok(None);
        };
        let cached = Cached::split(cache, id, search_path, names);
        let (_, fresh) = image_side_all(docker, cache, id, &cached.uncached, search_path).await?;
        cached.merge(cache, id, search_path, names, fresh).map(Some)
    };
    let (image_side, containers, base, tag_note) = tokio::join!(
        image_side_all(
            docker,
            cache,
            &plan.target.image_ref,
            &image.uncached,
            search_path
        ),
        container,
        base,
        target::tag_note(docker, &plan.target)
    );
    let (engine_arch, fresh) = image_side?;
    let images = image.merge(cache, &plan.target.image_id, search_path, names, fresh)?;
    Ok(Looked {
        engine_arch,
        images,
        containers: containers?,
        base: base?,
        tag_note,
    })
}

/// One report per name, with what requires it and whether it is required.
fn binary_reports(
    plan: &Plan,
    looked: &Looked,
    changes: Option<&runtime::Changes>,
    opts: &VerifyOptions,
) -> Vec<BinaryReport> {
    let ctr = plan.target.container.as_ref();
    let not_run = match ctr {
        None => Some(NotRunReason::NoContainer),
        Some(c) if !c.running => Some(NotRunReason::Stopped(c.name.clone())),
        Some(_) if !opts.run_probes => Some(NotRunReason::Skipped),
        Some(_) => None,
    };
    let mounts = ctr.map(|c| c.mounts.clone()).unwrap_or_default();
    let mut binaries: Vec<BinaryReport> = plan
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let image = &looked.images[i];
            let side = looked.containers.as_ref().map(|s| &s[i]);
            let drift = match side {
                Some(s) => runtime::drift(name, &image.lookup, &s.lookup, changes, &mounts),
                None => Drift::None,
            };
            let mut report = report::decide(
                name,
                image,
                &report::Seen {
                    container: side.map(|s| &s.lookup),
                    probe: side.and_then(|s| s.probe.as_ref()),
                    drift: &drift,
                    not_run: not_run.as_ref(),
                    search_path: &plan.search_path,
                },
            );
            report.probe_reused = side.and_then(|s| s.probe_age);
            let base = looked.base.as_ref().map(|b| &b[i].lookup);
            report.provided_by = report::provided_by(&image.lookup, base);
            report
        })
        .collect();
    let usable: HashMap<String, bool> = binaries
        .iter()
        .map(|b| (b.name.clone(), b.status.usable()))
        .collect();
    let required = plan.reqs.required(&usable);
    for (b, wanted) in binaries.iter_mut().zip(&plan.reqs.wanted) {
        b.required = required.get(&b.name).copied().unwrap_or(true);
        b.required_by = wanted.required_by.clone();
    }
    binaries
}
