//! PATH lookup inside a container's filesystem without running anything in it: the archive API
//! stats paths (`HEAD /containers/{id}/archive`, the `X-Docker-Container-Path-Stat` header) and
//! hands out the first bytes of a file (`GET` gives a tar). This works on created and stopped
//! containers too, so a throwaway container that is never started shows what the image holds.
use futures::StreamExt;

use super::VerifyError;
use crate::docker::Engine;

/// Bytes of a file needed to tell an ELF's machine or a script's interpreter.
pub const HEAD_BYTES: usize = 256;
/// Tar headers (with PAX extensions) come before the data; this is more than they ever take.
const MAX_ARCHIVE_PREFIX: usize = 16 * 1024;

// Go's os.FileMode bits as the engine reports them.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_TYPE_MASK: u32 = GO_MODE_DIR
    | GO_MODE_SYMLINK
    | (1 << 26) // device
    | (1 << 25) // named pipe
    | (1 << 24) // socket
    | (1 << 21) // char device
    | (1 << 19); // irregular
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_STICKY: u32 = 1 << 20;

/// One path as the engine sees it (not following a final symlink).
#[derive(Debug, Clone, PartialEq)]
pub struct FileStat {
    pub size: u64,
    /// Go's FileMode, as reported.
    pub go_mode: u32,
    pub mtime: Option<String>,
    /// For a symlink: the target, fully resolved inside the container's root.
    pub link_target: String,
}

impl FileStat {
    pub fn is_symlink(&self) -> bool {
        self.go_mode & GO_MODE_SYMLINK != 0
    }

    pub fn is_dir(&self) -> bool {
        self.go_mode & GO_MODE_DIR != 0
    }

    pub fn is_regular(&self) -> bool {
        self.go_mode & GO_TYPE_MASK == 0
    }

    /// The mode as `stat(2)` would give it (type bits + permissions).
    pub fn unix_mode(&self) -> u32 {
        let m = self.go_mode;
        let mut mode = m & 0o777;
        if m & GO_MODE_SETUID != 0 {
            mode |= 0o4000;
        }
        if m & GO_MODE_SETGID != 0 {
            mode |= 0o2000;
        }
        if m & GO_MODE_STICKY != 0 {
            mode |= 0o1000;
        }
        if self.is_dir() {
            mode | 0o040000
        } else if self.is_symlink() {
            mode | 0o120000
        } else if self.is_regular() {
            mode | 0o100000
        } else {
            mode
        }
    }
}

/// The filesystem of one container, read through the engine.
#[derive(Clone, Copy)]
pub struct ContainerFs<'a> {
    pub docker: &'a Engine,
    pub container: &'a str,
}

impl ContainerFs<'_> {
    /// `None` when nothing is at `path`.
    pub async fn stat(&self, path: &str) -> Result<Option<FileStat>, VerifyError> {
        match self.docker.stat_path(self.container, path).await {
            Ok(s) => Ok(s.map(|s| FileStat {
                size: s.size,
                go_mode: s.mode,
                mtime: s.mtime,
                link_target: s.link_target,
            })),
            Err(source) => Err(VerifyError::Archive {
                path: path.to_owned(),
                container: short(self.container).to_owned(),
                source,
            }),
        }
    }

    /// The first `n` bytes of the regular file at `path` (fewer if it is shorter). Only the
    /// start of the archive is read; the rest of a large binary is never transferred whole.
    pub async fn head(&self, path: &str, n: usize) -> Result<Vec<u8>, VerifyError> {
        // Boxed so that it can be dropped early: that ends the transfer.
        let mut stream = Box::pin(self.docker.download(self.container, path));
        let mut buf = Vec::new();
        while buf.len() < MAX_ARCHIVE_PREFIX {
            match stream.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(source)) => {
                    return Err(VerifyError::Archive {
                        path: path.to_owned(),
                        container: short(self.container).to_owned(),
                        source,
                    });
                }
                None => break,
            }
        }
        drop(stream);
        Ok(first_entry_bytes(&buf, n))
    }
}

/// The start of the first file in a (possibly truncated) tar.
fn first_entry_bytes(tar_prefix: &[u8], n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut archive = tar::Archive::new(std::io::Cursor::new(tar_prefix));
    let Ok(mut entries) = archive.entries() else {
        return Vec::new();
    };
    let Some(Ok(entry)) = entries.next() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(n);
    // A truncated tar ends the read early; what arrived is what we have.
    let _ = entry.take(n as u64).read_to_end(&mut out);
    out
}

/// A candidate that PATH lookup found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// `<dir>/<name>` in the first PATH directory that has it.
    pub path: String,
    /// The file itself: `path`, or where its symlinks lead.
    pub target: String,
    pub size: u64,
    pub mode: u32,
    pub mtime: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(Found),
    /// Only files without an execute bit (or not regular files) have the name.
    NotExecutable(Found),
    /// `notes` explain near misses such as dangling symlinks.
    Missing {
        notes: Vec<String>,
    },
}

impl Lookup {
    pub fn found(&self) -> Option<&Found> {
        match self {
            Lookup::Found(f) => Some(f),
            _ => None,
        }
    }
}

/// Resolves `name` like execvp(3): the first executable regular file along `search_path`;
/// non-executable files are skipped but remembered.
pub async fn lookup(
    fs: ContainerFs<'_>,
    name: &str,
    search_path: &[String],
) -> Result<Lookup, VerifyError> {
    let candidates: Vec<String> = search_path.iter().map(|dir| join(dir, name)).collect();
    let stats = futures::future::join_all(candidates.iter().map(|c| fs.stat(c))).await;
    let mut not_executable = None;
    let mut notes = Vec::new();
    for (candidate, stat) in candidates.into_iter().zip(stats) {
        let Some(stat) = about_path(stat, &mut notes)? else {
            continue;
        };
        let (target, stat) = if stat.is_symlink() {
            let target = stat.link_target.clone();
            if target.is_empty() {
                notes.push(format!("{candidate} is a symlink that does not resolve"));
                continue;
            }
            match about_path(fs.stat(&target).await, &mut notes)? {
                Some(t) => (target, t),
                None => {
                    notes.push(format!(
                        "{candidate} is a symlink to {target}, which does not exist"
                    ));
                    continue;
                }
            }
        } else {
            (candidate.clone(), stat)
        };
        if stat.is_dir() {
            continue;
        }
        let found = Found {
            path: candidate,
            target,
            size: stat.size,
            mode: stat.unix_mode(),
            mtime: stat.mtime.clone(),
        };
        if !stat.is_regular() || stat.go_mode & 0o111 == 0 {
            not_executable.get_or_insert(found);
            continue;
        }
        return Ok(Lookup::Found(found));
    }
    Ok(match not_executable {
        Some(f) => Lookup::NotExecutable(f),
        None => Lookup::Missing { notes },
    })
}

/// The engine answers 500 for one path it cannot stat (a symlink loop, say): a note about that
/// candidate, not a failure of the whole check. Anything else (engine gone) is a failure.
pub(super) fn about_path(
    stat: Result<Option<FileStat>, VerifyError>,
    notes: &mut Vec<String>,
) -> Result<Option<FileStat>, VerifyError> {
    match stat {
        Err(VerifyError::Archive { path, source, .. })
            if source
                .status_code()
                .is_some_and(|code| code >= 500 || code == 400) =>
        {
            let why = match source.engine_message().map(str::trim) {
                Some(m) if !m.is_empty() => m.to_owned(),
                _ => format!(
                    "the engine answered {}; a symlink loop?",
                    source.status_code().unwrap_or_default()
                ),
            };
            notes.push(format!("cannot inspect {path}: {why}"));
            Ok(None)
        }
        other => other,
    }
}

/// `<dir>/<name>`, as PATH lookup builds it.
pub fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// What the first bytes of a file say about how it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Elf {
        machine: u16,
    },
    /// `#!interpreter [arg]`
    Script {
        interpreter: String,
        arg: Option<String>,
    },
    Other,
}

pub fn classify(head: &[u8]) -> Content {
    if head.len() >= 20 && head.starts_with(b"\x7fELF") {
        let field = [head[18], head[19]];
        let machine = match head[5] {
            2 => u16::from_be_bytes(field),
            _ => u16::from_le_bytes(field),
        };
        return Content::Elf { machine };
    }
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[..line_end]);
        let mut parts = line.trim().splitn(2, [' ', '\t']);
        let interpreter = parts.next().unwrap_or_default().to_owned();
        let arg = parts
            .next()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty());
        if !interpreter.is_empty() {
            return Content::Script { interpreter, arg };
        }
    }
    Content::Other
}

/// `Some(reason)` when an ELF for `machine` cannot run on an engine reporting `engine_arch`
/// (Go's names: amd64, arm64, …). Unknown engine architectures are given the benefit of doubt.
pub fn wrong_arch(machine: u16, engine_arch: &str) -> Option<String> {
    // 32-bit code of the same family usually runs (compat mode); everything else does not.
    let runs: &[u16] = match engine_arch {
        "amd64" | "x86_64" => &[62, 3],
        "arm64" | "aarch64" => &[183, 40],
        "386" => &[3],
        "arm" => &[40],
        "ppc64le" | "ppc64" => &[21],
        "s390x" => &[22],
        "riscv64" => &[243],
        "mips64" | "mips64le" | "mips" | "mipsle" => &[8],
        _ => return None,
    };
    (!runs.contains(&machine)).then(|| {
        format!(
            "wrong CPU architecture for this VM: {} binary, the VM is {engine_arch}",
            machine_name(machine)
        )
    })
}

pub fn machine_name(machine: u16) -> String {
    match machine {
        3 => "x86 (32-bit)".into(),
        8 => "MIPS".into(),
        20 => "PowerPC".into(),
        21 => "PowerPC64".into(),
        22 => "s390x".into(),
        40 => "ARM (32-bit)".into(),
        62 => "x86-64".into(),
        183 => "AArch64 (arm64)".into(),
        243 => "RISC-V".into(),
        other => format!("ELF machine {other:#x}"),
    }
}

pub use crate::docker::short_id as short;

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn elf_machine_and_arch() {
        assert_eq!(classify(&elf(183)), Content::Elf { machine: 183 });
        assert!(
            wrong_arch(183, "amd64")
                .unwrap()
                .contains("wrong CPU architecture")
        );
        assert_eq!(wrong_arch(62, "amd64"), None);
        assert_eq!(wrong_arch(3, "amd64"), None);
        assert!(wrong_arch(62, "arm64").is_some());
        assert_eq!(wrong_arch(62, "loong64"), None);
    }

    #[test]
    fn shebangs() {
        assert_eq!(
            classify(b"#!/usr/bin/env node\nconsole.log(1)"),
            Content::Script {
                interpreter: "/usr/bin/env".into(),
                arg: Some("node".into())
            }
        );
        assert_eq!(
            classify(b"#! /bin/sh\n"),
            Content::Script {
                interpreter: "/bin/sh".into(),
                arg: None
            }
        );
        assert_eq!(classify(b"hello"), Content::Other);
        assert_eq!(classify(b"#!\n"), Content::Other);
    }

    #[test]
    fn go_modes() {
        let file = FileStat {
            size: 1,
            go_mode: 0o755,
            mtime: None,
            link_target: String::new(),
        };
        assert!(file.is_regular());
        assert_eq!(file.unix_mode(), 0o100755);
        let link = FileStat {
            go_mode: 134218239,
            ..file.clone()
        };
        assert!(link.is_symlink());
        let dir = FileStat {
            go_mode: 2147484141,
            ..file
        };
        assert!(dir.is_dir());
        assert_eq!(dir.unix_mode(), 0o040755);
    }

    #[test]
    fn reads_first_bytes_of_a_truncated_tar() {
        let mut builder = tar::Builder::new(Vec::new());
        let data = vec![7u8; 100_000];
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        builder
            .append_data(&mut header, "gog", data.as_slice())
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let head = first_entry_bytes(&tar[..4096], HEAD_BYTES);
        assert_eq!(head, vec![7u8; HEAD_BYTES]);
    }
}
