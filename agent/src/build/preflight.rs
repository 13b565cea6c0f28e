//! Checks before a build: enough free disk in Docker's data root (a 20 GB disk fills up with
//! images and build cache; a build that runs out half-way leaves a mess), and enough available
//! memory (image builds on an e2-micro are known to be OOM-killed — a warning, not a refusal).
use std::path::{Path, PathBuf};

use super::tags::{self, ShaTag};
use crate::events::EventSink;

const MIB: u64 = 1024 * 1024;

/// Thresholds, from `[build]` in agent.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreflightLimits {
    /// Refuse to build with less free space than this in Docker's data root (0: no check).
    pub min_free_disk_mb: u64,
    /// Warn with less available memory than this (0: no check).
    pub min_available_memory_mb: u64,
}

impl Default for PreflightLimits {
    fn default() -> Self {
        let c = crate::config::BuildConfig::default();
        Self {
            min_free_disk_mb: c.min_free_disk_mb,
            min_available_memory_mb: c.min_available_memory_mb,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{}", low_disk_message(.path, *.free_bytes, *.required_bytes, .prunable))]
    LowDisk {
        path: PathBuf,
        free_bytes: u64,
        required_bytes: u64,
        /// Old clawops sha tags that no container uses, newest first.
        prunable: Vec<ShaTag>,
    },
}

/// What the checks found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreflightReport {
    pub data_root: Option<PathBuf>,
    pub free_disk_bytes: Option<u64>,
    pub available_memory_bytes: Option<u64>,
    pub warnings: Vec<String>,
}

/// Runs both checks; warnings go to `sink` as they are found.
pub async fn run(
    docker: &crate::docker::Engine,
    data_root: Option<&str>,
    limits: &PreflightLimits,
    image_repo: &str,
    project: &str,
    sink: &EventSink,
) -> Result<PreflightReport, PreflightError> {
    let mut report = PreflightReport {
        data_root: data_root.map(PathBuf::from),
        ..Default::default()
    };
    let warn = |report: &mut PreflightReport, message: String| {
        sink.warning(message.clone());
        report.warnings.push(message);
    };

    match data_root {
        Some(root) => match free_bytes(Path::new(root)) {
            Ok(free) => {
                report.free_disk_bytes = Some(free);
                let required = limits.min_free_disk_mb.saturating_mul(MIB);
                if free < required {
                    // Old tags are what the operator can drop right away; an error listing
                    // them beats a build that dies with "no space left on device".
                    let prunable = match tags::sha_tags(docker, image_repo, project).await {
                        Ok(all) => all
                            .into_iter()
                            .skip(1)
                            .filter(|t| t.used_by.is_empty())
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    return Err(PreflightError::LowDisk {
                        path: PathBuf::from(root),
                        free_bytes: free,
                        required_bytes: required,
                        prunable,
                    });
                }
            }
            Err(e) => warn(
                &mut report,
                format!("cannot check free disk space in Docker's data root {root}: {e}"),
            ),
        },
        None => warn(
            &mut report,
            "the engine did not report its data root (DockerRootDir); free disk space not checked"
                .into(),
        ),
    }

    if limits.min_available_memory_mb > 0 {
        match read_mem_available(Path::new("/proc/meminfo")) {
            Ok(available) => {
                report.available_memory_bytes = Some(available);
                if available < limits.min_available_memory_mb.saturating_mul(MIB) {
                    warn(
                        &mut report,
                        low_memory_message(available, limits.min_available_memory_mb),
                    );
                }
            }
            Err(e) => warn(
                &mut report,
                format!("cannot read available memory from /proc/meminfo: {e}"),
            ),
        }
    }
    Ok(report)
}

/// Bytes available to unprivileged users on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64, nix::Error> {
    let st = nix::sys::statvfs::statvfs(path)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// `MemAvailable` from a meminfo file, in bytes.
pub fn read_mem_available(path: &Path) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    parse_mem_available(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no MemAvailable line (kernel older than 3.14?)",
        )
    })
}

pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

pub fn mib(bytes: u64) -> String {
    if bytes >= 10 * 1024 * MIB {
        format!("{:.1} GiB", bytes as f64 / (1024 * MIB) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

fn low_memory_message(available: u64, threshold_mb: u64) -> String {
    format!(
        "only {} of memory available (threshold {threshold_mb} MiB, [build] min_available_memory_mb): \
         image builds on an e2-micro (1 GB) are known to be OOM-killed. Build in CI and push the \
         image instead, or resize the VM to e2-small (2 GB); `clawops memory` shows the exact \
         gcloud commands",
        mib(available)
    )
}

fn low_disk_message(path: &Path, free: u64, required: u64, prunable: &[ShaTag]) -> String {
    let mut msg = format!(
        "only {} free in {} (Docker's data root); a build needs at least {} ([build] min_free_disk_mb). ",
        mib(free),
        path.display(),
        mib(required)
    );
    if prunable.is_empty() {
        msg.push_str("There are no old clawops image tags to prune. ");
    } else {
        let total: u64 = prunable.iter().map(|t| t.size_bytes).sum();
        let names: Vec<&str> = prunable.iter().map(|t| t.tag.as_str()).collect();
        msg.push_str(&format!(
            "Pruning {} old clawops image tag(s) would free up to {} (less where layers are \
             shared with the images kept): `docker image rm {}`. ",
            prunable.len(),
            mib(total),
            names.join(" ")
        ));
    }
    msg.push_str(
        "The BuildKit cache can be large too: `docker builder prune`. \
         Then check with `df -h` and build again, or grow the disk.",
    );
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:        1004356 kB\nMemFree:           61232 kB\nMemAvailable:     412300 kB\n";
        assert_eq!(parse_mem_available(text), Some(412_300 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn real_proc_and_statvfs_answer() {
        assert!(read_mem_available(Path::new("/proc/meminfo")).unwrap() > 0);
        assert!(free_bytes(Path::new("/")).unwrap() > 0);
    }

    #[test]
    fn low_disk_message_says_what_to_prune() {
        let t = ShaTag {
            tag: "openclaw:0123456789ab".into(),
            git_sha: "0123456789ab".into(),
            image_id: "sha256:x".into(),
            created: chrono::DateTime::from_timestamp(1, 0).unwrap(),
            size_bytes: 300 * MIB,
            used_by: vec![],
        };
        let m = low_disk_message(Path::new("/var/lib/docker"), 100 * MIB, 2048 * MIB, &[t]);
        assert!(m.contains("100.0 MiB free in /var/lib/docker"), "{m}");
        assert!(m.contains("would free up to 300.0 MiB"), "{m}");
        assert!(m.contains("docker image rm openclaw:0123456789ab"), "{m}");
        let m = low_disk_message(Path::new("/d"), 1, 2, &[]);
        assert!(m.contains("no old clawops image tags"), "{m}");
    }
}
