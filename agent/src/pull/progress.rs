//! Folds the engine's per-layer pull status lines into one [`PullProgress`]: layers done of
//! layers known, bytes downloaded of bytes announced.
use std::collections::BTreeMap;

use crate::{docker::PullStatus, events::PullProgress};

#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    done: bool,
    current: u64,
    total: u64,
}

/// The pull so far.
#[derive(Debug, Default)]
pub struct Tally {
    reference: String,
    layers: BTreeMap<String, Layer>,
}

impl Tally {
    pub fn new(reference: &str) -> Self {
        Self {
            reference: reference.to_owned(),
            layers: BTreeMap::new(),
        }
    }

    /// Takes one status line; true when a layer finished (worth reporting at once).
    pub fn add(&mut self, s: &PullStatus) -> bool {
        let Some(id) = &s.id else {
            return false;
        };
        let status = s.status.as_str();
        let per_layer = matches!(
            status,
            "Pulling fs layer"
                | "Waiting"
                | "Downloading"
                | "Verifying Checksum"
                | "Download complete"
                | "Extracting"
                | "Pull complete"
                | "Already exists"
        );
        if !per_layer {
            return false;
        }
        let layer = self.layers.entry(id.clone()).or_default();
        match status {
            "Downloading" => {
                layer.current = s.current.unwrap_or(layer.current);
                layer.total = s.total.unwrap_or(layer.total);
            }
            "Download complete" | "Verifying Checksum" | "Extracting" => {
                layer.current = layer.total.max(layer.current);
            }
            "Pull complete" | "Already exists" => {
                layer.current = layer.total.max(layer.current);
                let finished = !layer.done;
                layer.done = true;
                return finished;
            }
            _ => {}
        }
        false
    }

    pub fn progress(&self) -> PullProgress {
        let count = |f: fn(&Layer) -> bool| self.layers.values().filter(|l| f(l)).count() as u32;
        PullProgress {
            reference: self.reference.clone(),
            layers_done: count(|l| l.done),
            layers_total: self.layers.len() as u32,
            bytes_done: self.layers.values().map(|l| l.current).sum(),
            bytes_total: self.layers.values().map(|l| l.total).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, status: &str, current: Option<u64>, total: Option<u64>) -> PullStatus {
        PullStatus {
            id: Some(id.into()),
            status: status.into(),
            current,
            total,
        }
    }

    #[test]
    fn layers_and_bytes_add_up() {
        let mut t = Tally::new("r@sha256:x");
        assert!(!t.add(&line("v2", "Pulling from r", None, None)));
        t.add(&line("a", "Pulling fs layer", None, None));
        t.add(&line("b", "Already exists", None, None));
        t.add(&line("a", "Downloading", Some(100), Some(1000)));
        let p = t.progress();
        assert_eq!(
            (p.layers_done, p.layers_total, p.bytes_done, p.bytes_total),
            (1, 2, 100, 1000)
        );
        t.add(&line("a", "Download complete", None, None));
        assert!(t.add(&line("a", "Pull complete", None, None)));
        assert!(!t.add(&line("a", "Pull complete", None, None)));
        let p = t.progress();
        assert_eq!(
            (p.layers_done, p.bytes_done, p.bytes_total),
            (2, 1000, 1000)
        );
        assert_eq!(p.reference, "r@sha256:x");
    }
}
