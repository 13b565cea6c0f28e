//! Bearer-token authentication for every gRPC call, and loading the token safely. A token
//! loaded from a file follows the file: a rotated token takes effect without a restart and
//! the old one is refused from then on.
use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "cannot read the token file {path}: {source}. Create it with \
         `install -m 600 /dev/null {path} && openssl rand -hex 32 > {path}`"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the token file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: String, mode: u32 },
    #[error(
        "the token file {path} is empty or shorter than 16 characters; put a long random token in it"
    )]
    TooShort { path: String },
}

/// How often the token file is looked at (one stat) when requests arrive.
const RECHECK: Duration = Duration::from_secs(1);

/// The shared secret, compared in constant time.
#[derive(Clone)]
pub struct Token(Arc<Inner>);

struct Inner {
    /// The file it came from, re-read when it changes.
    path: Option<PathBuf>,
    state: Mutex<State>,
}

struct State {
    secret: Arc<[u8]>,
    checked: Instant,
    stamp: Option<Stamp>,
}

/// What changes when the file is rewritten in place or replaced by a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl Token {
    pub fn new(secret: &str) -> Self {
        Self::with(secret.trim().as_bytes().into(), None, None)
    }

    fn with(secret: Arc<[u8]>, path: Option<PathBuf>, stamp: Option<Stamp>) -> Self {
        Self(Arc::new(Inner {
            path,
            state: Mutex::new(State {
                secret,
                checked: Instant::now(),
                stamp,
            }),
        }))
    }

    /// Reads the token file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let (secret, stamp) = read_file(path)?;
        Ok(Self::with(secret, Some(path.to_owned()), Some(stamp)))
    }

    /// Checks an `authorization` header value of the form `Bearer <token>`.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        // ct_eq on slices of different lengths returns false at once; that reveals only the
        // length, which a 0600 file of random hex does not make secret.
        bool::from(self.current().ct_eq(presented.trim().as_bytes()))
    }

    /// The secret, re-read first when the file changed (looked at most once per RECHECK).
    fn current(&self) -> Arc<[u8]> {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = &self.0.path else {
            return state.secret.clone();
        };
        if state.checked.elapsed() < RECHECK {
            return state.secret.clone();
        }
        state.checked = Instant::now();
        let changed = std::fs::metadata(path).map(|m| Some(Stamp::of(&m)) != state.stamp);
        if matches!(changed, Ok(true)) {
            match read_file(path) {
                Ok((secret, stamp)) => {
                    state.secret = secret;
                    state.stamp = Some(stamp);
                    tracing::info!(path = %path.display(), "the token file changed: using the new token");
                }
                // Mid-rewrite, or made unusable: keep the last good token, look again later.
                Err(e) => tracing::warn!(error = %e, "the token file changed but cannot be used"),
            }
        }
        state.secret.clone()
    }
}

fn read_file(path: &Path) -> Result<(Arc<[u8]>, Stamp), AuthError> {
    let shown = path.display().to_string();
    let read_err = |source| AuthError::Read {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AuthError::TooOpen { path: shown, mode });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let secret: Arc<[u8]> = text.trim().as_bytes().into();
    if secret.len() < 16 {
        return Err(AuthError::TooShort { path: shown });
    }
    Ok((secret, Stamp::of(&meta)))
}

/// The interceptor applied to every service on the port (agent, health, reflection).
///
/// Reflection is authenticated too: the schema is public, but one rule for the whole port
/// ("nothing answers without the token") is easier to audit than a list of exceptions, and
/// grpcurl/grpcio pass the header just as easily (`-H 'authorization: Bearer …'`).
pub fn interceptor(
    token: Token,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req: tonic::Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if token.accepts(header) {
            Ok(req)
        } else if header.is_none() {
            Err(tonic::Status::unauthenticated(
                "missing token: send `authorization: Bearer <token>` (clawops: --token-file or CLAWOPS_TOKEN)",
            ))
        } else {
            Err(tonic::Status::unauthenticated("wrong token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let t = Token::new("0123456789abcdef0123\n");
        assert!(t.accepts(Some("Bearer 0123456789abcdef0123")));
        assert!(!t.accepts(Some("Bearer 0123456789abcdef012")));
        assert!(!t.accepts(Some("Bearer 0123456789abcdef01234")));
        assert!(!t.accepts(Some("0123456789abcdef0123")));
        assert!(!t.accepts(Some("Basic 0123456789abcdef0123")));
        assert!(!t.accepts(None));
    }

    /// A rotated token file takes effect within a second, without a restart; the old token is
    /// refused from then on; a broken rewrite keeps the last good token.
    #[test]
    fn follows_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let write = |text: &str| {
            let tmp = dir.path().join("token.new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        write("old-token-0123456789\n");
        let t = Token::load(&path).unwrap();
        assert!(t.accepts(Some("Bearer old-token-0123456789")));
        write("new-token-9876543210\n");
        std::thread::sleep(RECHECK + Duration::from_millis(100));
        assert!(t.accepts(Some("Bearer new-token-9876543210")));
        assert!(!t.accepts(Some("Bearer old-token-0123456789")));
        write("short\n");
        std::thread::sleep(RECHECK + Duration::from_millis(100));
        assert!(t.accepts(Some("Bearer new-token-9876543210")));
        assert!(!t.accepts(Some("Bearer short")));
    }

    #[test]
    fn refuses_group_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Token::load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Token::load(&path).unwrap();
    }
}
