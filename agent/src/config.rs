//! `agent.toml`: what the agent manages and how. Every key has a default that fits the OpenClaw
//! layout of the GCP guide, so an empty file (or none) describes the usual VM; unknown keys are
//! errors that name the key, so a typo never silently falls back to a default.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

// Shared with the client, which must not depend on this crate outside Linux.
pub use clawops_proto::{DEFAULT_AGENT_PORT, DEFAULT_CONFIG_PATH};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(
        "user {0:?} does not exist on this machine: set [app] owner to the account that owns the repository"
    )]
    UnknownUser(String),
    #[error("cannot look up the owner of {path}: {source}")]
    Owner {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the gRPC listener. Loopback unless `[tls]` is configured.
    pub listen: SocketAddr,
    /// File holding the bearer token (one line). Must not be readable by group or others.
    pub token_file: PathBuf,
    /// Journal, snapshots and other agent state.
    pub state_dir: PathBuf,
    /// Unix socket of the Docker engine; default: `DOCKER_HOST` or /var/run/docker.sock.
    pub docker_host: Option<String>,
    pub tls: Option<TlsConfig>,
    pub app: AppConfig,
    pub readiness: ReadinessConfig,
    pub build: BuildConfig,
    pub snapshots: SnapshotConfig,
    pub memory: MemoryConfig,
    pub verify: VerifyConfig,
    pub policy: PolicyConfig,
    pub limits: crate::limits::LimitsConfig,
    pub registry: RegistryConfig,
    pub watch: crate::watch::WatchConfig,
    pub notify: Vec<crate::notify::NotifyConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_AGENT_PORT)),
            token_file: PathBuf::from("/etc/clawops/token"),
            state_dir: PathBuf::from("/var/lib/clawops"),
            docker_host: None,
            tls: None,
            app: AppConfig::default(),
            readiness: ReadinessConfig::default(),
            build: BuildConfig::default(),
            snapshots: SnapshotConfig::default(),
            memory: MemoryConfig::default(),
            verify: VerifyConfig::default(),
            policy: PolicyConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
            registry: RegistryConfig::default(),
            watch: crate::watch::WatchConfig::default(),
            notify: Vec::new(),
        }
    }
}

/// What the deployed repository's compose file may ask of Docker (crate::policy). The defaults
/// refuse everything that hands the host to whoever can push to the deployed branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Host directories bind mounts may come from, besides the checkout and the snapshotted
    /// state directories (`~` is the owner's home).
    pub bind_roots: Vec<PathBuf>,
    /// Binding the Docker socket, which is root on the host (OpenClaw's optional sandbox).
    pub allow_docker_socket: bool,
    /// Capabilities `cap_add` may name (`NET_ADMIN` or `CAP_NET_ADMIN`).
    pub cap_add: Vec<String>,
    /// Publishing ports on addresses other than loopback.
    pub allow_public_ports: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Account that owns the repository; git runs as this user. Default: the agent's user.
    pub owner: Option<String>,
    /// The OpenClaw checkout. Default: `~owner/openclaw`.
    pub repo: Option<PathBuf>,
    pub remote: String,
    pub branch: String,
    /// Compose project name. Default: the repository directory's name, as docker compose does.
    pub project: Option<String>,
    /// The service that Update rebuilds and recreates.
    pub service: String,
    /// Compose files relative to the repo. Default: docker-compose.yml / compose.yaml (+ override).
    pub compose_files: Vec<PathBuf>,
    /// Update replays the checkout's local commits onto each new upstream commit (as
    /// `clawops update --rebase`); a conflict aborts the rebase and the update.
    pub rebase: bool,
    /// Compose profiles to enable: services with `profiles:` start only when one is listed.
    pub profiles: Vec<String>,
    /// Image mode: deploy this registry image (`repo:tag` or `repo@sha256:…`) instead of
    /// building the checkout. Unset: a service with `image:` and no `build:` is pulled too.
    pub image: Option<String>,
}

/// Where image mode finds registry credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// A docker `config.json` (as `docker --config DIR login` writes it); unset: anonymous.
    pub auth_file: Option<PathBuf>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            owner: None,
            repo: None,
            remote: "origin".into(),
            branch: "main".into(),
            project: None,
            service: "openclaw-gateway".into(),
            compose_files: Vec::new(),
            image: None,
            rebase: false,
            profiles: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadinessConfig {
    /// HTTP URL that answers 2xx when the gateway is ready; `""` turns the URL check off.
    /// Every configured check (url, log_regex, healthcheck) must pass.
    pub url: Option<String>,
    /// Regex matched against the container's log lines.
    pub log_regex: Option<String>,
    /// Wait for the compose/docker healthcheck to report healthy.
    pub healthcheck: bool,
    /// Cold starts of the gateway can take ~3 minutes.
    pub timeout_secs: u64,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            url: Some("http://127.0.0.1:18789/healthz".into()),
            log_regex: None,
            healthcheck: false,
            timeout_secs: 180,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// How many `<image>:<sha>` tags to keep for rollback.
    pub keep_images: u32,
    /// Refuse to build when docker's data root has less free space than this.
    pub min_free_disk_mb: u64,
    /// Warn when less memory than this is available (builds on e2-micro get OOM-killed).
    pub min_available_memory_mb: u64,
    /// `auto` (BuildKit, classic builder only when the engine lacks BuildKit), `buildkit`,
    /// or `classic`.
    pub builder: crate::build::BuilderChoice,
    /// Extra labels on every image built, e.g. `org.opencontainers.image.source`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// A build still running after this long is stopped (it holds the single-flight lock).
    pub timeout_secs: u64,
    /// An absolute path to a Dockerfile outside the checkout, built `FROM` the repository's
    /// image (`ARG BASE_IMAGE`) with its folder as context: skill binaries without touching
    /// upstream files. The result gets the tags; the base keeps `<repo>:<sha12>-base`.
    pub overlay: Option<PathBuf>,
    /// The build context, relative to the checkout, for a service without `build:`.
    pub context: Option<PathBuf>,
    /// The Dockerfile, relative to the checkout (inside `context`); default
    /// `<context>/Dockerfile`. Only with `context`.
    pub dockerfile: Option<PathBuf>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            keep_images: 3,
            min_free_disk_mb: 2048,
            min_available_memory_mb: 768,
            builder: crate::build::BuilderChoice::Auto,
            labels: std::collections::BTreeMap::new(),
            timeout_secs: 3600,
            overlay: None,
            context: None,
            dockerfile: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// State directories copied before every update; `~` is the owner's home.
    pub dirs: Vec<PathBuf>,
    pub keep: u32,
    /// Refuse a snapshot whose directories add up to more than this; 0: no cap.
    pub max_mb: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            dirs: vec![PathBuf::from("~/.openclaw")],
            keep: 3,
            max_mb: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    pub sample_interval_secs: u64,
    pub history_secs: u64,
    /// Base URL of the GCE metadata server (tests point it at a local server).
    pub metadata_url: String,
    pub metadata_timeout_ms: u64,
    /// Below this much available memory, sustained, the advisor suggests a bigger machine.
    pub low_available_mb: u64,
    /// Memory pressure (PSI `some avg10`, percent) that, sustained, calls for a bigger machine.
    pub pressure_some_pct: f64,
    /// How long low memory or pressure must last (mostly) before the advisor acts on it.
    pub sustained_secs: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            sample_interval_secs: 10,
            history_secs: 24 * 3600,
            metadata_url: "http://metadata.google.internal/computeMetadata/v1".into(),
            metadata_timeout_ms: 300,
            low_available_mb: 150,
            pressure_some_pct: 10.0,
            sustained_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Binaries that must be in the image, in addition to those the skills declare.
    pub binaries: Vec<String>,
    /// Probe argv per binary instead of `<bin> --version`, e.g. `gog = ["gog", "version"]`.
    pub probes: std::collections::BTreeMap<String, Vec<String>>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "listen",
                message: format!(
                    "{} is not a loopback address and [tls] is not configured. The agent is meant \
                     to be reached through an SSH tunnel (`clawops --via ssh://HOST …` or \
                     `--via gcloud://VM`), so it listens on 127.0.0.1; to expose it on a network, \
                     configure [tls] cert and key",
                    self.listen
                ),
            });
        }
        self.validate_app()?;
        self.validate_readiness()?;
        if self.memory.sample_interval_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "memory.sample_interval_secs",
                message: "must be at least 1".into(),
            });
        }
        self.validate_memory()?;
        self.validate_build()?;
        self.validate_verify()?;
        self.validate_limits()?;
        self.validate_watch_and_notify()?;
        Ok(())
    }

    /// `[app]`: names git and compose need, a valid image reference.
    fn validate_app(&self) -> Result<(), ConfigError> {
        let non_empty = [
            ("app.remote", &self.app.remote),
            ("app.branch", &self.app.branch),
            ("app.service", &self.app.service),
        ];
        for (key, value) in non_empty {
            if value.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must not be empty".into(),
                });
            }
        }
        if let Some(image) = &self.app.image {
            crate::pull::PullRef::parse(image).map_err(|e| ConfigError::Invalid {
                key: "app.image",
                message: e.to_string(),
            })?;
        }
        for (key, value) in [
            ("app.remote", &self.app.remote),
            ("app.branch", &self.app.branch),
        ] {
            crate::git::validate_ref(value).map_err(|e| ConfigError::Invalid {
                key,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// `[readiness]`: a timeout, a regex that compiles, an http(s) URL.
    fn validate_readiness(&self) -> Result<(), ConfigError> {
        if self.readiness.timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "readiness.timeout_secs",
                message: "must be at least 1".into(),
            });
        }
        if let Some(re) = &self.readiness.log_regex {
            regex::Regex::new(re).map_err(|e| ConfigError::Invalid {
                key: "readiness.log_regex",
                message: e.to_string(),
            })?;
        }
        if let Some(url) = &self.readiness.url
            && !url.is_empty()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "readiness.url",
                message: format!("{url:?} is not an http:// or https:// URL"),
            });
        }
        Ok(())
    }

    /// `[build]`: a timeout, at least one kept image, and its paths.
    fn validate_build(&self) -> Result<(), ConfigError> {
        if self.build.timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "build.timeout_secs",
                message: "must be at least 1".into(),
            });
        }
        if self.build.keep_images == 0 {
            return Err(ConfigError::Invalid {
                key: "build.keep_images",
                message: "must be at least 1: the previous image is what rollback starts".into(),
            });
        }
        self.validate_build_paths()
    }

    /// `[build] overlay` must be a readable regular file; `context` and `dockerfile` must stay
    /// inside the checkout (the build checks again after resolving symlinks).
    fn validate_build_paths(&self) -> Result<(), ConfigError> {
        if let Some(overlay) = &self.build.overlay {
            crate::build::overlay::check_path(overlay).map_err(|e| ConfigError::Invalid {
                key: "build.overlay",
                message: e.to_string(),
            })?;
        }
        if self.build.dockerfile.is_some() && self.build.context.is_none() {
            return Err(ConfigError::Invalid {
                key: "build.dockerfile",
                message: "only applies with [build] context: set the context too".into(),
            });
        }
        for (key, path) in [
            ("build.context", &self.build.context),
            ("build.dockerfile", &self.build.dockerfile),
        ] {
            if let Some(path) = path
                && !stays_inside(path)
            {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!(
                        "{} must be relative to the checkout and stay inside it (no leading `/`, \
                         no `..` above it)",
                        path.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// `[watch]` and `[[notify]]`. A notify URL is a secret: messages never repeat it.
    fn validate_watch_and_notify(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        let w = &self.watch;
        if w.interval_secs == 0 {
            return invalid("watch.interval_secs", "must be at least 1".into());
        }
        if w.max_failures == 0 {
            return invalid("watch.max_failures", "must be at least 1".into());
        }
        if let Err(e) = w.parsed_window() {
            let key = match e {
                crate::watch::window::WindowError::UnknownZone(_) if w.timezone.is_some() => {
                    "watch.timezone"
                }
                _ => "watch.window",
            };
            return invalid(key, e.to_string());
        }
        for (i, n) in self.notify.iter().enumerate() {
            if let Err(why) = crate::notify::check_url(&n.url) {
                return invalid(
                    "notify.url",
                    format!("[[notify]] number {}: the url {why}", i + 1),
                );
            }
            if n.events.is_empty() {
                return invalid(
                    "notify.events",
                    format!(
                        "[[notify]] number {}: empty; leave the key out for every event",
                        i + 1
                    ),
                );
            }
        }
        Ok(())
    }

    /// The config as `check-config` prints it: webhook URLs cut to scheme and host.
    pub fn for_display(&self) -> Config {
        let mut shown = self.clone();
        for n in &mut shown.notify {
            n.url = crate::notify::redact(&n.url);
        }
        shown
    }

    /// `[limits]`: zero would refuse every request (or rotate the journal on every write).
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive = [
            (
                "limits.max_requested_by_bytes",
                l.max_requested_by_bytes as u64,
            ),
            (
                "limits.max_streams_per_connection",
                l.max_streams_per_connection.into(),
            ),
            (
                "limits.max_requests_per_connection",
                l.max_requests_per_connection as u64,
            ),
            ("limits.journal_max_mb", l.journal_max_mb),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid {
                key,
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// `[verify]`: command names as PATH lookup takes them, probes with a command.
    fn validate_verify(&self) -> Result<(), ConfigError> {
        let names = (self.verify.binaries.iter().map(|n| ("verify.binaries", n)))
            .chain(self.verify.probes.keys().map(|n| ("verify.probes", n)));
        for (key, name) in names {
            crate::verify::skills::check_name(name).map_err(|why| ConfigError::Invalid {
                key,
                message: format!("{name:?} {why}"),
            })?;
        }
        if let Some((name, _)) = self.verify.probes.iter().find(|(_, argv)| argv.is_empty()) {
            return Err(ConfigError::Invalid {
                key: "verify.probes",
                message: format!("{name:?} has an empty argv: give e.g. [\"{name}\", \"version\"]"),
            });
        }
        Ok(())
    }

    /// The `[memory]` values: the ring must stay small enough for the agent's RSS budget.
    fn validate_memory(&self) -> Result<(), ConfigError> {
        let m = &self.memory;
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        let samples = m.history_secs / m.sample_interval_secs;
        if m.history_secs < m.sample_interval_secs || samples > 100_000 {
            return invalid(
                "memory.history_secs",
                format!(
                    "{}s of history at one sample every {}s is {samples} samples; keep it between \
                     1 and 100000 (raise sample_interval_secs for a longer history)",
                    m.history_secs, m.sample_interval_secs
                ),
            );
        }
        if let Err(e) = crate::memory::metadata::MetadataClient::new(
            &m.metadata_url,
            std::time::Duration::from_millis(m.metadata_timeout_ms),
        ) {
            return invalid("memory.metadata_url", e.to_string());
        }
        if !(1..=10_000).contains(&m.metadata_timeout_ms) {
            return invalid(
                "memory.metadata_timeout_ms",
                "must be between 1 and 10000 (the metadata server answers in a few ms)".into(),
            );
        }
        if !(m.pressure_some_pct > 0.0 && m.pressure_some_pct <= 100.0) {
            return invalid(
                "memory.pressure_some_pct",
                format!("{} is not a percentage in (0, 100]", m.pressure_some_pct),
            );
        }
        if m.sustained_secs == 0 {
            return invalid("memory.sustained_secs", "must be at least 1".into());
        }
        Ok(())
    }

    /// Resolves the owner, paths and project name against this machine.
    pub fn resolve_app(&self) -> Result<ResolvedApp, ConfigError> {
        let owner = match &self.app.owner {
            Some(name) => nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| ConfigError::UnknownUser(name.clone()))?,
            None => match &self.app.repo {
                Some(repo) => owner_of(repo)?,
                None => current_user(),
            },
        };
        let home = owner.dir.clone();
        let repo = self
            .app
            .repo
            .clone()
            .map(|p| expand_home(&p, &home))
            .unwrap_or_else(|| home.join("openclaw"));
        let project = self
            .app
            .project
            .clone()
            .unwrap_or_else(|| compose_project_name(&repo));
        let state_dirs = self
            .snapshots
            .dirs
            .iter()
            .map(|d| expand_home(d, &home))
            .collect();
        Ok(ResolvedApp {
            owner: owner.name,
            uid: owner.uid.as_raw(),
            gid: owner.gid.as_raw(),
            home,
            repo,
            project,
            state_dirs,
        })
    }
}

/// The app section with everything looked up: who owns the repo, where things are.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedApp {
    pub owner: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub repo: PathBuf,
    pub project: String,
    pub state_dirs: Vec<PathBuf>,
}

fn current_user() -> nix::unistd::User {
    let uid = nix::unistd::Uid::effective();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .unwrap_or_else(|| nix::unistd::User {
            name: uid.to_string(),
            passwd: Default::default(),
            uid,
            gid: nix::unistd::Gid::effective(),
            gecos: Default::default(),
            dir: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
            shell: PathBuf::from("/bin/sh"),
        })
}

fn owner_of(path: &Path) -> Result<nix::unistd::User, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Owner {
        path: path.to_owned(),
        source,
    })?;
    let uid = nix::unistd::Uid::from_raw(meta.uid());
    Ok(nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .unwrap_or_else(|| nix::unistd::User {
            name: uid.to_string(),
            passwd: Default::default(),
            uid,
            gid: nix::unistd::Gid::from_raw(meta.gid()),
            gecos: Default::default(),
            dir: PathBuf::from("/"),
            shell: PathBuf::from("/bin/sh"),
        }))
}

/// `~/x` → `<home>/x`; other paths unchanged.
pub fn expand_home(path: &Path, home: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home.join(rest),
        Err(_) => path.to_owned(),
    }
}

/// docker compose's default project name: the directory name, lowercased, keeping only
/// `[a-z0-9_-]` and not starting with `-` or `_`.
pub fn compose_project_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let trimmed = cleaned.trim_start_matches(['-', '_']);
    if trimmed.is_empty() {
        "default".into()
    } else {
        trimmed.into()
    }
}

/// Is `path` relative, and does it stay below its base when `..` is taken lexically?
fn stays_inside(path: &Path) -> bool {
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if depth > 0 => depth -= 1,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_openclaw_defaults() {
        let c = Config::parse("", Path::new("agent.toml")).unwrap();
        assert_eq!(c.app.service, "openclaw-gateway");
        assert_eq!(c.listen.port(), DEFAULT_AGENT_PORT);
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.readiness.timeout_secs, 180);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[app]\nservic = \"x\"\n", Path::new("a.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("servic"), "{msg}");
        assert!(msg.contains("a.toml"), "{msg}");
    }

    #[test]
    fn build_paths_are_checked_at_load_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let df = dir.path().join("Dockerfile");
        std::fs::write(&df, "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&df, &link).unwrap();
        let load = |build: &str| Config::parse(&format!("[build]\n{build}"), Path::new("a.toml"));
        let ok = load(&format!(
            "overlay = {:?}\ncontext = \"docker/./app\"\ndockerfile = \"docker/app/x/../Dockerfile\"\n",
            df.display()
        ))
        .unwrap();
        assert_eq!(ok.build.overlay.as_deref(), Some(df.as_path()));
        for (build, key, want) in [
            (
                "overlay = \"Dockerfile\"\n".to_owned(),
                "build.overlay",
                "absolute",
            ),
            (
                format!("overlay = {:?}\n", link.display()),
                "build.overlay",
                "symlink",
            ),
            (
                format!("overlay = {:?}\n", dir.path().join("nope").display()),
                "build.overlay",
                "create the file",
            ),
            (
                "context = \"../elsewhere\"\n".to_owned(),
                "build.context",
                "inside",
            ),
            (
                "context = \"a/../../b\"\n".to_owned(),
                "build.context",
                "inside",
            ),
            (
                "context = \"/srv/app\"\n".to_owned(),
                "build.context",
                "relative",
            ),
            (
                "context = \".\"\ndockerfile = \"../Dockerfile\"\n".to_owned(),
                "build.dockerfile",
                "inside",
            ),
            (
                "dockerfile = \"Dockerfile\"\n".to_owned(),
                "build.dockerfile",
                "context",
            ),
        ] {
            let err = load(&build).unwrap_err().to_string();
            assert!(err.starts_with(key) && err.contains(want), "{build}: {err}");
        }
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::parse("[build]\nkeep_images = \"three\"\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep_images"), "{err}");
    }

    #[test]
    fn hostile_branch_is_refused_at_load() {
        let err = Config::parse("[app]\nbranch = \"--upload-pack=x\"\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("app.branch"), "{err}");
    }

    #[test]
    fn non_loopback_without_tls_is_refused() {
        let err = Config::parse("listen = \"0.0.0.0:18777\"\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SSH tunnel"), "{err}");
    }

    #[test]
    fn verify_names_and_probes_are_checked() {
        let err = Config::parse("[verify]\nbinaries = [\"bin/gog\"]\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("verify.binaries") && err.contains("'/'"),
            "{err}"
        );
        let err = Config::parse("[verify.probes]\ngog = []\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("verify.probes") && err.contains("empty argv"),
            "{err}"
        );
        Config::parse(
            "[verify.probes]\ngog = [\"gog\", \"version\"]\n",
            Path::new("a.toml"),
        )
        .unwrap();
    }

    #[test]
    fn project_name_follows_compose() {
        assert_eq!(
            compose_project_name(Path::new("/home/u/OpenClaw")),
            "openclaw"
        );
        assert_eq!(compose_project_name(Path::new("/x/_my.app")), "myapp");
    }

    #[test]
    fn home_expansion() {
        assert_eq!(
            expand_home(Path::new("~/.openclaw"), Path::new("/home/u")),
            PathBuf::from("/home/u/.openclaw")
        );
        assert_eq!(
            expand_home(Path::new("/srv/x"), Path::new("/home/u")),
            PathBuf::from("/srv/x")
        );
    }
}
