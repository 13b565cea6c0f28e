//! Bearer-token authentication for every gRPC call, and loading the token safely.
use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc};

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

/// The shared secret, compared in constant time.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl Token {
    pub fn new(secret: &str) -> Self {
        Self(secret.trim().as_bytes().into())
    }

    /// Reads the token file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| AuthError::Read {
            path: shown.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthError::TooOpen { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: shown.clone(),
            source,
        })?;
        let token = Self::new(&text);
        if token.0.len() < 16 {
            return Err(AuthError::TooShort { path: shown });
        }
        Ok(token)
    }

    /// Checks an `authorization` header value of the form `Bearer <token>`.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        // ct_eq on slices of different lengths returns false at once; that reveals only the
        // length, which a 0600 file of random hex does not make secret.
        bool::from(self.0.ct_eq(presented.trim().as_bytes()))
    }
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
