//! The agent binary `install` puts on the VM: where it comes from, and the checks made here
//! before anything is sent (a Linux ELF for the VM's architecture, a plausible size).
use std::{
    fmt,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::InstallError;

/// Where the release workflow publishes the agent, by version and architecture.
const RELEASES: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/releases/download");
/// An agent binary larger than this is not what we build (the release agent is a few MiB).
const MAX_AGENT_BYTES: u64 = 512 << 20;

/// Why a file is not an agent binary for a 64-bit Linux.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("it is not a Linux executable (no ELF header)")]
    NotElf,
    #[error("it is not a 64-bit little-endian ELF executable")]
    NotLittleEndian64,
    #[error("it is an ELF executable for machine type {0}, not x86_64 or aarch64")]
    Machine(u16),
}

/// The CPU architectures the agent is built for, named as `uname -m` and the releases name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn from_uname(machine: &str) -> Option<Self> {
        match machine {
            "x86_64" | "amd64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The architecture of a 64-bit little-endian Linux ELF executable.
    pub fn of_elf(header: &[u8]) -> Result<Self, ElfError> {
        if header.len() < 20 || &header[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        if header[4] != 2 || header[5] != 1 {
            return Err(ElfError::NotLittleEndian64);
        }
        match u16::from_le_bytes([header[18], header[19]]) {
            62 => Ok(Arch::X86_64),
            183 => Ok(Arch::Aarch64),
            other => Err(ElfError::Machine(other)),
        }
    }

    /// The release asset of the agent for this architecture.
    pub fn asset(self) -> String {
        format!("clawops-agent-{self}-linux")
    }

    /// The sha256 of this version's released agent, when the release build embedded it.
    fn released_sha256(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => option_env!("CLAWOPS_AGENT_SHA256_X86_64_LINUX"),
            Arch::Aarch64 => option_env!("CLAWOPS_AGENT_SHA256_AARCH64_LINUX"),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        })
    }
}

/// An agent binary here, read and checked before anything is sent.
#[derive(Debug)]
pub struct LocalAgent {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub arch: Arch,
}

impl LocalAgent {
    pub fn load(path: &Path) -> Result<Self, InstallError> {
        let usage =
            |m: String| InstallError::Usage(format!("agent binary {}: {m}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| usage(e.to_string()))?;
        if !meta.is_file() || meta.len() > MAX_AGENT_BYTES {
            return Err(usage("not a regular file of a plausible size".into()));
        }
        let bytes = std::fs::read(path).map_err(|e| usage(e.to_string()))?;
        let arch = Arch::of_elf(&bytes).map_err(|m| {
            usage(format!(
                "{m}; pass the clawops-agent built for Linux (`cargo build --release -p \
                 clawops-agent` on Linux, or the release's clawops-agent-ARCH-linux)"
            ))
        })?;
        let sha256 = hex(&Sha256::digest(&bytes));
        Ok(Self {
            path: path.to_owned(),
            bytes,
            sha256,
            arch,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the agent comes from.
#[derive(Debug)]
pub enum AgentSource {
    /// A binary here (`--agent-bin`, or `clawops-agent` beside this executable).
    Local(LocalAgent),
    /// Downloaded by the VM itself and checked against `sha256` there.
    Url { url: String, sha256: String },
    /// This version's release asset for the VM's architecture.
    Release,
}

impl AgentSource {
    /// `--agent-bin`, `--agent-url` + `--agent-sha256`, else `clawops-agent` beside this
    /// executable, else the release of this version.
    pub fn choose(
        agent_bin: Option<&Path>,
        agent_url: Option<String>,
        agent_sha256: Option<String>,
    ) -> Result<Self, InstallError> {
        match (agent_bin, agent_url, agent_sha256) {
            (Some(path), None, None) => Ok(AgentSource::Local(LocalAgent::load(path)?)),
            (None, Some(url), Some(sha256)) => Ok(AgentSource::Url { url, sha256 }),
            (None, None, None) => Ok(beside_this_executable()
                .map(|p| LocalAgent::load(&p))
                .transpose()?
                .map_or(AgentSource::Release, AgentSource::Local)),
            _ => Err(InstallError::Usage(
                "give --agent-bin PATH, or --agent-url URL with --agent-sha256 SHA256, or neither \
                 (then clawops-agent beside clawops, else this version's release)"
                    .into(),
            )),
        }
    }

    /// The URL and sha256 to pass to the VM, for the sources the VM downloads.
    pub(super) fn download_for(
        &self,
        arch: Arch,
    ) -> Result<Option<(String, String)>, InstallError> {
        match self {
            AgentSource::Local(_) => Ok(None),
            AgentSource::Url { url, sha256 } => Ok(Some((url.clone(), sha256.clone()))),
            AgentSource::Release => {
                let version = env!("CARGO_PKG_VERSION");
                let sha256 = arch.released_sha256().ok_or_else(|| {
                    InstallError::Usage(format!(
                        "this clawops {version} was not built by the release workflow, so it \
                         knows no checksum of a released agent: pass --agent-bin PATH (a Linux \
                         {arch} build: `cargo build --release -p clawops-agent`), or --agent-url \
                         URL --agent-sha256 SHA256"
                    ))
                })?;
                Ok(Some((
                    format!("{RELEASES}/v{version}/{}", arch.asset()),
                    sha256.to_owned(),
                )))
            }
        }
    }
}

fn beside_this_executable() -> Option<PathBuf> {
    let path = std::env::current_exe()
        .ok()?
        .with_file_name("clawops-agent");
    path.is_file().then_some(path)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn elf(machine: u16) -> Vec<u8> {
        let mut h = b"\x7fELF\x02\x01\x01".to_vec();
        h.resize(18, 0);
        h.extend(machine.to_le_bytes());
        h.resize(64, 0);
        h
    }

    #[test]
    fn elf_architectures() {
        assert_eq!(Arch::of_elf(&elf(62)), Ok(Arch::X86_64));
        assert_eq!(Arch::of_elf(&elf(183)), Ok(Arch::Aarch64));
        assert_eq!(Arch::of_elf(&elf(40)), Err(ElfError::Machine(40)));
        assert_eq!(Arch::of_elf(b"#!/bin/sh\necho hi\n"), Err(ElfError::NotElf));
        // Mach-O (a macOS build of the agent) is refused the same way.
        assert!(
            Arch::of_elf(&[
                0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0
            ])
            .is_err()
        );
        let mut be = elf(62);
        be[5] = 2;
        assert_eq!(Arch::of_elf(&be), Err(ElfError::NotLittleEndian64));
        assert_eq!(Arch::from_uname("arm64"), Some(Arch::Aarch64));
        assert_eq!(Arch::from_uname("riscv64"), None);
    }
}
