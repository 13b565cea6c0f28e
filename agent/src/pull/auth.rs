//! Registry credentials from a docker `config.json` (`[registry] auth_file`), as
//! `docker --config DIR login` writes it. Nothing read here is ever echoed: errors name the file
//! and the registry, never a value.
use std::{collections::HashMap, path::Path};

use base64::Engine as _;
use serde::Deserialize;

use crate::docker::RegistryCredentials;

/// A docker config file is a few kilobytes; refuse anything absurd.
const MAX_AUTH_FILE: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("[registry] auth_file: {0}")]
    Read(#[from] crate::untrusted::UntrustedReadError),
    #[error(
        "[registry] auth_file {path}: not a docker config.json (line {line}, column {column}); \
         write it with `docker --config DIR login REGISTRY`"
    )]
    Parse {
        path: String,
        line: usize,
        column: usize,
    },
    #[error(
        "[registry] auth_file {path}: the entry for {registry} is not base64 of `user:password`; \
         write it again with `docker --config DIR login {registry}`"
    )]
    BadEntry { path: String, registry: String },
    #[error(
        "[registry] auth_file {path}: {registry} uses a credential helper, which the agent does \
         not run; write the credentials into the file with `docker --config DIR login {registry}` \
         (no credsStore/credHelpers)"
    )]
    Helper { path: String, registry: String },
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, Entry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credentials `auth_file` holds for `registry`; `None` (anonymous) when it has none.
pub fn credentials(
    auth_file: &Path,
    registry: &str,
) -> Result<Option<RegistryCredentials>, AuthError> {
    let text = crate::untrusted::read_text(auth_file, MAX_AUTH_FILE)?;
    parse(&text, &auth_file.display().to_string(), registry)
}

/// The credentials `[registry] auth_file` (when set) holds for `reference`'s registry.
pub fn for_reference(
    auth_file: Option<&Path>,
    reference: &super::PullRef,
) -> Result<Option<RegistryCredentials>, AuthError> {
    match auth_file {
        Some(file) => credentials(file, reference.registry()),
        None => Ok(None),
    }
}

fn parse(text: &str, path: &str, registry: &str) -> Result<Option<RegistryCredentials>, AuthError> {
    let file: ConfigFile = serde_json::from_str(text).map_err(|e| AuthError::Parse {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
    })?;
    let wanted = host_of(registry);
    let entry = file.auths.iter().find(|(key, _)| host_of(key) == wanted);
    let helper = || AuthError::Helper {
        path: path.to_owned(),
        registry: registry.to_owned(),
    };
    if file.cred_helpers.keys().any(|k| host_of(k) == wanted) {
        return Err(helper());
    }
    let Some((_, entry)) = entry else {
        return Ok(None);
    };
    let bad = || AuthError::BadEntry {
        path: path.to_owned(),
        registry: registry.to_owned(),
    };
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
            (u.to_owned(), p.to_owned())
        }
        (_, Some(u), Some(p)) => (u.clone(), p.clone()),
        // An empty entry is what `docker login` leaves when a credsStore holds the secret.
        _ if file.creds_store.is_some() => return Err(helper()),
        _ => return Err(bad()),
    };
    Ok(Some(RegistryCredentials {
        username,
        password,
        server: server_address(registry),
    }))
}

/// `https://index.docker.io/v1/` and `docker.io` are the same registry, `http://h:5000/x` is
/// `h:5000`.
fn host_of(key: &str) -> String {
    let key = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// The server address the engine expects for `registry`.
fn server_address(registry: &str) -> String {
    match host_of(registry).as_str() {
        "docker.io" => "https://index.docker.io/v1/".into(),
        host => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // base64("me:s3cret:with:colons")
    const FILE: &str = r#"{"auths": {
        "127.0.0.1:5000": {"auth": "bWU6czNjcmV0OndpdGg6Y29sb25z"},
        "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
        "broken.example": {"auth": "!!!"}
    }}"#;

    #[test]
    fn entries_are_found_by_registry_and_decoded() {
        let c = parse(FILE, "cfg.json", "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("me", "s3cret:with:colons")
        );
        assert_eq!(c.server, "127.0.0.1:5000");
        let hub = parse(FILE, "cfg.json", "docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.server.as_str()),
            ("hub", "https://index.docker.io/v1/")
        );
        assert_eq!(parse(FILE, "cfg.json", "ghcr.io").unwrap(), None);
    }

    #[test]
    fn bad_files_are_refused_without_echoing_secrets() {
        let e = parse(FILE, "cfg.json", "broken.example").unwrap_err();
        assert!(matches!(e, AuthError::BadEntry { .. }), "{e}");
        assert!(!e.to_string().contains("!!!"), "{e}");
        let e = parse(
            r#"{"auths": {"ghcr.io": {"auth": "c2VjcmV0"}}}"#,
            "f",
            "ghcr.io",
        )
        .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = parse("{\"auths\": ", "f", "ghcr.io").unwrap_err();
        assert!(matches!(e, AuthError::Parse { .. }), "{e}");
        let helper = r#"{"auths": {"ghcr.io": {}}, "credsStore": "desktop"}"#;
        assert!(matches!(
            parse(helper, "f", "ghcr.io"),
            Err(AuthError::Helper { .. })
        ));
        let helpers = r#"{"credHelpers": {"ghcr.io": "gcloud"}}"#;
        assert!(matches!(
            parse(helpers, "f", "ghcr.io"),
            Err(AuthError::Helper { .. })
        ));
    }
}
