//! The image's side: PATH lookups through a throwaway container that is never started, what
//! each file found is (ELF for which machine, script with which interpreter), and the cache of
//! those results per image id.
use std::{collections::HashMap, time::Instant};

use futures::{StreamExt, TryStreamExt};

use super::{
    BinaryStatus, CONCURRENCY, VerifyCache, VerifyError,
    report::ImageSide,
    resolve::{self, ContainerFs, Content, Lookup},
    skills,
    target::Scratch,
};
use crate::docker::Engine;

/// What the cache already knows of an image (per image id), and the names still to look up.
pub(super) struct Cached {
    known: Vec<Option<ImageSide>>,
    pub(super) uncached: Vec<String>,
}

impl Cached {
    pub(super) fn split(
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
    pub(super) fn depths(&self, names: &[String], search_path: &[String]) -> Vec<usize> {
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
    pub(super) fn merge(
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

/// Looks names up in the image, through a throwaway container that is never started.
pub(super) async fn image_side_all(
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
