//! Update in image mode: resolve the tag to a digest, do nothing when that digest already runs,
//! else pull it and pin it as `<repo>:<digest12>`; the swap and rollback are the built images'.
//! The journal records the digest where built mode records the git sha, so `rollback`,
//! `history` and `status` work on digests unchanged.
use super::{DeployReport, Staged, UpdateError, UpdateOptions, running_image, sha_tag, short};
use crate::{
    config::Config,
    context::AgentContext,
    docker::{Engine, short_id},
    events::{Phase, PhaseStatus},
    journal::Outcome,
    operation::Reporter,
    pull::{self, PullRef, RefError, auth},
    up,
};

/// The image to deploy in image mode: `[app] image`, else the service's compose `image:` when
/// it has no `build:`. `None`: built mode (also when the compose file does not load here, so
/// built mode reports that from the target tree).
pub fn source(
    config: &Config,
    app: &crate::config::ResolvedApp,
) -> Result<Option<PullRef>, RefError> {
    if let Some(image) = &config.app.image {
        return PullRef::parse(image).map(Some);
    }
    let Ok(project) = up::load_project(config, app) else {
        return Ok(None);
    };
    match project.service(&config.app.service) {
        Some(svc) if svc.build.is_none() => svc.image.as_deref().map(PullRef::parse).transpose(),
        _ => Ok(None),
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
    let credentials = match &ctx.config.registry.auth_file {
        Some(file) => auth::credentials(file, wanted.registry())?,
        None => None,
    };
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
    if deployed && let Some(image) = running_image(docker, &project, service, &digest).await {
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
    pull_and_pin(ctx, p, &fetch, &[image.as_str(), image_name.as_str()]).await?;
    report.image = Some(image.clone());
    Ok(Some(Staged {
        project,
        image_name,
        image,
        target: digest,
    }))
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
