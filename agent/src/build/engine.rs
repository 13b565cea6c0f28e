//! One build request against the engine, BuildKit or classic: options, the context stream,
//! following progress to the end (or the timeout), and telling "BuildKit is unavailable here"
//! (fall back) apart from "the build failed" (report the step).
use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::StreamExt;

use super::{
    BuildError, BuildSpec, Builder, BuilderChoice, ContextPlan, Failure, archive, progress,
};
use crate::{
    docker::{BuildRequest, DockerError, Engine, models::SystemInfo},
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

/// One image to build from a checked context: the base from the repository, or an overlay.
pub(super) struct Request<'a> {
    pub plan: &'a Arc<ContextPlan>,
    /// The first tag; the others are added once the image exists.
    pub tag: &'a str,
    pub labels: HashMap<String, String>,
    pub args: HashMap<String, String>,
    pub target: Option<&'a str>,
    pub no_cache: bool,
    pub timeout: Duration,
}

impl<'a> Request<'a> {
    /// The request for `spec`'s own build: its labels, project and sha labels, args, target.
    pub fn for_spec(spec: &'a BuildSpec, plan: &'a Arc<ContextPlan>, tag: &'a str) -> Self {
        Self {
            plan,
            tag,
            labels: spec.image_labels(),
            args: spec
                .args
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            target: spec.target.as_deref(),
            no_cache: spec.no_cache,
            timeout: spec.timeout,
        }
    }
}

/// Builds `request` with the chosen builder; with `auto`, falls back to the classic builder
/// when BuildKit turns out to be unavailable. Returns the image id and the builder used.
pub(super) async fn build_with_fallback(
    docker: &Engine,
    request: &Request<'_>,
    info: &SystemInfo,
    choice: BuilderChoice,
    sink: &EventSink,
) -> Result<(String, Builder), BuildError> {
    let dockerfile = &request.plan.dockerfile_text;
    let (builder, reason) = choose_builder(docker, info, choice);
    if let Some(reason) = reason {
        sink.warning(fallback_warning(&reason, dockerfile));
    }
    match run_once(docker, request, builder, sink).await {
        Ok(id) => Ok((id, builder)),
        Err(Attempt::Unavailable(reason)) if choice == BuilderChoice::Auto => {
            sink.warning(fallback_warning(&reason, dockerfile));
            match run_once(docker, request, Builder::Classic, sink).await {
                Ok(id) => Ok((id, Builder::Classic)),
                Err(Attempt::Failed(e)) => Err(e),
                Err(Attempt::Unavailable(reason)) => Err(BuildError::Failed(Failure {
                    step: String::new(),
                    message: reason,
                    output_tail: Vec::new(),
                })),
            }
        }
        Err(Attempt::Unavailable(reason)) => Err(BuildError::Failed(Failure {
            step: String::new(),
            message: format!(
                "BuildKit is not available on this engine ({reason}); set [build] builder = \"auto\" to fall back to the classic builder"
            ),
            output_tail: Vec::new(),
        })),
        Err(Attempt::Failed(e)) => Err(e),
    }
}

/// How the engine's stream ended.
struct Followed {
    progress_error: Option<DockerError>,
    timed_out: bool,
}

/// One build request; returns the image id.
async fn run_once(
    docker: &Engine,
    request: &Request<'_>,
    builder: Builder,
    sink: &EventSink,
) -> Result<String, Attempt> {
    let api = BuildRequest {
        dockerfile: &request.plan.dockerfile,
        tag: request.tag,
        no_cache: request.no_cache,
        labels: &request.labels,
        args: &request.args,
        target: request.target,
        buildkit: builder == Builder::BuildKit,
    };
    let (body, writer) = archive::spawn_stream(request.plan.clone());
    let mut progress = progress::Progress::new(sink);
    let followed = follow(docker, &api, body, request.timeout, &mut progress).await;
    progress.finish();
    if followed.timed_out {
        let _ = writer.await;
        return Err(BuildError::Failed(progress.failure(&format!(
            "the build did not finish within {}s ([build] timeout_secs); it was cancelled",
            request.timeout.as_secs()
        )))
        .into());
    }
    let sent = writer
        .await
        .map_err(|e| BuildError::InvalidSpec(format!("sending the build context: {e}")))?;
    if let Some(e) = followed.progress_error {
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
    image_id(docker, &mut progress, request.tag).await
}

/// Reads the engine's progress to the end or the deadline.
async fn follow(
    docker: &Engine,
    api: &BuildRequest<'_>,
    body: archive::ContextStream,
    timeout: Duration,
    progress: &mut progress::Progress<'_>,
) -> Followed {
    let mut stream = std::pin::pin!(docker.build_image(api, body));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(info))) => progress.on_info(info),
            Ok(Some(Err(e))) => {
                return Followed {
                    progress_error: Some(e),
                    timed_out: false,
                };
            }
            Ok(None) => {
                return Followed {
                    progress_error: None,
                    timed_out: false,
                };
            }
            Err(_) => {
                return Followed {
                    progress_error: None,
                    timed_out: true,
                };
            }
        }
    }
    // Dropping the request when this returns stops the context writer if the engine quit
    // early, and makes the engine cancel a build that timed out.
}

/// The built image's full id: from the progress stream, or by tag on engines that report
/// only a short one.
async fn image_id(
    docker: &Engine,
    progress: &mut progress::Progress<'_>,
    tag: &str,
) -> Result<String, Attempt> {
    match progress.image_id.take() {
        Some(id) if id.starts_with("sha256:") => Ok(id),
        _ => {
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
fn choose_builder(
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

fn fallback_warning(reason: &str, dockerfile: &str) -> String {
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
