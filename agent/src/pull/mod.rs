//! Image mode's registry side: which digest a tag points at, pulling exactly that digest with
//! streamed progress, pinning it under `<repo>:<digest12>` for rollback, and pruning old pins.
//! The Docker calls are in `docker/registry.rs`; this module decides what to ask and what a
//! failure means for the operator.
use std::time::{Duration, Instant};

use crate::{
    docker::{DockerError, Engine, PullRequest, RegistryCredentials},
    events::{Event, EventSink},
};

pub mod auth;
pub mod progress;
pub mod reference;
mod retain;

pub use reference::{PullRef, RefError, is_digest};
pub use retain::retain;

/// Pull progress goes out at most this often (and whenever a layer completes).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The registry or the pull failed; nothing was stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("the registry refused {reference}: {}. {hint}", engine_says(source))]
    Unauthorized {
        reference: String,
        hint: &'static str,
        source: DockerError,
    },
    #[error(
        "could not ask the registry which digest {reference} is: {}. Is the registry up, and \
         does the tag exist?",
        engine_says(source)
    )]
    Resolve {
        reference: String,
        source: DockerError,
    },
    #[error(
        "pulling {reference} failed: {}. Is the registry up? Run `clawops update` again once it is",
        engine_says(source)
    )]
    Pull {
        reference: String,
        source: DockerError,
    },
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// What the engine said, without the client library's framing when there is a message.
fn engine_says(e: &DockerError) -> String {
    e.engine_message()
        .map(str::to_owned)
        .unwrap_or_else(|| e.to_string())
}

fn unauthorized_hint(credentials: Option<&RegistryCredentials>) -> &'static str {
    match credentials {
        Some(_) => "Check the credentials in `[registry] auth_file` (`docker --config DIR login`)",
        None => "A private image needs `[registry] auth_file` (a docker config.json)",
    }
}

/// The digest to deploy: the one `reference` names, else what the registry serves for its tag.
pub async fn resolve(
    docker: &Engine,
    reference: &PullRef,
    credentials: Option<&RegistryCredentials>,
) -> Result<String, PullError> {
    if let Some(digest) = &reference.digest {
        return Ok(digest.clone());
    }
    let tagged = reference.tagged();
    match docker.registry_digest(&tagged, credentials).await {
        Ok(digest) => Ok(digest),
        Err(e) if e.is_unreachable() => Err(e.into()),
        Err(source) if source.registry_unauthorized() => Err(PullError::Unauthorized {
            reference: tagged,
            hint: unauthorized_hint(credentials),
            source,
        }),
        Err(source) => Err(PullError::Resolve {
            reference: tagged,
            source,
        }),
    }
}

/// One pull: `repo@digest`, with the credentials for its registry.
#[derive(Debug, Clone, Copy)]
pub struct Fetch<'a> {
    pub docker: &'a Engine,
    pub reference: &'a PullRef,
    pub digest: &'a str,
    pub credentials: Option<&'a RegistryCredentials>,
}

/// How a fetch went.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// `repo@digest`.
    pub at: String,
    /// False when the image was already on this machine (nothing downloaded).
    pub downloaded: bool,
    pub layers: u32,
    pub bytes: u64,
}

/// Pulls `repo@digest` unless the engine has it, streaming [`Event::Pull`] progress.
pub async fn fetch(f: &Fetch<'_>, sink: &EventSink) -> Result<Fetched, PullError> {
    let at = f.reference.at(f.digest);
    if f.docker.find_image(&at).await?.is_some() {
        return Ok(Fetched {
            at,
            downloaded: false,
            layers: 0,
            bytes: 0,
        });
    }
    let mut tally = progress::Tally::new(&at);
    let mut last = Instant::now();
    let request = PullRequest {
        reference: &at,
        credentials: f.credentials,
    };
    let pulled = f
        .docker
        .pull(request, |status| {
            if tally.add(&status) || last.elapsed() >= PROGRESS_EVERY {
                sink.emit(Event::Pull(tally.progress()));
                last = Instant::now();
            }
        })
        .await;
    let done = tally.progress();
    sink.emit(Event::Pull(done.clone()));
    match pulled {
        Ok(()) => Ok(Fetched {
            at,
            downloaded: true,
            layers: done.layers_total,
            bytes: done.bytes_done,
        }),
        Err(e) if e.is_unreachable() => Err(e.into()),
        Err(source) if source.registry_unauthorized() => Err(PullError::Unauthorized {
            reference: at,
            hint: unauthorized_hint(f.credentials),
            source,
        }),
        Err(source) => Err(PullError::Pull {
            reference: at,
            source,
        }),
    }
}

/// Points each of `tags` at the image `at` names; its id.
pub async fn pin(docker: &Engine, at: &str, tags: &[&str]) -> Result<String, DockerError> {
    for tag in tags {
        docker.tag(at, tag).await?;
    }
    Ok(docker.inspect_image(at).await?.id.unwrap_or_default())
}
