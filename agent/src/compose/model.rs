//! The compose model clawops supports, after interpolation, merging and validation. Only what
//! the loader accepted is here; every field maps to a Docker create option in `create.rs`.
//! Maps are ordered (BTreeMap) so that the config hash does not depend on key order in files.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;

/// A loaded compose project.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub name: String,
    /// Directory of the first compose file; relative paths are resolved against it.
    pub working_dir: PathBuf,
    pub config_files: Vec<PathBuf>,
    /// The `.env` file that was read, if there was one.
    pub env_file: Option<PathBuf>,
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeMap<String, VolumeDef>,
    /// Top-level `networks:` (a `default` entry customizes `<project>_default`).
    pub networks: BTreeMap<String, NetworkDef>,
    /// Top-level `configs:` and `secrets:`: name → the file (resolved inside the checkout).
    pub configs: BTreeMap<String, PathBuf>,
    pub secrets: BTreeMap<String, PathBuf>,
    /// Services left out because none of their `profiles` is enabled.
    pub disabled_services: Vec<String>,
    /// Things compose would warn about (unset variables, obsolete `version`).
    pub warnings: Vec<String>,
}

impl Project {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// The service, or the error that names the ones there are.
    pub fn require_service(&self, name: &str) -> Result<&Service, super::ComposeError> {
        self.services
            .get(name)
            .ok_or_else(|| super::ComposeError::UnknownService {
                name: name.to_owned(),
                available: self.services.keys().cloned().collect(),
            })
    }

    /// Name of the project's default network: `<project>_default` unless renamed.
    pub fn default_network(&self) -> String {
        self.network_name(DEFAULT_NETWORK)
    }

    /// Docker name of a project network: its `name:`, else `<project>_<key>`.
    pub fn network_name(&self, key: &str) -> String {
        match self.networks.get(key).and_then(|n| n.name.clone()) {
            Some(n) => n,
            None => format!("{}_{}", self.name, key),
        }
    }

    /// The container name compose v2 gives the service's first replica.
    pub fn container_name(&self, service: &str) -> String {
        format!("{}-{}-1", self.name, service)
    }

    /// Docker name of a top-level volume: its `name:`, else `<project>_<key>`.
    pub fn volume_name(&self, key: &str) -> String {
        match self.volumes.get(key).and_then(|v| v.name.clone()) {
            Some(n) => n,
            None => format!("{}_{}", self.name, key),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub build: Option<Build>,
    pub restart: Option<Restart>,
    /// The container's environment: `env_file` entries, then `environment` over them.
    pub environment: BTreeMap<String, String>,
    pub env_files: Vec<EnvFile>,
    pub volumes: Vec<Mount>,
    pub ports: Vec<Port>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub init: Option<bool>,
    pub healthcheck: Option<Healthcheck>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    /// `(hostname, address)`; the address may be `host-gateway`.
    pub extra_hosts: Vec<(String, String)>,
    pub stdin_open: Option<bool>,
    pub tty: Option<bool>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub network_mode: Option<NetworkMode>,
    pub labels: BTreeMap<String, String>,
    pub logging: Option<Logging>,
    /// Bytes.
    pub mem_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub group_add: Vec<String>,
    pub hostname: Option<String>,
    pub stop_signal: Option<String>,
    #[serde(serialize_with = "ser_duration_opt")]
    pub stop_grace_period: Option<Duration>,
    // New keys are left out of the serialized form (the config hash) while unset, so that
    // containers of files that do not use them keep their hash.
    /// Networks the service joins (key → aliases); empty: the default network.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, ServiceNetwork>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// `deploy.resources.reservations.memory`, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<i64>,
    /// `deploy.resources.limits.pids`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// Not part of the container: excluded from the config hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// File-based configs and secrets, bind-mounted read-only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileMount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileMount>,
}

impl Service {
    /// The image reference the service runs: `image:`, else compose v2's `<project>-<service>`
    /// for a service that only has `build:`.
    pub fn image_ref(&self, project: &str) -> String {
        match &self.image {
            Some(i) => i.clone(),
            None => format!("{project}-{}", self.name),
        }
    }

    /// Services this one must start after: `depends_on` plus a `network_mode: service:X`.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = self.depends_on.keys().map(String::as_str).collect();
        if let Some(NetworkMode::Service(s)) = &self.network_mode
            && !deps.contains(&s.as_str())
        {
            deps.push(s);
        }
        deps
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Build {
    /// Absolute path of the build context.
    pub context: PathBuf,
    /// Relative to the context, as docker expects.
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Restart {
    No,
    Always,
    UnlessStopped,
    OnFailure(Option<i64>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvFile {
    pub path: PathBuf,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum MountKind {
    /// A host path (absolute after loading).
    Bind(PathBuf),
    /// A project volume (top-level `volumes:` key), or an external volume name.
    Volume(String),
    /// An anonymous volume.
    Anonymous,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mount {
    pub kind: MountKind,
    pub target: String,
    pub read_only: bool,
    /// Extra bind/volume options kept verbatim: `z`, `Z`, `nocopy`, propagation.
    pub options: Vec<String>,
    /// Long-syntax `bind.create_host_path: false` forbids creating a missing source.
    pub create_host_path: bool,
}

impl Mount {
    pub fn bind_source(&self) -> Option<&Path> {
        match &self.kind {
            MountKind::Bind(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    /// Empty: all interfaces.
    pub host_ip: String,
    /// None: an ephemeral port chosen by docker.
    pub published: Option<u16>,
    pub target: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Healthcheck {
    /// Docker's form: `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]`.
    pub test: Option<Vec<String>>,
    #[serde(serialize_with = "ser_duration_opt")]
    pub interval: Option<Duration>,
    #[serde(serialize_with = "ser_duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(serialize_with = "ser_duration_opt")]
    pub start_period: Option<Duration>,
    pub retries: Option<i64>,
    pub disable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dependency {
    pub condition: Condition,
    /// Recreate this service when the dependency is recreated.
    pub restart: bool,
    /// A missing optional dependency is skipped with a warning.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NetworkMode {
    Bridge,
    Host,
    None,
    /// `service:NAME` — share the network stack of that service's container.
    Service(String),
    /// `container:NAME` — share the network stack of an existing container.
    Container(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Logging {
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Config,
    Secret,
}

impl FileKind {
    /// The compose key: `configs` or `secrets`.
    pub fn key(self) -> &'static str {
        match self {
            FileKind::Config => "configs",
            FileKind::Secret => "secrets",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Secret => "secret",
        }
    }
}

/// A config or secret a service mounts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileMount {
    /// Its name under the top-level `configs:`/`secrets:`.
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    /// The file in the checkout (real path), filled in when the project is loaded.
    pub file: PathBuf,
}

/// The network every service without `networks:` or `network_mode:` joins.
pub const DEFAULT_NETWORK: &str = "default";

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
}

/// Variables by name: a service's final environment, a `.env` file's contents.
pub type Vars = BTreeMap<String, String>;

/// A top-level network or volume definition: both are named engine objects with a driver.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResourceDef {
    /// Docker name when set explicitly (`name:`), else `<project>_<key>`.
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    /// Created outside the project: must exist, never created.
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

pub type NetworkDef = ResourceDef;
pub type VolumeDef = ResourceDef;

/// `pull_policy`. Only image mode's update pulls: `up` and `run` need the image on the machine
/// whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PullPolicy {
    Always,
    Never,
    Missing,
    Build,
}

fn ser_duration_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_nanos().to_string()),
        None => s.serialize_none(),
    }
}
