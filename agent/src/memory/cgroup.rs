//! Container memory from cgroups, v1 and v2, computed like `docker stats` does: usage minus
//! the inactive page cache, which the kernel reclaims before it OOM-kills anything.
//!
//! Two sources feed the same computation:
//! - docker's stats API (`memory_stats.usage` + the `memory.stat` map), which works everywhere
//!   but makes dockerd 20.10 wait for its next one-second collection tick;
//! - the container's cgroup files read directly (found through `/proc/<pid>/cgroup`), which
//!   answers in microseconds. Used when the agent shares the host's cgroup namespace.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// v1's "no limit" is PAGE_COUNTER_MAX pages; anything this large means unlimited.
const UNLIMITED_FLOOR: u64 = 1 << 62;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("the memory cgroup of pid {pid} is not visible from the agent's cgroup namespace")]
    NotVisible { pid: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Memory of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupMemory {
    pub version: CgroupVersion,
    /// Usage without inactive page cache, as `docker stats` shows it.
    pub usage: u64,
    /// Raw cgroup usage, page cache included.
    pub raw_usage: u64,
    /// The cgroup's limit; `None` when unlimited.
    pub limit: Option<u64>,
}

/// docker CLI's `calculateMemUsageUnixNoCache`: v1 subtracts `total_inactive_file` (the
/// hierarchical counter), v2 `inactive_file`; never below zero.
pub fn usage_without_cache(usage: u64, stats: &HashMap<String, u64>) -> u64 {
    if let Some(&v) = stats.get("total_inactive_file")
        && v < usage
    {
        return usage - v;
    }
    match stats.get("inactive_file") {
        Some(&v) if v < usage => usage - v,
        _ => usage,
    }
}

/// Which cgroup version a `memory.stat` map comes from: only v1 has the `total_*` counters,
/// only v2 has `anon`/`file`.
pub fn version_of(stats: &HashMap<String, u64>) -> Option<CgroupVersion> {
    if stats.contains_key("total_inactive_file") || stats.contains_key("total_rss") {
        Some(CgroupVersion::V1)
    } else if stats.contains_key("anon") || stats.contains_key("file") {
        Some(CgroupVersion::V2)
    } else {
        None
    }
}

/// From the `memory_stats` of docker's stats API. `None` when the container is not running
/// (docker then returns an empty object).
pub fn from_docker_stats(
    usage: Option<u64>,
    limit: Option<u64>,
    stats: Option<&HashMap<String, u64>>,
) -> Option<CgroupMemory> {
    let raw_usage = usage?;
    let empty = HashMap::new();
    let stats = stats.unwrap_or(&empty);
    Some(CgroupMemory {
        version: version_of(stats).unwrap_or(CgroupVersion::V2),
        usage: usage_without_cache(raw_usage, stats),
        raw_usage,
        limit: limit.filter(|&l| l > 0 && l < UNLIMITED_FLOOR),
    })
}

/// `memory.stat`: one `key value` pair per line.
pub fn parse_memory_stat(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A limit file: v1 `memory.limit_in_bytes` (a number) or v2 `memory.max` (`max` or a number).
pub fn parse_limit(text: &str) -> Option<Option<u64>> {
    let t = text.trim();
    if t == "max" {
        return Some(None);
    }
    let v: u64 = t.parse().ok()?;
    Some((v < UNLIMITED_FLOOR).then_some(v))
}

/// Where this process sees the cgroup hierarchies mounted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupMounts {
    /// The v1 hierarchy with the memory controller.
    pub v1_memory: Option<PathBuf>,
    /// The unified (v2) hierarchy; on hybrid hosts it has no memory controller.
    pub v2: Option<PathBuf>,
}

impl CgroupMounts {
    /// Reads `/proc/self/mountinfo`; empty (so callers fall back to docker stats) if unreadable.
    pub fn detect() -> Self {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| Self::parse_mountinfo(&t))
            .unwrap_or_default()
    }

    /// `36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory`
    pub fn parse_mountinfo(text: &str) -> Self {
        let mut mounts = Self::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(mount_point), Some(fstype)) =
                (left.get(3), left.get(4), right.first())
            else {
                continue;
            };
            // A mount of a sub-tree (inside a container) would need path translation.
            if *root != "/" {
                continue;
            }
            let point = PathBuf::from(unescape_mount(mount_point));
            match *fstype {
                "cgroup2" if mounts.v2.is_none() => mounts.v2 = Some(point),
                "cgroup" if mounts.v1_memory.is_none() => {
                    let options = right.get(2).copied().unwrap_or_default();
                    if options.split(',').any(|o| o == "memory") {
                        mounts.v1_memory = Some(point);
                    }
                }
                _ => {}
            }
        }
        mounts
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The memory cgroup named in a `/proc/<pid>/cgroup`: the v1 `memory` controller line if there
/// is one, else the v2 `0::` line.
pub fn memory_cgroup_of(proc_cgroup: &str) -> Option<(CgroupVersion, String)> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some((CgroupVersion::V1, path.to_owned()));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some((CgroupVersion::V2, path.to_owned()));
        }
    }
    v2
}

/// Reads the memory of the cgroup that process `pid` (a container's init) belongs to.
pub fn read_for_pid(mounts: &CgroupMounts, pid: i64) -> Result<CgroupMemory, CgroupError> {
    let proc_path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = read(&proc_path)?;
    let (version, rel) = memory_cgroup_of(&text).ok_or(CgroupError::NotVisible { pid })?;
    // "/.." prefixes mean the cgroup lies outside our namespace.
    if rel.split('/').any(|c| c == "..") {
        return Err(CgroupError::NotVisible { pid });
    }
    let base = match version {
        CgroupVersion::V1 => mounts.v1_memory.as_deref(),
        CgroupVersion::V2 => mounts.v2.as_deref(),
    }
    .ok_or(CgroupError::NotVisible { pid })?;
    read_dir(version, &base.join(rel.trim_start_matches('/')))
}

/// Reads a memory cgroup directory of the given version.
pub fn read_dir(version: CgroupVersion, dir: &Path) -> Result<CgroupMemory, CgroupError> {
    let (usage_file, limit_file) = match version {
        CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
        CgroupVersion::V2 => ("memory.current", "memory.max"),
    };
    let number = |name: &str| -> Result<u64, CgroupError> {
        let path = dir.join(name);
        let text = read(&path)?;
        text.trim().parse().map_err(|_| CgroupError::Parse {
            path,
            content: text.trim().to_owned(),
        })
    };
    let raw_usage = number(usage_file)?;
    let stats = parse_memory_stat(&read(&dir.join("memory.stat"))?);
    let limit_path = dir.join(limit_file);
    let limit_text = read(&limit_path)?;
    let limit = parse_limit(&limit_text).ok_or_else(|| CgroupError::Parse {
        path: limit_path,
        content: limit_text.trim().to_owned(),
    })?;
    Ok(CgroupMemory {
        version,
        usage: usage_without_cache(raw_usage, &stats),
        raw_usage,
        limit,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn v1_subtracts_total_inactive_file() {
        let stats = map(&[("inactive_file", 10), ("total_inactive_file", 100)]);
        assert_eq!(usage_without_cache(1000, &stats), 900);
        assert_eq!(version_of(&stats), Some(CgroupVersion::V1));
        assert_eq!(version_of(&map(&[("pgfault", 1)])), None);
    }

    #[test]
    fn v2_subtracts_inactive_file() {
        let stats = map(&[("anon", 500), ("inactive_file", 300)]);
        assert_eq!(usage_without_cache(1000, &stats), 700);
        assert_eq!(version_of(&stats), Some(CgroupVersion::V2));
    }

    #[test]
    fn never_below_zero() {
        assert_eq!(
            usage_without_cache(100, &map(&[("total_inactive_file", 500)])),
            100
        );
        assert_eq!(
            usage_without_cache(100, &map(&[("inactive_file", 100)])),
            100
        );
        assert_eq!(usage_without_cache(100, &HashMap::new()), 100);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), Some(None));
        assert_eq!(parse_limit("33554432\n"), Some(Some(33_554_432)));
        assert_eq!(parse_limit("9223372036854771712\n"), Some(None));
        assert_eq!(parse_limit("lots"), None);
    }

    #[test]
    fn proc_cgroup_lines() {
        let hybrid = "9:name=systemd:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n";
        assert_eq!(
            memory_cgroup_of(hybrid),
            Some((CgroupVersion::V1, "/docker/abc".into()))
        );
        let unified = "0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            memory_cgroup_of(unified),
            Some((CgroupVersion::V2, "/system.slice/docker-abc.scope".into()))
        );
        assert_eq!(memory_cgroup_of("4:cpu:/x\n"), None);
    }

    #[test]
    fn mountinfo_hybrid_and_unified() {
        let hybrid = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
";
        let m = CgroupMounts::parse_mountinfo(hybrid);
        assert_eq!(m.v1_memory, Some(PathBuf::from("/sys/fs/cgroup/memory")));
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let m = CgroupMounts::parse_mountinfo(unified);
        assert_eq!(m.v1_memory, None);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup")));
        // A container's view of its own sub-tree is skipped.
        let nested = "29 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            CgroupMounts::parse_mountinfo(nested),
            CgroupMounts::default()
        );
    }

    #[test]
    fn read_dir_from_fixture_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "1000000\n").unwrap();
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        std::fs::write(
            dir.path().join("memory.stat"),
            "anon 600000\nfile 400000\ninactive_file 250000\n",
        )
        .unwrap();
        let m = read_dir(CgroupVersion::V2, dir.path()).unwrap();
        assert_eq!(m.usage, 750_000);
        assert_eq!(m.limit, None);
        let err = read_dir(CgroupVersion::V1, dir.path()).unwrap_err();
        assert!(err.to_string().contains("memory.usage_in_bytes"), "{err}");
    }
}
