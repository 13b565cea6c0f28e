//! An image id names immutable content, so what PATH lookup finds in an image never changes.
//! Remembering it per (image id, PATH, name) means only the first verify after a build pays
//! for the throwaway container (each of its archive calls mounts the image's filesystem on its
//! own, about 25 ms on fuse-overlayfs). The running container is always checked afresh.
use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use super::report::ImageSide;

/// Names × images kept; a few KiB at most.
const CAPACITY: usize = 1024;

type Key = (String, String, String);

#[derive(Debug, Default)]
pub struct ImageCache {
    inner: Mutex<Inner>,
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

impl ImageCache {
    pub fn get(&self, image_id: &str, search_path: &[String], name: &str) -> Option<ImageSide> {
        if image_id.is_empty() {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.sides.get(&key(image_id, search_path, name)).cloned()
    }

    pub fn put(&self, image_id: &str, search_path: &[String], name: &str, side: &ImageSide) {
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

    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.sides.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::resolve::Lookup;

    #[test]
    fn bounded_and_keyed_by_image_path_and_name() {
        let cache = ImageCache::default();
        let side = ImageSide {
            lookup: Lookup::Missing { notes: vec![] },
            content: None,
            problem: None,
        };
        let path = vec!["/bin".to_string()];
        cache.put("sha256:a", &path, "gog", &side);
        assert!(cache.get("sha256:a", &path, "gog").is_some());
        assert!(cache.get("sha256:b", &path, "gog").is_none());
        assert!(
            cache
                .get("sha256:a", &["/usr/bin".to_string()], "gog")
                .is_none()
        );
        assert!(cache.get("", &path, "gog").is_none());
        for i in 0..CAPACITY + 10 {
            cache.put("sha256:c", &path, &format!("n{i}"), &side);
        }
        assert_eq!(cache.len(), CAPACITY);
        assert!(
            cache.get("sha256:a", &path, "gog").is_none(),
            "oldest evicted"
        );
    }
}
