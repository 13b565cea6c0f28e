//! What verify remembers between calls.
//! - Image sides: an image id names immutable content, so what PATH lookup finds in an image
//!   never changes. Remembering it per (image id, PATH, name) means only the first verify after
//!   a build pays for the throwaway container (each of its archive calls mounts the image's
//!   filesystem on its own, about 25 ms on fuse-overlayfs).
//! - Probe results: each `--version` is a Docker exec (60–130 ms on a small VM, and the engine
//!   runs them one after another). Within one run of one container (id and start time), the
//!   same argv on a file with the same path, size, mode and mtime runs the same, so a probe
//!   that succeeded is reused for [`PROBE_REUSE`]; a failed one is always run again, and
//!   `--fresh` runs them all. The container's lookups are always done afresh.
use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{
    probe::{ProbeOutcome, ProbeVerdict},
    report::ImageSide,
    resolve::Found,
};

/// How long a successful probe stands for the same file in the same container run. Long enough
/// for the checks an operator runs back to back, short enough that a library removed at runtime
/// is noticed soon; a recreate or restart starts over at once.
pub const PROBE_REUSE: Duration = Duration::from_secs(300);

/// Names × images kept; a few KiB at most.
const CAPACITY: usize = 1024;

type Key = (String, String, String);

#[derive(Debug, Default)]
pub struct VerifyCache {
    inner: Mutex<Inner>,
    probes: Mutex<HashMap<ProbeKey, (ProbeOutcome, Instant)>>,
}

/// The container run and the file a probe ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeKey {
    pub container_id: String,
    pub started_at: String,
    pub argv: Vec<String>,
    pub path: String,
    pub target: String,
    pub size: u64,
    pub mode: u32,
    pub mtime: Option<String>,
}

impl ProbeKey {
    pub fn new(container_id: &str, started_at: &str, argv: &[String], file: &Found) -> Self {
        Self {
            container_id: container_id.to_owned(),
            started_at: started_at.to_owned(),
            argv: argv.to_vec(),
            path: file.path.clone(),
            target: file.target.clone(),
            size: file.size,
            mode: file.mode,
            mtime: file.mtime.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    sides: HashMap<Key, ImageSide>,
    order: VecDeque<Key>,
    engine_arch: Option<String>,
}

fn key(image_id: &str, search_path: &[String], name: &str) -> Key {
    (image_id.to_owned(), search_path.join(":"), name.to_owned())
}

impl VerifyCache {
    pub fn image_side(
        &self,
        image_id: &str,
        search_path: &[String],
        name: &str,
    ) -> Option<ImageSide> {
        if image_id.is_empty() {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.sides.get(&key(image_id, search_path, name)).cloned()
    }

    pub fn put_image_side(
        &self,
        image_id: &str,
        search_path: &[String],
        name: &str,
        side: &ImageSide,
    ) {
        if image_id.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let k = key(image_id, search_path, name);
        if inner.sides.insert(k.clone(), side.clone()).is_none() {
            inner.order.push_back(k);
        }
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.sides.remove(&old);
            }
        }
    }

    /// The engine's CPU architecture; it does not change while the agent runs.
    pub fn engine_arch(&self) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.engine_arch.clone()
    }

    pub fn set_engine_arch(&self, arch: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.engine_arch = Some(arch.to_owned());
    }

    /// Image sides remembered.
    pub fn image_sides(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.sides.len()
    }

    /// Whether this container run has a recent probe of `argv` on record, for some file: only
    /// then is it worth looking the name up before deciding to probe.
    pub fn may_reuse_probe(&self, container_id: &str, started_at: &str, argv: &[String]) -> bool {
        let probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.iter().any(|(k, (_, at))| {
            k.container_id == container_id
                && k.started_at == started_at
                && k.argv == argv
                && at.elapsed() < PROBE_REUSE
        })
    }

    /// A successful probe of the same file in the same container run, and how old it is.
    pub fn probe(&self, key: &ProbeKey) -> Option<(ProbeOutcome, Duration)> {
        if key.started_at.is_empty() {
            return None;
        }
        let probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let (outcome, at) = probes.get(key)?;
        let age = at.elapsed();
        (age < PROBE_REUSE).then(|| (outcome.clone(), age))
    }

    /// Remembers a probe that ran; failures are not kept, they are worth running again.
    pub fn put_probe(&self, key: ProbeKey, outcome: &ProbeOutcome) {
        if key.started_at.is_empty() || outcome.verdict != ProbeVerdict::Ran {
            return;
        }
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.retain(|_, (_, at)| at.elapsed() < PROBE_REUSE);
        if probes.len() >= CAPACITY {
            let oldest = probes
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                probes.remove(&k);
            }
        }
        probes.insert(key, (outcome.clone(), Instant::now()));
    }

    /// Probe results remembered.
    pub fn probes(&self) -> usize {
        self.probes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::resolve::Lookup;

    #[test]
    fn bounded_and_keyed_by_image_path_and_name() {
        let cache = VerifyCache::default();
        let side = ImageSide {
            lookup: Lookup::Missing { notes: vec![] },
            content: None,
            problem: None,
        };
        let path = vec!["/bin".to_string()];
        cache.put_image_side("sha256:a", &path, "gog", &side);
        assert!(cache.image_side("sha256:a", &path, "gog").is_some());
        assert!(cache.image_side("sha256:b", &path, "gog").is_none());
        assert!(
            cache
                .image_side("sha256:a", &["/usr/bin".to_string()], "gog")
                .is_none()
        );
        assert!(cache.image_side("", &path, "gog").is_none());
        for i in 0..CAPACITY + 10 {
            cache.put_image_side("sha256:c", &path, &format!("n{i}"), &side);
        }
        assert_eq!(cache.image_sides(), CAPACITY);
        assert!(
            cache.image_side("sha256:a", &path, "gog").is_none(),
            "oldest evicted"
        );
    }

    fn ran(version: &str) -> ProbeOutcome {
        ProbeOutcome {
            verdict: ProbeVerdict::Ran,
            version: Some(version.into()),
            detail: None,
        }
    }

    fn file(size: u64, mtime: &str) -> Found {
        Found {
            path: "/usr/local/bin/gog".into(),
            target: "/usr/local/bin/gog".into(),
            size,
            mode: 0o755,
            mtime: Some(mtime.into()),
        }
    }

    #[test]
    fn probes_are_reused_only_for_the_same_file_in_the_same_container_run() {
        let cache = VerifyCache::default();
        let argv = vec!["gog".to_string(), "--version".to_string()];
        let key = |ctr: &str, started: &str, f: &Found| ProbeKey::new(ctr, started, &argv, f);
        let f = file(10, "t1");
        assert!(!cache.may_reuse_probe("c1", "s1", &argv));
        cache.put_probe(key("c1", "s1", &f), &ran("gog 1"));
        assert!(cache.may_reuse_probe("c1", "s1", &argv));
        let (outcome, age) = cache.probe(&key("c1", "s1", &f)).unwrap();
        assert_eq!(outcome.version.as_deref(), Some("gog 1"));
        assert!(age < PROBE_REUSE);

        // Restarted, recreated, rebuilt file, other argv: run again.
        assert!(cache.probe(&key("c1", "s2", &f)).is_none());
        assert!(cache.probe(&key("c2", "s1", &f)).is_none());
        assert!(cache.probe(&key("c1", "s1", &file(11, "t1"))).is_none());
        assert!(cache.probe(&key("c1", "s1", &file(10, "t2"))).is_none());
        let other = vec!["gog".to_string(), "version".to_string()];
        assert!(
            cache
                .probe(&ProbeKey::new("c1", "s1", &other, &f))
                .is_none()
        );
        assert!(!cache.may_reuse_probe("c1", "s1", &other));

        // Failures and unknown start times are never kept.
        let broken = ProbeOutcome {
            verdict: ProbeVerdict::Broken,
            version: None,
            detail: Some("libfoo.so: cannot open".into()),
        };
        cache.put_probe(key("c3", "s1", &f), &broken);
        assert!(cache.probe(&key("c3", "s1", &f)).is_none());
        cache.put_probe(key("c4", "", &f), &ran("gog 1"));
        assert!(cache.probe(&key("c4", "", &f)).is_none());
        assert_eq!(cache.probes(), 1);

        for i in 0..CAPACITY + 5 {
            cache.put_probe(key(&format!("n{i}"), "s", &f), &ran("x"));
        }
        assert_eq!(cache.probes(), CAPACITY, "bounded");
        assert!(
            cache.probe(&key("c1", "s1", &f)).is_none(),
            "oldest evicted"
        );
    }
}
