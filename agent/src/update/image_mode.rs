//! Update in image mode: resolve the tag to a digest, do nothing when that digest already runs,
//! else pull it and pin it as `<repo>:<digest12>`; the swap and rollback are the built images'.
//! The journal records the digest where built mode records the git sha, so `rollback`,
//! `history` and `status` work on digests unchanged.
use super::{DeployReport, Staged, UpdateError, UpdateOptions, running_image, sha_tag, short};
use crate::{
    build,
    config::Config,
    context::AgentContext,
    docker::{Engine, short_id},
    events::{Phase, PhaseStatus},
    journal::Outcome,
    operation::Reporter,
    pull::{self, PullRef, RefError, auth},
    up,
};

/// The image to deploy in image mode, parsed: see [`configured`].
pub fn source(
    config: &Config,
    app: &crate::config::ResolvedApp,
) -> Result<Option<PullRef>, RefError> {
    configured(config, app)
        .as_deref()
        .map(PullRef::parse)
        .transpose()
}

/// The image image mode deploys, as written: `[app] image`, else the service's compose
/// `image:` when it has no `build:` and `[build] context` does not say what to build. `None`:
/// built mode (also when the compose file does not load here, so built mode reports that from
/// the target tree). The watcher asks this too, so it watches what an update would deploy.
pub fn configured(config: &Config, app: &crate::config::ResolvedApp) -> Option<String> {
    if let Some(image) = &config.app.image {
        return Some(image.clone());
    }
    let project = up::load_project(config, app).ok()?;
    match project.service(&config.app.service) {
        Some(svc) if svc.build.is_none() && config.build.context.is_none() => svc.image.clone(),
        _ => None,
    }
}

/// Refuses a `--ref` image mode cannot use (a usage error, before anything starts).
pub fn check_ref(ctx: &AgentContext, given: &str) -> Result<(), RefError> {
    match source(&ctx.config, &ctx.app)? {
        Some(source) => source.with_override(given).map(drop),
        None => Ok(()),
    }
}

/// Resolves, checks for a no-op and pulls: the image to swap in, or `None` when the digest
/// already runs (the report then says so).
pub(super) async fn stage(
    ctx: &AgentContext,
    docker: &Engine,
    source: &PullRef,
    opts: &UpdateOptions,
    p: &Reporter<'_>,
    report: &mut DeployReport,
) -> Result<Option<Staged>, UpdateError> {
    let wanted = match &opts.git_ref {
        Some(given) => source.with_override(given)?,
        None => source.clone(),
    };
    let credentials = auth::for_reference(ctx.config.registry.auth_file.as_deref(), &wanted)?;
    p.phase(Phase::Resolve, PhaseStatus::Started, wanted.display());
    let digest = pull::resolve(docker, &wanted, credentials.as_ref()).await?;
    p.phase(
        Phase::Resolve,
        PhaseStatus::Done,
        format!("{} is {digest}", wanted.display()),
    );
    report.to_sha = Some(digest.clone());

    let project = up::load_deployable(&ctx.config, &ctx.app, p.sink)
        .map_err(|e| UpdateError::Up(up::UpError::from(e)))?;
    let service = ctx.config.app.service.as_str();
    let image_name = project.require_service(service)?.image_ref(&project.name);
    let deployed = !opts.force && report.from_sha.as_deref() == Some(digest.as_str());
    let overlay = ctx.config.build.overlay.as_deref();
    let running = match running_image(docker, &project, service, &digest).await {
        // An edited (or added, or dropped) `[build] overlay` needs a build for the same digest.
        Some(image) if build::overlay::is_current(docker, &image, overlay).await => Some(image),
        _ => None,
    };
    if deployed && let Some(image) = running {
        report.outcome = Outcome::UpToDate;
        report.image = Some(image);
        report.message = format!(
            "already up to date: {} ({}) is deployed and running",
            wanted.display(),
            short(&digest)
        );
        return Ok(None);
    }

    let image = sha_tag(&image_name, &digest);
    let fetch = pull::Fetch {
        docker,
        reference: &wanted,
        digest: &digest,
        credentials: credentials.as_ref(),
    };
    match overlay {
        None => pull_and_pin(ctx, p, &fetch, &[image.as_str(), image_name.as_str()]).await?,
        Some(overlay) => {
            let base = build::tags::base_tag(&image);
            pull_and_pin(ctx, p, &fetch, &[base.as_str()]).await?;
            let tags = [image.clone(), image_name.clone()];
            build_overlay(ctx, docker, p, overlay, &base, &tags).await?;
        }
    }
    report.image = Some(image.clone());
    Ok(Some(Staged {
        project,
        image_name,
        image,
        target: digest,
    }))
}

/// Builds `[build] overlay` FROM the pulled base (`<repo>:<digest12>-base`) and gives the
/// result the pin and the compose `image:` tag, so the swap, rollback and verify see it.
async fn build_overlay(
    ctx: &AgentContext,
    docker: &Engine,
    p: &Reporter<'_>,
    overlay: &std::path::Path,
    base: &str,
    tags: &[String],
) -> Result<(), UpdateError> {
    let mut labels: std::collections::HashMap<String, String> = ctx
        .config
        .build
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(build::LABEL_PROJECT.into(), ctx.app.project.clone());
    let spec = build::OverlaySpec {
        dockerfile: overlay.to_owned(),
        labels,
        builder: ctx.config.build.builder,
        no_cache: false,
        timeout: std::time::Duration::from_secs(ctx.config.build.timeout_secs),
    };
    p.phase(
        Phase::Build,
        PhaseStatus::Started,
        overlay.display().to_string(),
    );
    let built = build::overlay::build(docker, &spec, base, tags, p.sink).await?;
    p.phase(
        Phase::Build,
        PhaseStatus::Done,
        format!(
            "overlay on {base} in {:.1}s → {}",
            built.duration.as_secs_f64(),
            tags.join(", ")
        ),
    );
    Ok(())
}

/// Pulls the digest (streaming progress), tags it for rollback (`tags[0]`, the pin) and for the
/// container, and prunes pins beyond `[build] keep_images`.
async fn pull_and_pin(
    ctx: &AgentContext,
    p: &Reporter<'_>,
    fetch: &pull::Fetch<'_>,
    tags: &[&str],
) -> Result<(), UpdateError> {
    p.phase(
        Phase::Pull,
        PhaseStatus::Started,
        fetch.reference.at(fetch.digest),
    );
    let fetched = pull::fetch(fetch, p.sink).await?;
    let id = pull::pin(fetch.docker, &fetched.at, tags).await?;
    let mut said = if fetched.downloaded {
        format!(
            "{} ({} layers, {} bytes)",
            fetched.at, fetched.layers, fetched.bytes
        )
    } else {
        format!("{} is already here ({})", fetched.at, short_id(&id))
    };
    said.push_str(&format!(" → {}", tags.join(", ")));
    let repo = tags
        .first()
        .and_then(|pin| pin.rsplit_once(':'))
        .map(|(repo, _)| repo);
    if let Some(repo) = repo {
        match pull::retain(fetch.docker, repo, ctx.config.build.keep_images, &id).await {
            Ok(r) if !r.removed.is_empty() => {
                said.push_str(&format!("; pruned {}", r.removed.join(", ")));
            }
            Ok(_) => {}
            Err(e) => p
                .sink
                .warning(format!("could not prune old pulled images: {e}")),
        }
    }
    let status = if fetched.downloaded {
        PhaseStatus::Done
    } else {
        PhaseStatus::Skipped
    };
    p.phase(Phase::Pull, status, said);
    Ok(())
}
