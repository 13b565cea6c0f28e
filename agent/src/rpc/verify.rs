//! VerifyBinaries: proto ⇄ `crate::verify`.
use std::{sync::Arc, time::Duration};

use clawops_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::{
    context::AgentContext,
    verify::{self, BinaryStatus, DEFAULT_PROBE_TIMEOUT, MAX_PROBE_TIMEOUT, VerifyOptions},
};

pub async fn verify_binaries(
    ctx: &Arc<AgentContext>,
    req: Request<pb::VerifyRequest>,
) -> Result<Response<pb::VerifyReport>, Status> {
    let req = req.into_inner();
    let probe_timeout = match req.timeout_ms {
        0 => DEFAULT_PROBE_TIMEOUT,
        ms => Duration::from_millis(ms.into()),
    };
    if probe_timeout > MAX_PROBE_TIMEOUT {
        return Err(Status::invalid_argument(format!(
            "timeout_ms {} is more than the {} s a probe may take",
            req.timeout_ms,
            MAX_PROBE_TIMEOUT.as_secs()
        )));
    }
    let opts = VerifyOptions {
        binaries: req.binaries,
        service: match req.service.trim() {
            "" => ctx.config.app.service.clone(),
            s => s.to_owned(),
        },
        image: Some(req.image.trim().to_owned()).filter(|i| !i.is_empty()),
        run_probes: !req.no_run,
        probe_timeout,
        fresh: req.fresh,
    };
    let docker = ctx.docker.get().await?;
    // Its own task: a client that hangs up must not leave the throwaway container behind.
    let ctx = ctx.clone();
    let report = tokio::spawn(async move {
        verify::verify(&docker, &ctx.app, &ctx.config, &ctx.verify_cache, opts).await
    })
    .await
    .map_err(|e| Status::internal(format!("the verification task failed: {e}")))??;
    Ok(Response::new(to_proto(report)))
}

fn provided_by(p: Option<verify::ProvidedBy>) -> pb::ProvidedBy {
    match p {
        None => pb::ProvidedBy::Unspecified,
        Some(verify::ProvidedBy::Base) => pb::ProvidedBy::Base,
        Some(verify::ProvidedBy::Overlay) => pb::ProvidedBy::Overlay,
    }
}

fn to_proto(r: verify::Report) -> pb::VerifyReport {
    let (container, container_running, container_state) = match r.container {
        Some(c) => (c.name, c.running, c.state),
        None => Default::default(),
    };
    pb::VerifyReport {
        image: r.image,
        container,
        container_running,
        binaries: r
            .binaries
            .into_iter()
            .map(|b| pb::BinaryReport {
                name: b.name,
                status: status(b.status) as i32,
                path: b.path,
                size_bytes: b.size,
                mode: b.mode,
                version: b.version,
                detail: b.detail,
                required_by: b.required_by,
                required: b.required,
                container_path: b.container_path,
                link_target: b.link_target,
                probe_reused_age_secs: b.probe_reused.map(|age| age.as_secs()),
                provided_by: provided_by(b.provided_by) as i32,
            })
            .collect(),
        skill_problems: r
            .skill_problems
            .into_iter()
            .map(|p| pb::SkillProblem {
                path: p.file.display().to_string(),
                error: p.error,
            })
            .collect(),
        ok: r.ok,
        search_path: r.search_path,
        notes: r.notes,
        engine_arch: r.engine_arch,
        image_id: r.image_id,
        duration_ms: r.duration_ms,
        container_state,
    }
}

fn status(s: BinaryStatus) -> pb::BinaryStatus {
    match s {
        BinaryStatus::Ok => pb::BinaryStatus::Ok,
        BinaryStatus::Missing => pb::BinaryStatus::Missing,
        BinaryStatus::NotExecutable => pb::BinaryStatus::NotExecutable,
        BinaryStatus::WrongArch => pb::BinaryStatus::WrongArch,
        BinaryStatus::Broken => pb::BinaryStatus::Broken,
        BinaryStatus::RuntimeOnly => pb::BinaryStatus::RuntimeOnly,
        BinaryStatus::NotRun => pb::BinaryStatus::NotRun,
    }
}
