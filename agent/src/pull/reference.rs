//! Registry image references (`repo:tag`, `repo@sha256:…`, `repo:tag@sha256:…`) and the
//! `--ref TAG|DIGEST` override of image mode.
use crate::build::ImageRef;

const DIGEST_PREFIX: &str = "sha256:";

/// Why a reference cannot be pulled; says what a valid one looks like.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("image {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
    #[error(
        "{digest:?} is not a digest: write `sha256:` and 64 lowercase hex digits, as \
         `docker images --digests` shows"
    )]
    BadDigest { digest: String },
    #[error(
        "--ref {given:?} is neither an image tag (e.g. `2026.11.1`) nor a digest \
         (`sha256:` and 64 hex digits): {reason}"
    )]
    BadOverride { given: String, reason: String },
}

/// A parsed registry reference: a tag, a digest or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRef {
    /// e.g. `ghcr.io/openclaw/openclaw` or `127.0.0.1:5000/oc`.
    pub repo: String,
    /// The tag; `None` only when a digest names the image.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl PullRef {
    pub fn parse(reference: &str) -> Result<Self, RefError> {
        let reference = reference.trim();
        let invalid = |reason: String| RefError::Invalid {
            reference: reference.to_owned(),
            reason,
        };
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => (name, Some(check_digest(digest)?)),
            None => (reference, None),
        };
        let parsed = ImageRef::parse(name).map_err(|e| invalid(e.to_string()))?;
        let last = name.rsplit('/').next().unwrap_or(name);
        let tag = (last.contains(':') || digest.is_none()).then_some(parsed.tag);
        Ok(Self {
            repo: parsed.repo,
            tag,
            digest,
        })
    }

    /// The same repository at `--ref`: a digest (`sha256:…`) or a tag.
    pub fn with_override(&self, given: &str) -> Result<Self, RefError> {
        let given = given.trim();
        if given.starts_with(DIGEST_PREFIX) {
            return Ok(Self {
                repo: self.repo.clone(),
                tag: None,
                digest: Some(check_digest(given)?),
            });
        }
        let bad = |reason: String| RefError::BadOverride {
            given: given.to_owned(),
            reason,
        };
        if given.is_empty() || given.contains(['/', ':', '@']) {
            return Err(bad(
                "give only the tag or the digest, not a full name".into()
            ));
        }
        let parsed =
            ImageRef::parse(&format!("{}:{given}", self.repo)).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            repo: self.repo.clone(),
            tag: Some(parsed.tag),
            digest: None,
        })
    }

    /// `repo:tag`, what the registry is asked to resolve.
    pub fn tagged(&self) -> String {
        format!("{}:{}", self.repo, self.tag.as_deref().unwrap_or("latest"))
    }

    /// `repo@digest`: what is pulled, so the image is exactly the one resolved.
    pub fn at(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repo)
    }

    /// The registry's host as docker config files name it (`docker.io` when none is given).
    pub fn registry(&self) -> &str {
        match self.repo.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first
            }
            _ => "docker.io",
        }
    }

    /// What the operator wrote, for messages.
    pub fn display(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(tag), Some(d)) => format!("{}:{tag}@{d}", self.repo),
            (None, Some(d)) => self.at(d),
            (_, None) => self.tagged(),
        }
    }
}

/// Is `sha` a registry digest (`sha256:` and 64 hex digits)?
pub fn is_digest(sha: &str) -> bool {
    sha.strip_prefix(DIGEST_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()))
}

fn check_digest(digest: &str) -> Result<String, RefError> {
    let lower = digest.to_ascii_lowercase();
    if is_digest(&lower) {
        Ok(lower)
    } else {
        Err(RefError::BadDigest {
            digest: digest.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tags_digests_and_registries_are_read() {
        let r = PullRef::parse("ghcr.io/openclaw/openclaw:latest").unwrap();
        assert_eq!(r.repo, "ghcr.io/openclaw/openclaw");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.registry(), "ghcr.io");
        let r = PullRef::parse(&format!("127.0.0.1:5000/oc@{D}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, Some(D)));
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.display(), format!("127.0.0.1:5000/oc@{D}"));
        let r = PullRef::parse("openclaw/openclaw").unwrap();
        assert_eq!(
            (r.tagged().as_str(), r.registry()),
            ("openclaw/openclaw:latest", "docker.io")
        );
        assert!(PullRef::parse("localhost/x:1").unwrap().registry() == "localhost");
        for bad in ["", "Open:x", "oc@sha256:12", "oc@md5:00", "oc:-bad"] {
            assert!(PullRef::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_override_is_a_tag_or_a_digest_of_the_same_repository() {
        let base = PullRef::parse("reg.example:5000/oc:stable").unwrap();
        let t = base.with_override("2026.11.1").unwrap();
        assert_eq!(t.tagged(), "reg.example:5000/oc:2026.11.1");
        let d = base
            .with_override(&D.to_uppercase().replace("SHA256", "sha256"))
            .unwrap();
        assert_eq!(d.digest.as_deref(), Some(D));
        for bad in ["", "other/oc:1", "sha256:abc", "-x", "a b", "x@y"] {
            let e = base.with_override(bad);
            assert!(e.is_err(), "{bad:?} must be refused");
        }
        assert!(is_digest(D) && !is_digest("sha256:xyz"));
    }
}
