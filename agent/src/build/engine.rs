//! One build request against the engine, BuildKit or classic: options, the context stream,
//! following progress to the end (or the timeout), and telling "BuildKit is unavailable here"
//! (fall back) apart from "the build failed" (report the step).
use std::{collections::HashMap, sync::Arc};

use futures::StreamExt;

use super::{
    BuildError, BuildSpec, Builder, BuilderChoice, ContextPlan, Failure, LABEL_GIT_SHA,
    LABEL_PROJECT, archive, progress,
};
use crate::{
    docker::{BuildRequest, Engine, models::SystemInfo},
    events::EventSink,
};

pub(super) enum Attempt {
    /// BuildKit could not start on this engine (nothing was built).
    Unavailable(String),
    Failed(BuildError),
}

impl From<BuildError> for Attempt {
    fn from(e: BuildError) -> Self {
        Attempt::Failed(e)
    }
}

/// One build request; returns the image id.
pub(super) async fn run_once(
    docker: &Engine,
    spec: &BuildSpec,
    plan: &Arc<ContextPlan>,
    tag: &str,
    builder: Builder,
    sink: &EventSink,
) -> Result<String, Attempt> {
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_PROJECT.into(), spec.project.clone());
    if let Some(sha) = &spec.git_sha {
        labels.insert(LABEL_GIT_SHA.into(), sha.clone());
    }
    let args: HashMap<String, String> = spec
        .args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let request = BuildRequest {
        dockerfile: &plan.dockerfile,
        tag,
        no_cache: spec.no_cache,
        labels: &labels,
        args: &args,
        target: spec.target.as_deref(),
        buildkit: builder == Builder::BuildKit,
    };
    let (body, writer) = archive::spawn_stream(plan.clone());
    let mut progress = progress::Progress::new(sink);
    let mut error = None;
    let mut timed_out = false;
    {
        let mut stream = std::pin::pin!(docker.build_image(&request, body));
        let deadline = tokio::time::Instant::now() + spec.timeout;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(info))) => progress.on_info(info),
                Ok(Some(Err(e))) => {
                    error = Some(e);
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    timed_out = true;
                    break;
                }
            }
        }
        // Dropping the request here stops the context writer if the engine quit early, and
        // makes the engine cancel a build that timed out.
    }
    progress.finish();
    if timed_out {
        let _ = writer.await;
        return Err(BuildError::Failed(progress.failure(&format!(
            "the build did not finish within {}s ([build] timeout_secs); it was cancelled",
            spec.timeout.as_secs()
        )))
        .into());
    }
    let sent = writer
        .await
        .map_err(|e| BuildError::InvalidSpec(format!("sending the build context: {e}")))?;
    if let Some(e) = error {
        if let Err(context_error) = sent {
            return Err(BuildError::Context(context_error).into());
        }
        if builder == Builder::BuildKit && !progress.saw_progress && e.buildkit_unavailable() {
            return Err(Attempt::Unavailable(e.to_string()));
        }
        // The engine's own words are the build's failure; anything else is the engine's.
        return Err(match e.engine_message() {
            Some(message) => BuildError::Failed(progress.failure(message)),
            None => BuildError::Docker(e),
        }
        .into());
    }
    sent.map_err(BuildError::Context)?;
    match progress.image_id.take() {
        Some(id) if id.starts_with("sha256:") => Ok(id),
        _ => {
            // Older engines report only a short id: ask for the full one by tag.
            let inspected = docker
                .inspect_image(tag)
                .await
                .map_err(BuildError::Docker)?;
            inspected.id.ok_or_else(|| {
                BuildError::Failed(Failure {
                    step: String::new(),
                    message: format!("the engine finished without reporting an image for {tag}"),
                    output_tail: Vec::new(),
                })
                .into()
            })
        }
    }
}

/// BuildKit unless the choice or the engine says otherwise; the reason when falling back.
pub(super) fn choose_builder(
    docker: &Engine,
    info: &SystemInfo,
    choice: BuilderChoice,
) -> (Builder, Option<String>) {
    match choice {
        BuilderChoice::Classic => (Builder::Classic, None),
        BuilderChoice::Buildkit => (Builder::BuildKit, None),
        BuilderChoice::Auto => {
            let (major, minor) = docker.api_version();
            if info.os_type.as_deref() == Some("windows") {
                (
                    Builder::Classic,
                    Some("the engine runs Windows containers".into()),
                )
            } else if (major, minor) < (1, 39) {
                (
                    Builder::Classic,
                    Some(format!(
                        "the engine speaks Docker API {}.{}; BuildKit needs 1.39 (Docker 18.09) or newer",
                        major, minor
                    )),
                )
            } else {
                (Builder::BuildKit, None)
            }
        }
    }
}

/// Dockerfile features the classic builder rejects.
pub fn buildkit_features(dockerfile: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    let lower = dockerfile.to_ascii_lowercase();
    for (needle, name) in [
        ("--mount=", "`RUN --mount`"),
        ("--chmod=", "`COPY --chmod`"),
        ("--link", "`COPY --link`"),
        ("<<", "heredocs"),
        ("--network=", "`RUN --network`"),
        ("--security=", "`RUN --security`"),
    ] {
        if lower.contains(needle) {
            found.push(name);
        }
    }
    found
}

pub(super) fn fallback_warning(reason: &str, dockerfile: &str) -> String {
    let mut msg = format!(
        "BuildKit is not available on this engine ({reason}); building with the classic builder"
    );
    let features = buildkit_features(dockerfile);
    if !features.is_empty() {
        msg.push_str(&format!(
            ". This Dockerfile uses {}, which the classic builder rejects: upgrade Docker \
             (BuildKit is built into Docker 18.09+ on Linux) or build the image in CI",
            features.join(", ")
        ));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_incompatible_features_are_named() {
        let df =
            "FROM node:22\nRUN --mount=type=cache,target=/root/.npm npm ci\nCOPY --chmod=755 a b\n";
        assert_eq!(buildkit_features(df), ["`RUN --mount`", "`COPY --chmod`"]);
        assert!(buildkit_features("FROM scratch\nCOPY a b\n").is_empty());
        let w = fallback_warning("old API", df);
        assert!(w.contains("classic builder rejects"), "{w}");
    }
}
