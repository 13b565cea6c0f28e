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

use futures::{StreamExt, TryStreamExt};

use crate::{
    config::{Config, ResolvedApp, VerifyConfig},
    docker::{DockerError, Engine},
};

pub mod cache;
pub mod probe;
pub mod report;
pub mod requirements;
pub mod resolve;
pub mod runtime;
pub mod skills;
mod target;

pub use cache::{PROBE_REUSE, VerifyCache};
pub use report::{BinaryReport, BinaryStatus, ContainerInfo, ProvidedBy, Report};

use cache::ProbeKey;
use probe::ProbeOutcome;
use report::{ImageSide, NotRunReason};
use requirements::Requirements;
use resolve::{ContainerFs, Content, Lookup};
use runtime::Drift;
use target::Scratch;

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

/// What the container side found for one name.
#[derive(Debug, Clone)]
struct ContainerSide {
    lookup: Lookup,
    probe: Option<ProbeOutcome>,
    /// How old `probe` is when it was reused from an earlier call rather than run now.
    probe_age: Option<Duration>,
}

impl ContainerSide {
    fn unprobed(lookup: Lookup) -> Self {
        Self {
            lookup,
            probe: None,
            probe_age: None,
        }
    }
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

/// What the cache already knows of an image (per image id), and the names still to look up.
struct Cached {
    known: Vec<Option<ImageSide>>,
    uncached: Vec<String>,
}

impl Cached {
    fn split(
        cache: &VerifyCache,
        image_id: &str,
        search_path: &[String],
        names: &[String],
    ) -> Self {
        let known: Vec<Option<ImageSide>> = names
            .iter()
            .map(|n| cache.image_side(image_id, search_path, n))
            .collect();
        let uncached = names
            .iter()
            .zip(&known)
            .filter(|(_, c)| c.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        Self { known, uncached }
    }

    /// Where the image has a name, the container needs looking at only up to there: an
    /// earlier hit would be a runtime addition, a later one is never reached.
    fn depths(&self, names: &[String], search_path: &[String]) -> Vec<usize> {
        names
            .iter()
            .zip(&self.known)
            .map(|(name, c)| match c.as_ref().map(|s| &s.lookup) {
                Some(Lookup::Found(f)) => search_path
                    .iter()
                    .position(|dir| resolve::join(dir, name) == f.path)
                    .map_or(search_path.len(), |k| k + 1),
                _ => search_path.len(),
            })
            .collect()
    }

    /// The known and the fresh results in `names` order; the fresh ones go into the cache.
    fn merge(
        self,
        cache: &VerifyCache,
        image_id: &str,
        search_path: &[String],
        names: &[String],
        fresh: Vec<ImageSide>,
    ) -> Result<Vec<ImageSide>, VerifyError> {
        let mut fresh: HashMap<String, ImageSide> = self.uncached.into_iter().zip(fresh).collect();
        for (name, side) in &fresh {
            // A file whose start could not be read is looked at again next time.
            if side.content.is_some() || side.lookup.found().is_none() {
                cache.put_image_side(image_id, search_path, name, side);
            }
        }
        names
            .iter()
            .zip(self.known)
            .map(|(name, c)| {
                c.or_else(|| fresh.remove(name))
                    .ok_or_else(|| VerifyError::Task(format!("no image result for {name}")))
            })
            .collect()
    }
}

/// Probes the image's file where the container resolves the name elsewhere.
async fn reprobe_image_files(
    docker: &Engine,
    c: &ContainerInfo,
    names: &[String],
    images: &[ImageSide],
    sides: &mut [ContainerSide],
    config: &VerifyConfig,
    opts: &VerifyOptions,
) {
    for ((name, image), side) in names.iter().zip(images).zip(sides.iter_mut()) {
        if let (Lookup::Found(i), Some(s)) = (&image.lookup, side.lookup.found())
            && i.path != s.path
        {
            let argv = probe::argv_for(name, &i.path, config);
            side.probe = Some(probe::run(docker, &c.id, name, &argv, opts.probe_timeout).await);
            side.probe_age = None;
        }
    }
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

/// Looks names up in the image, through a throwaway container that is never started.
async fn image_side_all(
    docker: &Engine,
    cache: &VerifyCache,
    image: &str,
    names: &[String],
    search_path: &[String],
) -> Result<(String, Vec<ImageSide>), VerifyError> {
    let arch = async {
        if let Some(arch) = cache.engine_arch() {
            return arch;
        }
        match docker.version().await.ok().and_then(|v| v.arch) {
            Some(arch) => {
                cache.set_engine_arch(&arch);
                arch
            }
            // The engine runs on this machine: the agent's own architecture is the VM's.
            None => go_arch(std::env::consts::ARCH).to_owned(),
        }
    };
    if names.is_empty() {
        return Ok((arch.await, Vec::new()));
    }
    let t = Instant::now();
    let (scratch, engine_arch) = tokio::join!(Scratch::create(docker, image), arch);
    let scratch = scratch?;
    let fs = ContainerFs {
        docker,
        container: scratch.id(),
    };
    let arch = engine_arch.as_str();
    // Indices rather than `&String` items: keeps the stream's future `Send` for tokio::spawn.
    let sides = futures::stream::iter(0..names.len())
        .map(|i| image_side(fs, &names[i], search_path, arch))
        .buffered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await;
    scratch.remove().await;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        names = names.len(),
        "verify: image looked up"
    );
    Ok((engine_arch, sides?))
}

async fn image_side(
    fs: ContainerFs<'_>,
    name: &str,
    search_path: &[String],
    engine_arch: &str,
) -> Result<ImageSide, VerifyError> {
    let lookup = resolve::lookup(fs, name, search_path).await?;
    let Lookup::Found(found) = &lookup else {
        return Ok(ImageSide {
            lookup,
            content: None,
            problem: None,
        });
    };
    let head = match fs.head(&found.target, resolve::HEAD_BYTES).await {
        Ok(head) => head,
        // What the file is stays unknown; the probe still tells whether it runs.
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the start of a binary");
            return Ok(ImageSide {
                lookup,
                content: None,
                problem: None,
            });
        }
    };
    let content = resolve::classify(&head);
    let problem = match &content {
        Content::Elf { machine } => {
            resolve::wrong_arch(*machine, engine_arch).map(|why| (BinaryStatus::WrongArch, why))
        }
        Content::Script { interpreter, arg } => {
            script_problem(fs, interpreter, arg.as_deref(), search_path).await?
        }
        Content::Other => None,
    };
    Ok(ImageSide {
        lookup,
        content: Some(content),
        problem,
    })
}

/// A script is only as good as its `#!` interpreter (`#!/usr/bin/env node` needs node on PATH).
async fn script_problem(
    fs: ContainerFs<'_>,
    interpreter: &str,
    arg: Option<&str>,
    search_path: &[String],
) -> Result<Option<(BinaryStatus, String)>, VerifyError> {
    let shebang = format!(
        "#!{interpreter}{}",
        arg.map(|a| format!(" {a}")).unwrap_or_default()
    );
    let broken = |why: String| Ok(Some((BinaryStatus::Broken, why)));
    if !interpreter.starts_with('/') {
        return broken(format!(
            "{shebang}: the interpreter must be an absolute path"
        ));
    }
    let mut unreadable = Vec::new();
    match resolve::about_path(fs.stat(interpreter).await, &mut unreadable)? {
        None if !unreadable.is_empty() => return broken(unreadable.join("; ")),
        None => return broken(format!("{shebang}: {interpreter} is not in the image")),
        Some(s)
            if s.is_symlink()
                && resolve::about_path(fs.stat(&s.link_target).await, &mut unreadable)?
                    .is_none() =>
        {
            return broken(format!(
                "{shebang}: {interpreter} is a symlink to {}, which is not in the image",
                s.link_target
            ));
        }
        Some(_) => {}
    }
    if interpreter.ends_with("/env")
        && let Some(program) = arg
            .unwrap_or_default()
            .split_whitespace()
            .find(|w| !w.starts_with('-') && !w.contains('='))
        && skills::check_name(program).is_ok()
        && !matches!(
            resolve::lookup(fs, program, search_path).await?,
            Lookup::Found(_)
        )
    {
        return broken(format!(
            "{shebang}: {program} is not on PATH in the image; install it in the Dockerfile"
        ));
    }
    Ok(None)
}

/// How the container side runs probes.
#[derive(Clone, Copy)]
struct ProbePlan<'a> {
    timeout: Duration,
    /// Where earlier results of this container run may be reused; `None` runs every probe.
    reuse: Option<&'a VerifyCache>,
}

async fn container_side_all(
    docker: &Engine,
    ctr: &ContainerInfo,
    names: &[String],
    depths: &[usize],
    search_path: &[String],
    config: &VerifyConfig,
    probes: Option<ProbePlan<'_>>,
) -> Result<Vec<ContainerSide>, VerifyError> {
    let fs = ContainerFs {
        docker,
        container: &ctr.id,
    };
    futures::stream::iter(0..names.len())
        .map(|i| async move {
            let name = &names[i];
            let dirs = &search_path[..depths[i].min(search_path.len())];
            let Some(plan) = probes else {
                return resolve::lookup(fs, name, dirs)
                    .await
                    .map(ContainerSide::unprobed);
            };
            let argv = probe::argv_for(name, name, config);
            let reusable = plan
                .reuse
                .filter(|c| c.may_reuse_probe(&ctr.id, &ctr.started_at, &argv.0));
            if let Some(cache) = reusable {
                // Which file the name is now decides whether the earlier result still holds.
                let lookup = resolve::lookup(fs, name, dirs).await?;
                let Some(file) = lookup.found() else {
                    return Ok(ContainerSide::unprobed(lookup));
                };
                let key = ProbeKey::new(&ctr.id, &ctr.started_at, &argv.0, file);
                let (probe, probe_age) = match cache.probe(&key) {
                    Some((outcome, age)) => (outcome, Some(age)),
                    None => {
                        let outcome = probe::run(docker, &ctr.id, name, &argv, plan.timeout).await;
                        cache.put_probe(key, &outcome);
                        (outcome, None)
                    }
                };
                return Ok(ContainerSide {
                    lookup,
                    probe: Some(probe),
                    probe_age,
                });
            }
            // The engine resolves a bare name on the container's PATH as the lookup does, so
            // the probe need not wait for it; a probe of a name that is not there is dropped.
            let probe = probe::run(docker, &ctr.id, name, &argv, plan.timeout);
            let (lookup, probe) = tokio::join!(resolve::lookup(fs, name, dirs), probe);
            let lookup = lookup?;
            let Some(file) = lookup.found() else {
                return Ok(ContainerSide::unprobed(lookup));
            };
            if let Some(cache) = plan.reuse {
                cache.put_probe(
                    ProbeKey::new(&ctr.id, &ctr.started_at, &argv.0, file),
                    &probe,
                );
            }
            Ok::<_, VerifyError>(ContainerSide {
                lookup,
                probe: Some(probe),
                probe_age: None,
            })
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Rust's architecture names → Go's, which the engine uses.
fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
