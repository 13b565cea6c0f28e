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

    /// The config as `check-config` prints it: webhook URLs cut to scheme and host.
    pub fn for_display(&self) -> Config {
        let mut shown = self.clone();
        for n in &mut shown.notify {
            n.url = crate::notify::redact(&n.url);
        }
        shown
    }
}

mod resolve;
mod validate;

pub use resolve::{ResolvedApp, compose_project_name, expand_home};

#[cfg(test)]
mod tests;
