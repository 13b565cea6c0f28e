//! Image names and the `<repo>:<sha12>` tags clawops keeps for rollback. A tag counts as ours
//! only when its image carries our labels (`clawops.git-sha` starting with the tag, and the
//! project), so an operator's own tags in the same repository are never touched; an image that
//! any container (running or not) was created from is never removed.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::docker::{DockerError, Engine};

pub const LABEL_GIT_SHA: &str = "clawops.git-sha";
pub const LABEL_PROJECT: &str = "clawops.project";
/// Length of the sha in image tags, as `git log --abbrev=12` would show it.
pub const SHA_TAG_LEN: usize = 12;

/// Why an `image:` reference cannot name a build's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("the image name is empty: set `image:` for the service")]
    Empty,
    #[error("{0:?} is a digest reference; a build produces a tag, e.g. `openclaw:latest`")]
    Digest(String),
    #[error(
        "{image:?}: tag {tag:?} is not valid (letters, digits, `_ . -`, at most 128, not starting with `.` or `-`)"
    )]
    Tag { image: String, tag: String },
    #[error("{0:?}: the repository name is longer than 255 characters")]
    RepoTooLong(String),
    #[error(
        "{image:?}: {part:?} is not a valid repository name component \
         (lowercase letters and digits, separated by `.`, `_`, `__` or dashes)"
    )]
    Component { image: String, part: String },
}

/// A parsed `image:` reference that a build can produce (no digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag, e.g. `openclaw` or `registry:5000/me/openclaw`.
    pub repo: String,
    /// The tag, `latest` when none was given (as Docker assumes).
    pub tag: String,
}

impl ImageRef {
    /// Validates `image` with Docker's reference grammar and says what is wrong.
    pub fn parse(image: &str) -> Result<Self, ImageRefError> {
        let image = image.trim();
        if image.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if image.contains('@') {
            return Err(ImageRefError::Digest(image.to_owned()));
        }
        let last_slash = image.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match image[last_slash..].rfind(':') {
            Some(i) => (
                &image[..last_slash + i],
                image[last_slash + i + 1..].to_owned(),
            ),
            None => (image, "latest".to_owned()),
        };
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !tag_ok {
            return Err(ImageRefError::Tag {
                image: image.to_owned(),
                tag,
            });
        }
        if repo.len() > 255 {
            return Err(ImageRefError::RepoTooLong(image.to_owned()));
        }
        let mut parts: Vec<&str> = repo.split('/').collect();
        // A first component with `.` or `:` (or `localhost`) is a registry host, not a path.
        if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            parts.remove(0);
        }
        for part in parts {
            if !path_component_ok(part) {
                return Err(ImageRefError::Component {
                    image: image.to_owned(),
                    part: part.to_owned(),
                });
            }
        }
        Ok(Self {
            repo: repo.to_owned(),
            tag,
        })
    }

    pub fn full(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }

    /// `<repo>:<sha12>`.
    pub fn sha_tag(&self, sha: &str) -> String {
        format!("{}:{}", self.repo, &sha[..sha.len().min(SHA_TAG_LEN)])
    }
}

/// Where the base of an overlaid image is kept: `<repo>:<sha12>-base` beside `<repo>:<sha12>`
/// (or `<image>-base` for a build without a sha), so verify can compare the two.
pub fn base_tag(tag: &str) -> String {
    format!("{tag}{BASE_SUFFIX}")
}

const BASE_SUFFIX: &str = "-base";

fn path_component_ok(part: &str) -> bool {
    let b = part.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or any number of `-`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Is `sha` a plausible full or abbreviated git sha?
pub fn is_hex_sha(sha: &str) -> bool {
    sha.len() >= SHA_TAG_LEN && sha.bytes().all(|c| c.is_ascii_hexdigit())
}

/// One `<repo>:<sha12>` tag that clawops made.
#[derive(Debug, Clone, PartialEq)]
pub struct ShaTag {
    pub tag: String,
    pub git_sha: String,
    pub image_id: String,
    /// When the image was built (sub-second, so builds in the same second still order).
    pub created: DateTime<Utc>,
    /// The whole image's size; layers shared with other images are counted too.
    pub size_bytes: u64,
    /// Containers created from the image (running or not).
    pub used_by: Vec<String>,
}

/// Our sha tags in `repo` for `project`, newest image first.
pub async fn sha_tags(
    docker: &Engine,
    repo: &str,
    project: &str,
) -> Result<Vec<ShaTag>, DockerError> {
    let images = docker.list_images(Some(LABEL_GIT_SHA), false).await?;
    let users = docker.image_users().await?;
    let prefix = format!("{repo}:");
    let mut out = Vec::new();
    let mut created_at: HashMap<String, DateTime<Utc>> = HashMap::new();
    for image in images {
        let Some(sha) = image.labels.get(LABEL_GIT_SHA) else {
            continue;
        };
        if image.labels.get(LABEL_PROJECT).map(String::as_str) != Some(project) {
            continue;
        }
        for tag in &image.repo_tags {
            let Some(short) = tag.strip_prefix(&prefix) else {
                continue;
            };
            if short.len() == SHA_TAG_LEN && is_hex_sha(short) && sha.starts_with(short) {
                if !created_at.contains_key(&image.id) {
                    // When it was last tagged, not built: a build that hits the cache yields an
                    // image created long ago, yet it is the newest deploy. The list gives whole
                    // seconds only; inspect has the exact times.
                    let inspect = docker.inspect_image(&image.id).await.ok();
                    let exact = inspect
                        .as_ref()
                        .and_then(|i| i.metadata.as_ref())
                        .and_then(|m| m.last_tag_time)
                        .or_else(|| inspect.as_ref().and_then(|i| i.created))
                        .or_else(|| DateTime::from_timestamp(image.created, 0))
                        .unwrap_or_default();
                    created_at.insert(image.id.clone(), exact);
                }
                out.push(ShaTag {
                    tag: tag.clone(),
                    git_sha: sha.clone(),
                    image_id: image.id.clone(),
                    created: created_at[&image.id],
                    size_bytes: image.size.max(0) as u64,
                    used_by: users.get(&image.id).cloned().unwrap_or_default(),
                });
            }
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.tag.cmp(&a.tag)));
    Ok(out)
}

/// The outcome of pruning old sha tags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub removed: Vec<String>,
    /// Old tags kept because a container uses their image.
    pub kept_in_use: Vec<String>,
    /// Tags that could not be removed, with the engine's reason.
    pub failed: Vec<(String, String)>,
}

/// Which tags to drop: all but the newest `keep`, never `current`'s, never one in use.
pub fn choose_removals<'a>(
    tags: &'a [ShaTag],
    keep: u32,
    current_image: &str,
) -> (Vec<&'a ShaTag>, Vec<&'a ShaTag>) {
    let mut remove = Vec::new();
    let mut in_use = Vec::new();
    for t in tags.iter().skip(keep as usize) {
        if t.image_id == current_image {
            continue;
        }
        if t.used_by.is_empty() {
            remove.push(t);
        } else {
            in_use.push(t);
        }
    }
    (remove, in_use)
}

/// Keeps the newest `keep` sha tags (the just-built image's always among them) and untags the
/// older ones; Docker deletes an image when its last tag goes and nothing uses it.
pub async fn retain(
    docker: &Engine,
    repo: &str,
    project: &str,
    keep: u32,
    current_image: &str,
) -> Result<Retention, DockerError> {
    let tags = sha_tags(docker, repo, project).await?;
    Ok(prune(docker, &tags, keep, current_image).await)
}

/// Untags all of `tags` (newest first) but the newest `keep`, `current_image`'s and those in
/// use: shared by built images and pulled ones (`pull::retain`).
pub async fn prune(docker: &Engine, tags: &[ShaTag], keep: u32, current_image: &str) -> Retention {
    let (remove, in_use) = choose_removals(tags, keep, current_image);
    let mut out = Retention {
        kept_in_use: in_use.iter().map(|t| t.tag.clone()).collect(),
        ..Default::default()
    };
    for t in remove {
        // Read before untagging: which base this overlay was built on, if it is one.
        let base = overlay_base(docker, &t.tag).await;
        match docker.remove_image(&t.tag).await {
            Ok(_) => out.removed.push(t.tag.clone()),
            Err(e) => out.failed.push((t.tag.clone(), e.to_string())),
        }
        // The overlay's base goes with it (after it: the overlay image may sit on top of it).
        if let Some(base) = base {
            match docker.remove_image(&base).await {
                Ok(_) => out.removed.push(base),
                Err(e) => out.failed.push((base, e.to_string())),
            }
        }
    }
    out
}

/// The `<tag>-base` tag of an overlaid image, when it still names the very image the overlay
/// recorded as its base (built here or pulled): an operator's own tag is never removed.
async fn overlay_base(docker: &Engine, tag: &str) -> Option<String> {
    let recorded = docker
        .inspect_image(tag)
        .await
        .ok()?
        .config?
        .labels?
        .remove(super::overlay::LABEL_OVERLAY_BASE)?;
    let base = base_tag(tag);
    let id = docker.inspect_image(&base).await.ok()?.id?;
    (id == recorded).then_some(base)
}

/// Removes images that a rebuild left without any tag (they had one of our tags before), when
/// nothing uses them: otherwise every rebuild of the same sha would leak an image.
pub async fn remove_if_dangling(
    docker: &Engine,
    previous_ids: &HashSet<String>,
    current_image: &str,
) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(users) = docker.image_users().await else {
        return removed;
    };
    for id in previous_ids {
        if id == current_image || users.contains_key(id) {
            continue;
        }
        let Ok(image) = docker.inspect_image(id).await else {
            continue;
        };
        if image.repo_tags.as_ref().is_some_and(|t| !t.is_empty()) {
            continue;
        }
        if docker.remove_image(id).await.is_ok() {
            removed.push(id.clone());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_follow_docker_grammar() {
        let r = ImageRef::parse("openclaw:latest").unwrap();
        assert_eq!((r.repo.as_str(), r.tag.as_str()), ("openclaw", "latest"));
        assert_eq!(
            ImageRef::parse("openclaw").unwrap().full(),
            "openclaw:latest"
        );
        let r = ImageRef::parse("localhost:5000/me/open-claw:v1.2").unwrap();
        assert_eq!(r.repo, "localhost:5000/me/open-claw");
        assert_eq!(
            r.sha_tag("0123456789abcdef0123"),
            "localhost:5000/me/open-claw:0123456789ab"
        );
        assert!(ImageRef::parse("gcr.io/p/a__b.c-d---e:x").is_ok());
        for bad in [
            "",
            "OpenClaw:latest",
            "openclaw:",
            "openclaw:-x",
            "open claw",
            "a/-b",
            "a_",
            "openclaw@sha256:abcd",
            "a..b",
        ] {
            let err = ImageRef::parse(bad);
            assert!(err.is_err(), "{bad:?} must be refused");
        }
    }

    fn tag(name: &str, created: i64, id: &str, used: bool) -> ShaTag {
        ShaTag {
            tag: name.into(),
            git_sha: name.into(),
            image_id: id.into(),
            created: DateTime::from_timestamp(created, 0).unwrap(),
            size_bytes: 1,
            used_by: if used { vec!["c".into()] } else { vec![] },
        }
    }

    #[test]
    fn retention_keeps_newest_current_and_used() {
        let tags = vec![
            tag("r:5", 50, "i5", false),
            tag("r:4", 40, "i4", false),
            tag("r:3", 30, "i3", true),
            tag("r:2", 20, "cur", false),
            tag("r:1", 10, "i1", false),
        ];
        let (remove, in_use) = choose_removals(&tags, 2, "cur");
        let remove: Vec<_> = remove.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(remove, ["r:1"]);
        assert_eq!(in_use[0].tag, "r:3");
        let (remove, _) = choose_removals(&tags, 10, "cur");
        assert!(remove.is_empty());
    }
}
