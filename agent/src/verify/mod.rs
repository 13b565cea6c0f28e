//! VerifyBinaries: are the binaries the skills need baked into the image, and do they run?
//! One call replaces `docker compose exec openclaw-gateway which gog` run name by name:
//! - the image: PATH lookup in a throwaway container created (never started) from the image the
//!   service's container runs, through the archive API — no shell, nothing executed;
//! - the running container: the same lookup, then `<bin> --version` through exec with a timeout;
//! - the difference between the two, explained by the container's filesystem diff: what was
//!   installed at runtime vanishes on the next recreate.
//!
//! Both sides run concurrently; the diff (slow on some storage drivers) only when they disagree.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use bollard::Docker;
use futures::{StreamExt, TryStreamExt};

use crate::{
    config::{ResolvedApp, VerifyConfig},
    docker::DockerError,
};

pub mod probe;
pub mod report;
pub mod requirements;
pub mod resolve;
pub mod runtime;
pub mod skills;
mod target;

pub use report::{BinaryReport, BinaryStatus, ContainerInfo, Report};

use probe::{ProbeOutcome, ProbeVerdict};
use report::{ImageSide, NotRunReason};
use requirements::Requirements;
use resolve::{ContainerFs, Content, Found, Lookup};
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
        "no container of service {service:?} in compose project {project:?}: start it \
         (`clawops up`), or pass --image NAME to check an image without a container"
    )]
    NoContainer { service: String, project: String },
    #[error(
        "image {image:?} does not exist on this machine: build it (`clawops build`) or check the \
         name with `docker images`"
    )]
    ImageNotFound { image: String },
    #[error("cannot inspect {what}: {source}")]
    Inspect {
        what: String,
        source: bollard::errors::Error,
    },
    #[error(
        "cannot create a temporary (never started) container from image {image} to read its \
         files: {source}"
    )]
    Scratch {
        image: String,
        source: bollard::errors::Error,
    },
    #[error("cannot read {path} in container {container}: {source}")]
    Archive {
        path: String,
        container: String,
        source: bollard::errors::Error,
    },
    #[error("cannot run a probe in container {container}: {source}")]
    Exec {
        container: String,
        source: bollard::errors::Error,
    },
    #[error("cannot read the filesystem changes of container {container}: {source}")]
    Diff {
        container: String,
        source: bollard::errors::Error,
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
    pub probe_timeout: Duration,
}

/// What the container side found for one name.
#[derive(Debug, Clone)]
struct ContainerSide {
    lookup: Lookup,
    probe: Option<ProbeOutcome>,
}

pub async fn verify(
    docker: &Docker,
    app: &ResolvedApp,
    config: &VerifyConfig,
    opts: VerifyOptions,
) -> Result<Report, VerifyError> {
    let started = Instant::now();
    for name in &opts.binaries {
        skills::check_name(name).map_err(|reason| VerifyError::InvalidName {
            name: name.clone(),
            reason,
        })?;
    }
    target::sweep_stale(docker.clone());
    let roots = skills::skill_roots(&app.repo, &app.home);
    let scan = tokio::task::spawn_blocking(move || skills::scan(&roots));
    let target = target::find(docker, &app.project, &opts.service, opts.image.as_deref()).await?;
    let scan = scan.await.map_err(|e| VerifyError::Task(e.to_string()))?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "verify: target found");
    let reqs = Requirements::gather(&opts.binaries, &config.binaries, &scan.skills);

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

    let ctr = target.container.as_ref();
    let (image_side, container_side) = tokio::join!(
        image_side_all(docker, &target.image_ref, &names, &search_path),
        async {
            match ctr {
                Some(c) => {
                    container_side_all(docker, c, &names, &search_path, config, opts.probe_timeout)
                        .await
                        .map(Some)
                }
                None => Ok(None),
            }
        }
    );
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "verify: image and container checked");
    let (engine_arch, images) = image_side?;
    let mut containers = container_side?;

    let changes = match (ctr, &containers) {
        (Some(c), Some(sides))
            if images
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
    if let (Some(c), Some(sides)) = (ctr.filter(|c| c.running), containers.as_mut()) {
        for ((name, image), side) in names.iter().zip(&images).zip(sides.iter_mut()) {
            if let (Lookup::Found(i), Some(s)) = (&image.lookup, side.lookup.found())
                && i.path != s.path
            {
                side.probe =
                    Some(run_probe(docker, &c.id, name, i, config, opts.probe_timeout).await);
            }
        }
    }

    let not_run = match ctr {
        None => Some(NotRunReason::NoContainer),
        Some(c) if !c.running => Some(NotRunReason::Stopped(c.name.clone())),
        Some(_) => None,
    };
    let mounts = ctr.map(|c| c.mounts.clone()).unwrap_or_default();
    let mut binaries: Vec<BinaryReport> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let image = &images[i];
            let side = containers.as_ref().map(|s| &s[i]);
            let drift = match side {
                Some(s) => {
                    runtime::drift(name, &image.lookup, &s.lookup, changes.as_ref(), &mounts)
                }
                None => Drift::None,
            };
            report::decide(
                name,
                image,
                side.map(|s| &s.lookup),
                side.and_then(|s| s.probe.as_ref()),
                &drift,
                not_run.as_ref(),
                &search_path,
            )
        })
        .collect();

    let usable: HashMap<String, bool> = binaries
        .iter()
        .map(|b| (b.name.clone(), b.status.usable()))
        .collect();
    let required = reqs.required(&usable);
    for (b, wanted) in binaries.iter_mut().zip(&reqs.wanted) {
        b.required = required.get(&b.name).copied().unwrap_or(true);
        b.required_by = wanted.required_by.clone();
    }
    let ok = binaries.iter().all(|b| !b.required || b.status.usable());
    Ok(Report {
        image: target.image_name,
        image_id: target.image_id,
        container: target.container,
        engine_arch,
        search_path,
        binaries,
        skill_problems: scan.problems,
        notes,
        ok,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Looks every name up in the image, through a throwaway container that is never started.
async fn image_side_all(
    docker: &Docker,
    image: &str,
    names: &[String],
    search_path: &[String],
) -> Result<(String, Vec<ImageSide>), VerifyError> {
    let t = Instant::now();
    let (scratch, version) = tokio::join!(Scratch::create(docker, image), docker.version());
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "verify: scratch created");
    // The engine's architecture is the VM's; fall back to the agent's own (same machine).
    let engine_arch = version
        .ok()
        .and_then(|v| v.arch)
        .unwrap_or_else(|| go_arch(std::env::consts::ARCH).to_owned());
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
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "verify: image looked up");
    scratch.remove().await;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "verify: scratch removed");
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

async fn container_side_all(
    docker: &Docker,
    ctr: &ContainerInfo,
    names: &[String],
    search_path: &[String],
    config: &VerifyConfig,
    timeout: Duration,
) -> Result<Vec<ContainerSide>, VerifyError> {
    let fs = ContainerFs {
        docker,
        container: &ctr.id,
    };
    futures::stream::iter(0..names.len())
        .map(|i| async move {
            let name = &names[i];
            let lookup = resolve::lookup(fs, name, search_path).await?;
            let probe = match (&lookup, ctr.running) {
                (Lookup::Found(f), true) => {
                    Some(run_probe(docker, &ctr.id, name, f, config, timeout).await)
                }
                _ => None,
            };
            Ok::<_, VerifyError>(ContainerSide { lookup, probe })
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// `<path> --version`, or the configured argv with its command pinned to the resolved file.
async fn run_probe(
    docker: &Docker,
    container: &str,
    name: &str,
    found: &Found,
    config: &VerifyConfig,
    timeout: Duration,
) -> ProbeOutcome {
    let (argv, configured) = match config.probes.get(name).filter(|a| !a.is_empty()) {
        Some(argv) => {
            let mut argv = argv.clone();
            if argv[0] == name {
                argv[0] = found.path.clone();
            }
            (argv, true)
        }
        None => (vec![found.path.clone(), "--version".to_owned()], false),
    };
    let t = Instant::now();
    let outcome = probe::probe(docker, container, &argv, configured, timeout).await;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, name, "verify: probed");
    outcome
        .unwrap_or_else(|e| ProbeOutcome {
            verdict: ProbeVerdict::Broken,
            version: None,
            detail: Some(e.to_string()),
        })
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
