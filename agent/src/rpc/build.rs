//! Build: take the lock, resolve the service's build from the compose file and HEAD (errors
//! here are statuses: nothing started), then build through the operation runner, streaming
//! progress and ending with one `result` event.
use std::{sync::Arc, time::Instant};

use clawops_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{
    EventStream,
    convert::now,
    deploy::{build_progress, phase_event},
    operation::{self, Messages},
};
use crate::{
    build::{
        BuiltImage,
        service::{self, RunError},
    },
    context::AgentContext,
    events::Event,
    operation::OperationKind,
};

pub async fn build(
    ctx: &Arc<AgentContext>,
    req: Request<pb::BuildRequest>,
) -> Result<Response<EventStream<pb::BuildEvent>>, Status> {
    let r = req.into_inner();
    let guard = operation::lock(ctx, OperationKind::Build, &r.requested_by)?;
    let op_id = guard.operation().id.clone();
    let prepared = service::prepare(ctx, Some(&r.service), r.no_cache).await?;
    let git_sha = prepared.spec.git_sha.clone().unwrap_or_default();
    let started = Instant::now();
    let messages = Messages {
        capacity: 256,
        event: build_event,
        result: Box::new(move |r| {
            let mut result = match r {
                Ok(r) => result(r),
                Err(join) => pb::BuildResult {
                    error: format!("the build stopped unexpectedly: {join}"),
                    ..Default::default()
                },
            };
            result.operation_id = op_id;
            result.git_sha = git_sha;
            result.duration_ms = started.elapsed().as_millis() as u64;
            Ok(pb::BuildEvent {
                at: now(),
                event: Some(pb::build_event::Event::Result(result)),
            })
        }),
    };
    Ok(operation::stream(
        ctx,
        guard,
        messages,
        async move |ctx, guard, sink| service::run(&ctx, guard, prepared, sink).await,
    ))
}

fn result(r: Result<BuiltImage, RunError>) -> pb::BuildResult {
    match r {
        Ok(b) => pb::BuildResult {
            ok: true,
            image_id: b.image_id,
            tags: b.tags,
            size_bytes: b.size_bytes,
            removed_tags: b.removed_tags,
            builder: b.builder.as_str().to_owned(),
            ..Default::default()
        },
        Err(e) => {
            let failure = match &e {
                RunError::Build(b) => b.failure().cloned(),
                _ => None,
            };
            pb::BuildResult {
                ok: false,
                error: e.to_string(),
                failed_step: failure.as_ref().map(|f| f.step.clone()).unwrap_or_default(),
                output_tail: failure.map(|f| f.output_tail).unwrap_or_default(),
                ..Default::default()
            }
        }
    }
}

/// One progress event as a `BuildEvent`, stamped now.
pub fn build_event(e: Event) -> pb::BuildEvent {
    use pb::build_event::Event as E;
    let event = match e {
        Event::Build(b) => E::Progress(build_progress(b)),
        Event::Phase(p) => E::Phase(phase_event(p)),
        Event::Warning(w) => E::Warning(w),
        // A build emits no container logs; pass any through as plain lines.
        Event::Log { line, .. } => E::Progress(pb::BuildProgress {
            line,
            ..Default::default()
        }),
        // Nor pulls (the classic builder pulls its base images itself): a plain line too.
        Event::Pull(p) => E::Progress(pb::BuildProgress {
            line: format!(
                "pull {}: {}/{} layers",
                p.reference, p.layers_done, p.layers_total
            ),
            ..Default::default()
        }),
    };
    pb::BuildEvent {
        at: now(),
        event: Some(event),
    }
}
