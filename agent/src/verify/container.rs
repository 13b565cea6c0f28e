//! The running container's side: the same PATH lookup as in the image, and `--version` probes
//! through exec, reused for the same file within one container run.
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use super::{
    CONCURRENCY, ContainerInfo, VerifyCache, VerifyError, VerifyOptions,
    cache::ProbeKey,
    probe::{self, ProbeOutcome},
    report::ImageSide,
    resolve::{self, ContainerFs, Lookup},
};
use crate::{config::VerifyConfig, docker::Engine};

/// What the container side found for one name.
#[derive(Debug, Clone)]
pub(super) struct ContainerSide {
    pub(super) lookup: Lookup,
    pub(super) probe: Option<ProbeOutcome>,
    /// How old `probe` is when it was reused from an earlier call rather than run now.
    pub(super) probe_age: Option<Duration>,
}

impl ContainerSide {
    fn unprobed(lookup: Lookup) -> Self {
        Self {
            lookup,
            probe: None,
            probe_age: None,
        }
    }
}

/// Probes the image's file where the container resolves the name elsewhere.
pub(super) async fn reprobe_image_files(
    docker: &Engine,
    c: &ContainerInfo,
    names: &[String],
    images: &[ImageSide],
    sides: &mut [ContainerSide],
    config: &VerifyConfig,
    opts: &VerifyOptions,
) {
    for ((name, image), side) in names.iter().zip(images).zip(sides.iter_mut()) {
        if let (Lookup::Found(i), Some(s)) = (&image.lookup, side.lookup.found())
            && i.path != s.path
        {
            let argv = probe::argv_for(name, &i.path, config);
            side.probe = Some(probe::run(docker, &c.id, name, &argv, opts.probe_timeout).await);
            side.probe_age = None;
        }
    }
}

/// How the container side runs probes.
#[derive(Clone, Copy)]
pub(super) struct ProbePlan<'a> {
    pub(super) timeout: Duration,
    /// Where earlier results of this container run may be reused; `None` runs every probe.
    pub(super) reuse: Option<&'a VerifyCache>,
}

pub(super) async fn container_side_all(
    docker: &Engine,
    ctr: &ContainerInfo,
    names: &[String],
    depths: &[usize],
    search_path: &[String],
    config: &VerifyConfig,
    probes: Option<ProbePlan<'_>>,
) -> Result<Vec<ContainerSide>, VerifyError> {
    let fs = ContainerFs {
        docker,
        container: &ctr.id,
    };
    futures::stream::iter(0..names.len())
        .map(|i| async move {
            let name = &names[i];
            let dirs = &search_path[..depths[i].min(search_path.len())];
            let Some(plan) = probes else {
                return resolve::lookup(fs, name, dirs)
                    .await
                    .map(ContainerSide::unprobed);
            };
            let argv = probe::argv_for(name, name, config);
            let reusable = plan
                .reuse
                .filter(|c| c.may_reuse_probe(&ctr.id, &ctr.started_at, &argv.0));
            if let Some(cache) = reusable {
                // Which file the name is now decides whether the earlier result still holds.
                let lookup = resolve::lookup(fs, name, dirs).await?;
                let Some(file) = lookup.found() else {
                    return Ok(ContainerSide::unprobed(lookup));
                };
                let key = ProbeKey::new(&ctr.id, &ctr.started_at, &argv.0, file);
                let (probe, probe_age) = match cache.probe(&key) {
                    Some((outcome, age)) => (outcome, Some(age)),
                    None => {
                        let outcome = probe::run(docker, &ctr.id, name, &argv, plan.timeout).await;
                        cache.put_probe(key, &outcome);
                        (outcome, None)
                    }
                };
                return Ok(ContainerSide {
                    lookup,
                    probe: Some(probe),
                    probe_age,
                });
            }
            // The engine resolves a bare name on the container's PATH as the lookup does, so
            // the probe need not wait for it; a probe of a name that is not there is dropped.
            let probe = probe::run(docker, &ctr.id, name, &argv, plan.timeout);
            let (lookup, probe) = tokio::join!(resolve::lookup(fs, name, dirs), probe);
            let lookup = lookup?;
            let Some(file) = lookup.found() else {
                return Ok(ContainerSide::unprobed(lookup));
            };
            if let Some(cache) = plan.reuse {
                cache.put_probe(
                    ProbeKey::new(&ctr.id, &ctr.started_at, &argv.0, file),
                    &probe,
                );
            }
            Ok::<_, VerifyError>(ContainerSide {
                lookup,
                probe: Some(probe),
                probe_age: None,
            })
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}
