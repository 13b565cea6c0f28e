//! One image build request: options and the context stream in, the engine's progress out.
use std::{collections::HashMap, io};

use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{DockerError, Engine, models::BuildInfo};

/// What to build; the context is the tar stream passed beside it.
#[derive(Debug, Clone)]
pub struct BuildRequest<'a> {
    /// Relative to the context.
    pub dockerfile: &'a str,
    pub tag: &'a str,
    pub no_cache: bool,
    pub labels: &'a HashMap<String, String>,
    pub args: &'a HashMap<String, String>,
    pub target: Option<&'a str>,
    /// BuildKit (with a session id of its own) rather than the classic builder.
    pub buildkit: bool,
}

impl Engine {
    /// Starts the build; the stream carries the engine's progress and ends with the result.
    /// Dropping it cancels the request (the engine then stops the build).
    pub fn build_image<'a, C>(
        &'a self,
        req: &BuildRequest<'_>,
        context: C,
    ) -> impl Stream<Item = Result<BuildInfo, DockerError>> + use<'a, C>
    where
        C: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let session = format!("clawops-{}", uuid::Uuid::new_v4().simple());
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile(req.dockerfile)
            .t(req.tag)
            .rm(true)
            .forcerm(true)
            .nocache(req.no_cache)
            .labels(req.labels)
            .buildargs(req.args);
        if let Some(target) = req.target.filter(|t| !t.is_empty()) {
            options = options.target(target);
        }
        if req.buildkit {
            options = options
                .version(BuilderVersion::BuilderBuildKit)
                .session(&session);
        }
        let action = format!("building {}", req.tag);
        let endpoint = self.endpoint.clone();
        self.docker
            .build_image(
                options.build(),
                None,
                Some(bollard::body_try_stream(context)),
            )
            .map(move |item| item.map_err(|e| DockerError::classify(action.clone(), &endpoint, e)))
    }
}
