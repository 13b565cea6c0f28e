//! The kernel's own view of memory: `/proc/meminfo`, `/proc/pressure/memory` (PSI) and the
//! `oom_kill` counter of `/proc/vmstat`. Parsers take text so they can be tested with fixtures;
//! readers take a path so absent files (old kernels, PSI disabled) can be tested too.
//!
//! procfs files are generated in memory by the kernel: reading them synchronously never waits
//! on a disk, so it is fine on the async runtime and spawns no blocking thread.
use std::{io, path::Path};

pub const MEMINFO: &str = "/proc/meminfo";
pub const PRESSURE: &str = "/proc/pressure/memory";
pub const VMSTAT: &str = "/proc/vmstat";
pub const SELF_STATUS: &str = "/proc/self/status";

/// `MemAvailable` in bytes: what can be allocated without swapping, page cache included.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    kib_field(meminfo, "MemAvailable:")
}

/// `VmRSS` of a `/proc/<pid>/status` in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    kib_field(status, "VmRSS:")
}

/// A `Key:   1234 kB` line, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(value * 1024),
            Some(_) => None,
        }
    })
}

/// One line of a PSI file: the share of wall time (percent) in which some (or all) non-idle
/// tasks were stalled waiting for memory, averaged over 10 s, 60 s and 300 s.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time in microseconds since boot.
    pub total_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    pub some: PsiLine,
    /// Absent on kernels that only report `some` for the resource.
    pub full: Option<PsiLine>,
}

/// Parses `/proc/pressure/memory`:
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and the same for `full`.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let mut psi = PsiLine::default();
        let mut seen = 0;
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "avg10" => psi.avg10 = value.parse().ok()?,
                "avg60" => psi.avg60 = value.parse().ok()?,
                "avg300" => psi.avg300 = value.parse().ok()?,
                "total" => psi.total_us = value.parse().ok()?,
                _ => continue,
            }
            seen += 1;
        }
        if seen == 4 {
            *slot = Some(psi);
        }
    }
    Some(Pressure { some: some?, full })
}

/// The kernel's count of OOM kills since boot (`oom_kill`, Linux 4.13+).
pub fn parse_oom_kills(vmstat: &str) -> Option<u64> {
    vmstat.lines().find_map(|line| {
        let rest = line.strip_prefix("oom_kill ")?;
        rest.trim().parse().ok()
    })
}

/// Reads a procfs file; `Ok(None)` when it does not exist on this kernel.
pub fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        // PSI files exist but refuse reads (EOPNOTSUPP) when booted with psi=0.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// PSI for memory, `None` when the kernel does not provide it.
pub fn read_pressure(path: &Path) -> Option<Pressure> {
    read_optional(path)
        .ok()
        .flatten()
        .and_then(|t| parse_pressure(&t))
}

/// The OOM kill counter, `None` when the kernel does not provide it.
pub fn read_oom_kills(path: &Path) -> Option<u64> {
    read_optional(path)
        .ok()
        .flatten()
        .and_then(|t| parse_oom_kills(&t))
}

/// This process's resident set size.
pub fn agent_rss() -> Option<u64> {
    std::fs::read_to_string(SELF_STATUS)
        .ok()
        .and_then(|t| parse_vm_rss(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO_TEXT: &str = "MemTotal:        1004772 kB\nMemFree:           71236 kB\n\
        MemAvailable:     153600 kB\nBuffers:           10240 kB\n";

    #[test]
    fn meminfo_available_in_bytes() {
        assert_eq!(parse_mem_available(MEMINFO_TEXT), Some(153_600 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn vm_rss_in_bytes() {
        let status = "Name:\tclawops-agent\nVmPeak:\t  100 kB\nVmRSS:\t    6144 kB\n";
        assert_eq!(parse_vm_rss(status), Some(6144 * 1024));
    }

    #[test]
    fn pressure_some_and_full() {
        let text = "some avg10=12.50 avg60=3.25 avg300=0.80 total=123456\n\
                    full avg10=4.00 avg60=1.00 avg300=0.20 total=4567\n";
        let p = parse_pressure(text).unwrap();
        assert_eq!(p.some.avg10, 12.5);
        assert_eq!(p.some.avg60, 3.25);
        assert_eq!(p.some.total_us, 123_456);
        assert_eq!(p.full.unwrap().avg300, 0.2);
    }

    #[test]
    fn pressure_without_full_line() {
        let p = parse_pressure("some avg10=1.00 avg60=0.50 avg300=0.10 total=10\n").unwrap();
        assert!(p.full.is_none());
        assert_eq!(p.some.avg10, 1.0);
    }

    #[test]
    fn pressure_garbage_is_none() {
        assert!(parse_pressure("").is_none());
        assert!(parse_pressure("some avg10=x avg60=0 avg300=0 total=0\n").is_none());
    }

    #[test]
    fn absent_files_are_none_not_errors() {
        let missing = Path::new("/proc/pressure/definitely-not-here");
        assert!(read_pressure(missing).is_none());
        assert!(read_oom_kills(missing).is_none());
        assert!(read_optional(missing).unwrap().is_none());
    }

    #[test]
    fn oom_kill_counter() {
        assert_eq!(
            parse_oom_kills("pgfault 1\noom_kill 7\nnr_free_pages 2\n"),
            Some(7)
        );
        assert_eq!(parse_oom_kills("pgfault 1\n"), None);
    }
}
