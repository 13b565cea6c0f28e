//! Pruning pulled images: the `<repo>:<digest12>` pins image mode keeps for rollback, newest
//! first by when they were last tagged, beyond `[build] keep_images`. A tag counts as ours only
//! when its image came from a registry under a digest starting with the tag, or is an overlay
//! we built on such a pin, so an operator's own tags in the same repository are never touched.
use chrono::{DateTime, Utc};

use crate::{
    build::{
        overlay::LABEL_OVERLAY,
        tags::{self, Retention, SHA_TAG_LEN, ShaTag},
    },
    docker::{DockerError, Engine},
};

/// Keeps the newest `keep` pins in `repo` (`current_image`'s always) and untags the others.
pub async fn retain(
    docker: &Engine,
    repo: &str,
    keep: u32,
    current_image: &str,
) -> Result<Retention, DockerError> {
    let pins = pins(docker, repo).await?;
    Ok(tags::prune(docker, &pins, keep, current_image).await)
}

async fn pins(docker: &Engine, repo: &str) -> Result<Vec<ShaTag>, DockerError> {
    let images = docker.list_images(None, false).await?;
    let users = docker.image_users().await?;
    let prefix = format!("{repo}:");
    let mut out = Vec::new();
    for image in images {
        let digests: Vec<&str> = image
            .repo_digests
            .iter()
            .filter_map(|d| d.split_once("@sha256:").map(|(_, hex)| hex))
            .collect();
        for tag in &image.repo_tags {
            let Some(short) = tag.strip_prefix(&prefix) else {
                continue;
            };
            // An overlay built on a pulled base holds the pin instead (it has no digest).
            let overlaid = image.labels.contains_key(LABEL_OVERLAY);
            let pinned = short.len() == SHA_TAG_LEN
                && (overlaid || digests.iter().any(|d| d.starts_with(short)));
            if !pinned {
                continue;
            }
            let tagged_at = docker
                .inspect_image(&image.id)
                .await
                .ok()
                .and_then(|i| i.metadata)
                .and_then(|m| m.last_tag_time);
            out.push(ShaTag {
                tag: tag.clone(),
                git_sha: format!("sha256:{short}"),
                image_id: image.id.clone(),
                created: tagged_at
                    .or_else(|| DateTime::<Utc>::from_timestamp(image.created, 0))
                    .unwrap_or_default(),
                size_bytes: image.size.max(0) as u64,
                used_by: users.get(&image.id).cloned().unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.tag.cmp(&a.tag)));
    Ok(out)
}
