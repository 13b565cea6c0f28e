//! Reading files whose contents and type the agent does not control: anything in the checkout
//! or the owner's home (compose files, `.env`, `env_file`, SKILL.md, Dockerfile…). A file there
//! can be a symlink to `/dev/zero`, a FIFO nobody writes to, or gigabytes long; a plain
//! `fs::read` would then hang the RPC or exhaust the VM's memory.
use std::{
    io::Read,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// A generous cap for text the agent parses (compose files, env files, Dockerfiles).
pub const MAX_TEXT_FILE: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UntrustedReadError {
    #[error("{}: does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: is a symbolic link; clawops reads only regular files here", path.display())]
    Symlink { path: PathBuf },
    #[error("{}: is not a regular file (a device, FIFO, socket or directory)", path.display())]
    NotRegular { path: PathBuf },
    #[error("{}: larger than the {max} bytes clawops reads from such a file", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads at most `max` bytes of the regular file at `path`. The last component must not be a
/// symlink (O_NOFOLLOW) and opening must not block (O_NONBLOCK: a FIFO would wait for a
/// writer); the type is checked on the opened descriptor so it cannot be swapped in between.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, UntrustedReadError> {
    let io = |source: std::io::Error| UntrustedReadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => UntrustedReadError::Symlink {
                path: path.to_owned(),
            },
            _ if e.kind() == std::io::ErrorKind::NotFound => UntrustedReadError::NotFound {
                path: path.to_owned(),
            },
            _ => io(e),
        })?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(UntrustedReadError::NotRegular {
            path: path.to_owned(),
        });
    }
    let too_large = || UntrustedReadError::TooLarge {
        path: path.to_owned(),
        max,
    };
    if meta.len() > max {
        return Err(too_large());
    }
    // The file may grow after fstat: read one byte past the cap to notice.
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > max {
        return Err(too_large());
    }
    Ok(buf)
}

/// [`read_bounded`] for UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> Result<String, UntrustedReadError> {
    String::from_utf8(read_bounded(path, max)?).map_err(|_| UntrustedReadError::NotUtf8 {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_only_and_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_bounded(&f, 5).unwrap(), b"hello");
        assert!(matches!(
            read_bounded(&f, 4),
            Err(UntrustedReadError::TooLarge { .. })
        ));
        let link = tmp.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            read_bounded(&link, 100),
            Err(UntrustedReadError::Symlink { .. })
        ));
        assert!(matches!(
            read_bounded(Path::new("/dev/zero"), 100),
            Err(UntrustedReadError::NotRegular { .. })
        ));
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            read_bounded(&fifo, 100),
            Err(UntrustedReadError::NotRegular { .. })
        ));
        assert!(matches!(
            read_bounded(tmp.path(), 100),
            Err(UntrustedReadError::NotRegular { .. })
        ));
        assert!(matches!(
            read_bounded(&tmp.path().join("nope"), 100),
            Err(UntrustedReadError::NotFound { .. })
        ));
    }
}
