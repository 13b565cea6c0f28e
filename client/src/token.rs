//! Fetching the agent's token over the same SSH connection the tunnel uses (`sudo -n cat
//! /etc/clawops/token` run by ssh or `gcloud compute ssh`), and storing it in a 0600 file.
use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    ClientError, Target,
    remote::{RemoteCommand, RemoteError},
};

pub const DEFAULT_REMOTE_TOKEN_PATH: &str = "/etc/clawops/token";
/// gcloud may first have to publish a key to the instance, which takes a while.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_TOKEN_LEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "--remote-path {0:?}: give an absolute path made of letters, digits, '.', '_', '-' and '/'"
    )]
    RemotePath(String),
    #[error(
        "{0} is a direct address: fetching the token needs an ssh:// or gcloud:// target \
         (or copy /etc/clawops/token from the VM yourself)"
    )]
    NotATunnel(String),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("reading {path} on {via} failed: {line}{hint}")]
    Read {
        via: String,
        path: String,
        line: String,
        hint: String,
    },
    #[error(
        "{path} on {via} does not hold a token (it is empty, has several words, or is not text); \
         check the agent's token_file there"
    )]
    NotAToken { via: String, path: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<TokenError> for ClientError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::RemotePath(_) | TokenError::NotATunnel(_) => {
                ClientError::Usage(e.to_string())
            }
            TokenError::Remote(e) => e.into(),
            TokenError::Read { .. } | TokenError::NotAToken { .. } | TokenError::Write { .. } => {
                ClientError::Failed(e.to_string())
            }
        }
    }
}

/// The remote command: fixed words and a path checked to need no quoting in any shell.
pub fn remote_command(remote_path: &str, sudo: bool) -> Result<String, TokenError> {
    let safe = remote_path.starts_with('/')
        && remote_path.len() <= 1024
        && remote_path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if !safe {
        return Err(TokenError::RemotePath(remote_path.to_owned()));
    }
    Ok(if sudo {
        format!("sudo -n cat {remote_path}")
    } else {
        format!("cat {remote_path}")
    })
}

/// Reads the token file on the target over ssh/gcloud and returns the token (trimmed).
pub async fn fetch(
    target: &Target,
    ssh_options: &[String],
    remote_path: &str,
    sudo: bool,
) -> Result<String, TokenError> {
    let via = target.to_string();
    let output = RemoteCommand {
        target,
        ssh_options,
        command: remote_command(remote_path, sudo)?,
        stdin: None,
        timeout: FETCH_TIMEOUT,
        what: "reading the token",
    }
    .run(&mut |_, _| {})
    .await?;
    if !output.success() {
        let line = output.last_error_line();
        let hint = remote_hint(&line, sudo, remote_path);
        return Err(TokenError::Read {
            via,
            path: remote_path.to_owned(),
            line,
            hint,
        });
    }
    let token = Some(output.stdout.join("\n").trim().to_owned()).filter(|t| {
        !t.is_empty() && t.len() <= MAX_TOKEN_LEN && t.chars().all(|c| c.is_ascii_graphic())
    });
    token.ok_or_else(|| TokenError::NotAToken {
        via,
        path: remote_path.to_owned(),
    })
}

fn remote_hint(line: &str, sudo: bool, path: &str) -> String {
    let hint = if line.contains("password is required") || line.contains("a terminal is required") {
        "the SSH user needs passwordless sudo there (or, if it can read the file itself, pass \
         --no-sudo)"
            .to_owned()
    } else if sudo && (line.contains("sudo: not found") || line.contains("sudo: command not found"))
    {
        "sudo is not installed there: pass --no-sudo and connect as a user that can read the file"
            .to_owned()
    } else if line.contains("No such file") {
        format!(
            "the agent is not installed there yet, or keeps its token elsewhere (--remote-path). \
             On GCE the startup script writes {DEFAULT_REMOTE_TOKEN_PATH} on the first boot: \
             `sudo journalctl -u google-startup-scripts.service` shows how far it got"
        )
    } else if line.contains("Permission denied") && !sudo {
        "the SSH user cannot read it: drop --no-sudo to read it with sudo".to_owned()
    } else {
        format!("check that {path} exists there and that the SSH user can read it")
    };
    format!(". {hint}")
}

/// Writes the token atomically (a 0600 temporary file in the same directory, fsync'd, renamed
/// over `path`). Missing parent directories are created 0700; `private_dir` also makes an
/// existing parent 0700 (for clawops' own tokens directory).
pub fn write_token_file(path: &Path, token: &str, private_dir: bool) -> Result<(), TokenError> {
    let write_err = |source| TokenError::Write {
        path: path.to_owned(),
        source,
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .map_err(write_err)?;
    if private_dir {
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700))
            .map_err(write_err)?;
    }
    // tempfile creates the file 0600 and never follows an existing name.
    let mut tmp = tempfile::Builder::new()
        .prefix(".clawops-token.")
        .tempfile_in(&parent)
        .map_err(write_err)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(write_err)?;
    tmp.write_all(format!("{token}\n").as_bytes())
        .map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    // The rename is durable once the directory is synced.
    if let Ok(dir) = std::fs::File::open(&parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_path_must_need_no_quoting() {
        assert_eq!(
            remote_command("/etc/clawops/token", true).unwrap(),
            "sudo -n cat /etc/clawops/token"
        );
        assert_eq!(
            remote_command("/x/t-1.tok", false).unwrap(),
            "cat /x/t-1.tok"
        );
        for bad in [
            "token",
            "/a b",
            "/a;rm -rf /",
            "/$(id)",
            "/a'b",
            "-x",
            "/a\nb",
            "",
        ] {
            assert!(remote_command(bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_0600_atomically_into_a_0700_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/tokens/prod");
        write_token_file(&path, "tok-1", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tok-1\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        write_token_file(&path, "tok-2", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tok-2\n");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["prod"], "no temporary file left behind");
    }
}
