//! A service → Docker create options, named and labelled as compose v2 does, with a config hash
//! that changes exactly when the container would differ (effective config or image id).
use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::{
    ComposeError,
    model::{
        Condition, DEFAULT_NETWORK, MountKind, NetworkMode, Project, Restart, Service,
        ServiceNetwork,
    },
};
use crate::docker::{
    LABEL_CONFIG_HASH, LABEL_NUMBER, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE,
    models::{
        ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig,
        NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    },
};

pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_ENV_FILE: &str = "com.docker.compose.project.environment_file";
pub const LABEL_DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const LABEL_IMAGE: &str = "com.docker.compose.image";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_VERSION: &str = "com.docker.compose.version";
/// The compose version the labels follow. Debian's docker-compose 1.29 parses this label on
/// `up` and crashes without it.
pub const COMPOSE_VERSION: &str = "2.0.0";

/// What the container is created from, beyond the compose file.
#[derive(Debug, Clone, Default)]
pub struct SpecInput<'a> {
    /// Image reference to run instead of the service's `image:` (Update runs `openclaw:<sha>`).
    pub image: Option<&'a str>,
    /// Id (`sha256:…`) of the image that reference points to; part of the config hash, so a
    /// rebuilt tag recreates the container.
    pub image_id: &'a str,
    /// For `network_mode: service:X`: the id of X's container.
    pub network_container: Option<&'a str>,
}

/// Everything needed to create one service container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub service: String,
    /// Canonical compose v2 name: `<project>-<service>-1`.
    pub name: String,
    pub image: String,
    pub config_hash: String,
    /// Create options; they attach the container to its first network only.
    pub body: ContainerCreateBody,
    /// The service's other networks (docker name, endpoint), to connect before it starts:
    /// engines before API 1.44 accept one network at create.
    pub networks: Vec<(String, EndpointSettings)>,
}

/// Create options for `service` of `project`.
pub fn container_spec(
    project: &Project,
    service: &str,
    input: &SpecInput<'_>,
) -> Result<ContainerSpec, ComposeError> {
    let svc = project.require_service(service)?;
    let image = input
        .image
        .map(str::to_owned)
        .unwrap_or_else(|| svc.image_ref(&project.name));
    let name = project.container_name(service);
    let mut networks = endpoints(project, svc, &name);
    let network_mode = match networks.first() {
        Some((primary, _)) => primary.clone(),
        None => network_mode(svc, input)?,
    };
    let config_hash = config_hash(svc, input.image_id, &network_mode);
    let labels = container_labels(project, svc, &config_hash, input.image_id);
    let (host, anonymous) = host_config(project, svc, network_mode);
    let networking_config = (!networks.is_empty()).then(|| NetworkingConfig {
        endpoints_config: Some(HashMap::from([networks.remove(0)])),
    });
    let mut body = create_body(svc, &image, labels, host);
    body.volumes = (!anonymous.is_empty()).then_some(anonymous);
    body.networking_config = networking_config;
    Ok(ContainerSpec {
        service: service.to_owned(),
        name,
        image,
        config_hash,
        body,
        networks,
    })
}

/// `network_mode:` as docker takes it (services without it join networks instead).
fn network_mode(svc: &Service, input: &SpecInput<'_>) -> Result<String, ComposeError> {
    Ok(match &svc.network_mode {
        None => String::new(),
        Some(NetworkMode::Bridge) => "bridge".into(),
        Some(NetworkMode::Host) => "host".into(),
        Some(NetworkMode::None) => "none".into(),
        Some(NetworkMode::Container(c)) => format!("container:{c}"),
        Some(NetworkMode::Service(s)) => match input.network_container {
            Some(id) => format!("container:{id}"),
            None => {
                return Err(ComposeError::Project(format!(
                    "service {}: network_mode service:{s} needs {s}'s container, which is not running; start {s} first",
                    svc.name
                )));
            }
        },
    })
}

/// The networks a service without `network_mode` joins, by docker name, first one first
/// (`default` unless it lists others); aliases are the container name, the service name
/// and its own, as compose gives them.
fn endpoints(project: &Project, svc: &Service, name: &str) -> Vec<(String, EndpointSettings)> {
    if svc.network_mode.is_some() {
        return Vec::new();
    }
    let default = BTreeMap::from([(DEFAULT_NETWORK.to_owned(), ServiceNetwork::default())]);
    let listed = if svc.networks.is_empty() {
        &default
    } else {
        &svc.networks
    };
    listed
        .iter()
        .map(|(key, net)| {
            let mut aliases = vec![name.to_owned(), svc.name.clone()];
            aliases.extend(net.aliases.iter().cloned());
            let endpoint = EndpointSettings {
                aliases: Some(aliases),
                ..Default::default()
            };
            (project.network_name(key), endpoint)
        })
        .collect()
}

fn container_labels(
    project: &Project,
    svc: &Service,
    config_hash: &str,
    image_id: &str,
) -> BTreeMap<String, String> {
    let mut labels = labels(project, &svc.name);
    labels.extend(svc.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert(LABEL_CONFIG_HASH.into(), config_hash.to_owned());
    labels.insert(LABEL_NUMBER.into(), "1".into());
    labels.insert(LABEL_ONEOFF.into(), "False".into());
    labels.insert(LABEL_IMAGE.into(), image_id.to_owned());
    if !svc.depends_on.is_empty() {
        let deps: Vec<String> = svc
            .depends_on
            .iter()
            .map(|(n, d)| {
                let cond = match d.condition {
                    Condition::Started => "service_started",
                    Condition::Healthy => "service_healthy",
                    Condition::CompletedSuccessfully => "service_completed_successfully",
                };
                format!("{n}:{cond}:{}", d.restart)
            })
            .collect();
        labels.insert(LABEL_DEPENDS_ON.into(), deps.join(","));
    }
    labels
}

/// Host options, and the anonymous volumes (which docker takes in the body).
fn host_config(
    project: &Project,
    svc: &Service,
    network_mode: String,
) -> (HostConfig, Vec<String>) {
    let mut host = HostConfig {
        network_mode: Some(network_mode),
        init: svc.init,
        cap_add: non_empty(&svc.cap_add),
        cap_drop: non_empty(&svc.cap_drop),
        security_opt: non_empty(&svc.security_opt),
        group_add: non_empty(&svc.group_add),
        memory: svc.mem_limit,
        memory_reservation: svc.mem_reservation,
        pids_limit: svc.pids_limit,
        nano_cpus: svc.cpus.map(|c| (c * 1e9).round() as i64),
        restart_policy: svc.restart.as_ref().map(restart_policy),
        log_config: svc.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: Some(l.options.clone().into_iter().collect()),
        }),
        ..Default::default()
    };
    if !svc.extra_hosts.is_empty() {
        host.extra_hosts = Some(
            svc.extra_hosts
                .iter()
                .map(|(h, a)| format!("{h}:{a}"))
                .collect(),
        );
    }
    let anonymous = mounts(project, svc, &mut host);
    host.port_bindings = port_bindings(svc);
    (host, anonymous)
}

/// Binds (volumes, configs, secrets) and tmpfs into `host`; returns the anonymous volumes.
fn mounts(project: &Project, svc: &Service, host: &mut HostConfig) -> Vec<String> {
    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    let mut tmpfs = HashMap::new();
    for m in &svc.volumes {
        let mut opts = m.options.clone();
        if m.read_only {
            opts.insert(0, "ro".into());
        }
        let suffix = if opts.is_empty() {
            String::new()
        } else {
            format!(":{}", opts.join(","))
        };
        match &m.kind {
            MountKind::Bind(src) => binds.push(format!("{}:{}{suffix}", src.display(), m.target)),
            MountKind::Volume(v) => {
                binds.push(format!("{}:{}{suffix}", project.volume_name(v), m.target))
            }
            MountKind::Anonymous => anonymous.push(m.target.clone()),
            MountKind::Tmpfs => {
                tmpfs.insert(m.target.clone(), String::new());
            }
        }
    }
    // File-based configs and secrets are read-only bind mounts, as docker compose makes them.
    for f in svc.configs.iter().chain(&svc.secrets) {
        binds.push(format!("{}:{}:ro", f.file.display(), f.target));
    }
    host.binds = (!binds.is_empty()).then_some(binds);
    host.tmpfs = (!tmpfs.is_empty()).then_some(tmpfs);
    anonymous
}

type PortMap = HashMap<String, Option<Vec<PortBinding>>>;

fn port_bindings(svc: &Service) -> Option<PortMap> {
    if svc.ports.is_empty() {
        return None;
    }
    let mut map: PortMap = HashMap::new();
    for p in &svc.ports {
        map.entry(format!("{}/{}", p.target, p.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.published.map(|n| n.to_string()).unwrap_or_default()),
            });
    }
    Some(map)
}

/// The exposed ports, in the order the service lists them.
fn exposed_ports(svc: &Service) -> Vec<String> {
    let mut exposed = Vec::new();
    for p in &svc.ports {
        let key = format!("{}/{}", p.target, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key);
        }
    }
    exposed
}

fn create_body(
    svc: &Service,
    image: &str,
    labels: BTreeMap<String, String>,
    host: HostConfig,
) -> ContainerCreateBody {
    let exposed = exposed_ports(svc);
    ContainerCreateBody {
        image: Some(image.to_owned()),
        hostname: svc.hostname.clone(),
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        env: Some(
            svc.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone().map(|e| {
            // An empty list clears the image's entrypoint; docker wants `[""]` for that.
            if e.is_empty() { vec![String::new()] } else { e }
        }),
        tty: svc.tty,
        open_stdin: svc.stdin_open,
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        stop_signal: svc.stop_signal.clone(),
        stop_timeout: svc.stop_grace_period.map(|d| d.as_secs() as i64),
        healthcheck: svc.healthcheck.as_ref().map(|h| HealthConfig {
            test: if h.disable {
                Some(vec!["NONE".into()])
            } else {
                h.test.clone()
            },
            interval: h.interval.map(nanos),
            timeout: h.timeout.map(nanos),
            start_period: h.start_period.map(nanos),
            retries: h.retries,
            start_interval: None,
        }),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        labels: Some(labels.into_iter().collect()),
        host_config: Some(host),
        ..Default::default()
    }
}

/// The project labels compose v2 puts on every container (and, with `service`, the service's).
pub fn labels(project: &Project, service: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(LABEL_PROJECT.to_owned(), project.name.clone());
    l.insert(LABEL_SERVICE.to_owned(), service.to_owned());
    l.insert(LABEL_VERSION.to_owned(), COMPOSE_VERSION.to_owned());
    l.insert(
        LABEL_WORKING_DIR.to_owned(),
        project.working_dir.display().to_string(),
    );
    l.insert(
        LABEL_CONFIG_FILES.to_owned(),
        project
            .config_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    if let Some(env) = &project.env_file {
        l.insert(LABEL_ENV_FILE.to_owned(), env.display().to_string());
    }
    l
}

/// sha256 over the service's effective configuration (build settings excluded: the image id
/// stands for what was built), the image id and the resolved network mode.
fn config_hash(svc: &Service, image_id: &str, network_mode: &str) -> String {
    #[derive(serde::Serialize)]
    struct Input<'a> {
        service: &'a Service,
        image_id: &'a str,
        network_mode: &'a str,
    }
    let mut effective = svc.clone();
    effective.build = None;
    effective.pull_policy = None;
    let json = serde_json::to_vec(&Input {
        service: &effective,
        image_id,
        network_mode,
    })
    .expect("the service model serializes");
    let digest = Sha256::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn restart_policy(r: &Restart) -> RestartPolicy {
    let (name, max) = match r {
        Restart::No => (RestartPolicyNameEnum::NO, None),
        Restart::Always => (RestartPolicyNameEnum::ALWAYS, None),
        Restart::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        Restart::OnFailure(n) => (RestartPolicyNameEnum::ON_FAILURE, *n),
    };
    RestartPolicy {
        name: Some(name),
        maximum_retry_count: max,
    }
}

fn nanos(d: std::time::Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}
