//! One build request against the engine, BuildKit or classic: options, the context stream,
//! following progress to the end (or the timeout), and telling "BuildKit is unavailable here"
//! (fall back) apart from "the build failed" (report the step).
use std::{collections::HashMap, sync::Arc};

use bollard::{
    Docker,
    query_parameters::{BuildImageOptionsBuilder, BuilderVersion},
};
use futures::StreamExt;

use super::{
    BuildError, BuildSpec, Builder, BuilderChoice, ContextPlan, Failure, LABEL_GIT_SHA,
    LABEL_PROJECT, archive, progress,
};
use crate::events::EventSink;

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
    docker: &Docker,
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
    let session = format!("clawops-{}", uuid::Uuid::new_v4().simple());
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(&plan.dockerfile)
        .t(tag)
        .rm(true)
        .forcerm(true)
        .nocache(spec.no_cache)
        .labels(&labels)
        .buildargs(&args);
    if let Some(target) = spec.target.as_deref().filter(|t| !t.is_empty()) {
        options = options.target(target);
    }
    if builder == Builder::BuildKit {
        options = options
            .version(BuilderVersion::BuilderBuildKit)
            .session(&session);
    }
    let (body, writer) = archive::spawn_stream(plan.clone());
    let mut progress = progress::Progress::new(sink);
    let mut error = None;
    let mut timed_out = false;
    {
        let mut stream =
            docker.build_image(options.build(), None, Some(bollard::body_try_stream(body)));
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
        if builder == Builder::BuildKit && !progress.saw_progress && buildkit_unavailable(&e) {
            return Err(Attempt::Unavailable(e.to_string()));
        }
        return Err(match e {
            bollard::errors::Error::DockerStreamError { error } => {
                BuildError::Failed(progress.failure(&error))
            }
            bollard::errors::Error::DockerResponseServerError { message, .. } => {
                BuildError::Failed(progress.failure(&message))
            }
            other => BuildError::Docker(other),
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
    docker: &Docker,
    info: &bollard::models::SystemInfo,
    choice: BuilderChoice,
) -> (Builder, Option<String>) {
    match choice {
        BuilderChoice::Classic => (Builder::Classic, None),
        BuilderChoice::Buildkit => (Builder::BuildKit, None),
        BuilderChoice::Auto => {
            let v = docker.client_version();
            if info.os_type.as_deref() == Some("windows") {
                (
                    Builder::Classic,
                    Some("the engine runs Windows containers".into()),
                )
            } else if (v.major_version, v.minor_version) < (1, 39) {
                (
                    Builder::Classic,
                    Some(format!(
                        "the engine speaks Docker API {}.{}; BuildKit needs 1.39 (Docker 18.09) or newer",
                        v.major_version, v.minor_version
                    )),
                )
            } else {
                (Builder::BuildKit, None)
            }
        }
    }
}

/// Did the engine refuse BuildKit itself (rather than the build failing)?
pub fn buildkit_unavailable(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    let mentions = |m: &str| {
        let m = m.to_ascii_lowercase();
        [
            "buildkit",
            "session",
            "builder version",
            "unsupported builder",
        ]
        .iter()
        .any(|k| m.contains(k))
    };
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => matches!(status_code, 404 | 501) || mentions(message),
        E::DockerStreamError { error } => mentions(error),
        E::MissingSessionBuildkitError {} | E::MissingVersionBuildkitError {} => true,
        _ => false,
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
    fn buildkit_refusals_are_told_apart_from_build_failures() {
        use bollard::errors::Error as E;
        assert!(buildkit_unavailable(&E::DockerResponseServerError {
            status_code: 400,
            message: "buildkit not supported by daemon".into(),
        }));
        assert!(buildkit_unavailable(&E::DockerResponseServerError {
            status_code: 404,
            message: "page not found".into(),
        }));
        assert!(buildkit_unavailable(&E::DockerStreamError {
            error: "no active session for abc: context deadline exceeded".into(),
        }));
        assert!(!buildkit_unavailable(&E::DockerStreamError {
            error: "executor failed running [/bin/sh -c exit 3]: exit code: 3".into(),
        }));
        assert!(!buildkit_unavailable(&E::DockerResponseServerError {
            status_code: 500,
            message: "no space left on device".into(),
        }));
    }

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
