//! One service of one compose file (already interpolated) → a draft [`Service`]. Every key is
//! either understood or an error that names it: nothing is silently dropped.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value};

use super::{
    ComposeError, deploy, files,
    model::FileKind,
    model::{
        Build, Condition, Dependency, EnvFile, Healthcheck, Logging, NetworkMode, Restart, Service,
    },
    mounts, networks, values,
};

/// The service keys clawops implements (docs/ARCHITECTURE.md, "Decisions"), for error messages.
pub const SUPPORTED_KEYS: &[&str] = &[
    "image",
    "build",
    "restart",
    "env_file",
    "environment",
    "volumes",
    "ports",
    "command",
    "entrypoint",
    "init",
    "healthcheck",
    "user",
    "working_dir",
    "cap_add",
    "cap_drop",
    "security_opt",
    "extra_hosts",
    "stdin_open",
    "tty",
    "depends_on",
    "network_mode",
    "labels",
    "logging",
    "mem_limit",
    "cpus",
    "group_add",
    "hostname",
    "stop_signal",
    "stop_grace_period",
    "networks",
    "profiles",
    "configs",
    "secrets",
    "deploy",
    "pull_policy",
];

/// A service as one file describes it, before merging with overrides and resolving `env`.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub svc: Service,
    /// `environment` entries; `None` inherits the value from the project environment.
    pub env: BTreeMap<String, Option<String>>,
    /// `deploy.resources.limits`, reconciled with `mem_limit`/`cpus` when finalized.
    pub limits: deploy::Limits,
    pub warnings: Vec<String>,
}

/// Where a value came from, for error messages.
pub struct Loc<'a> {
    pub file: &'a Path,
    pub service: &'a str,
    /// Project directory: relative paths resolve against it.
    pub base: &'a Path,
    /// For `~` in paths.
    pub home: Option<&'a str>,
}

impl Loc<'_> {
    pub fn invalid(&self, key: &str, message: impl std::fmt::Display) -> ComposeError {
        ComposeError::Invalid {
            file: self.file.to_owned(),
            service: Some(self.service.to_owned()),
            key: key.to_owned(),
            message: message.to_string(),
        }
    }

    pub(super) fn unsupported(&self, key: &str) -> ComposeError {
        ComposeError::UnsupportedKey {
            file: self.file.to_owned(),
            service: Some(self.service.to_owned()),
            key: key.to_owned(),
        }
    }

    /// Absolute path for `p`, relative to the project directory; `~` is the home directory.
    pub fn path(&self, p: &str) -> PathBuf {
        let expanded = match (p.strip_prefix('~'), self.home) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                format!("{home}{rest}")
            }
            _ => p.to_owned(),
        };
        normalize(&self.base.join(expanded))
    }
}

/// Removes `.` and `..` components without touching the filesystem.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub fn service(loc: &Loc<'_>, value: &Value) -> Result<Draft, ComposeError> {
    let map = match value {
        Value::Object(m) => m,
        Value::Null => return Err(loc.invalid("", "the service is empty: give it an image")),
        _ => return Err(loc.invalid("", "a service must be a mapping of keys")),
    };
    let mut d = Draft::default();
    d.svc.name = loc.service.to_owned();
    for (key, v) in map {
        let s = &mut d.svc;
        let str_of = |v: &Value| {
            values::scalar_string(v).ok_or_else(|| loc.invalid(key, format!("{v} is not a string")))
        };
        let bool_of = |v: &Value| values::boolean(v).map_err(|m| loc.invalid(key, m));
        match key.as_str() {
            "image" => s.image = Some(str_of(v)?),
            "build" => s.build = Some(build(loc, v)?),
            "restart" => s.restart = Some(restart(loc, &str_of(v)?)?),
            "env_file" => s.env_files = env_files(loc, v)?,
            "environment" => d.env = key_values(loc, key, v)?,
            "volumes" => {
                s.volumes = list(loc, key, v)?
                    .iter()
                    .map(|m| mounts::mount(loc, m))
                    .collect::<Result<_, _>>()?
            }
            "ports" => {
                for p in list(loc, key, v)? {
                    s.ports.extend(mounts::port(loc, p)?);
                }
            }
            "command" => s.command = command(loc, key, v)?,
            "entrypoint" => s.entrypoint = command(loc, key, v)?,
            "init" => s.init = Some(bool_of(v)?),
            "healthcheck" => s.healthcheck = Some(healthcheck(loc, v)?),
            "user" => s.user = Some(str_of(v)?),
            "working_dir" => s.working_dir = Some(str_of(v)?),
            "cap_add" => s.cap_add = strings(loc, key, v)?,
            "cap_drop" => s.cap_drop = strings(loc, key, v)?,
            "security_opt" => s.security_opt = strings(loc, key, v)?,
            "group_add" => s.group_add = strings(loc, key, v)?,
            "extra_hosts" => s.extra_hosts = extra_hosts(loc, v)?,
            "stdin_open" => s.stdin_open = Some(bool_of(v)?),
            "tty" => s.tty = Some(bool_of(v)?),
            "depends_on" => s.depends_on = depends_on(loc, v)?,
            "network_mode" => s.network_mode = Some(network_mode(loc, &str_of(v)?)?),
            "labels" => {
                s.labels = key_values(loc, key, v)?
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect()
            }
            "logging" => s.logging = Some(logging(loc, v)?),
            "mem_limit" => s.mem_limit = Some(values::bytes(v).map_err(|m| loc.invalid(key, m))?),
            "cpus" => s.cpus = Some(values::float(v).map_err(|m| loc.invalid(key, m))?),
            "hostname" => s.hostname = Some(str_of(v)?),
            "stop_signal" => s.stop_signal = Some(str_of(v)?),
            "stop_grace_period" => {
                s.stop_grace_period =
                    Some(values::duration(&str_of(v)?).map_err(|m| loc.invalid(key, m))?)
            }
            "networks" => s.networks = networks::service_networks(loc, v)?,
            "profiles" => s.profiles = strings(loc, key, v)?,
            "configs" => s.configs = files::references(loc, FileKind::Config, v)?,
            "secrets" => s.secrets = files::references(loc, FileKind::Secret, v)?,
            "pull_policy" => s.pull_policy = Some(deploy::pull_policy(loc, &str_of(v)?)?),
            "deploy" => {
                let parsed = deploy::deploy(loc, v)?;
                d.limits = parsed.limits;
                d.warnings.extend(parsed.warnings);
                d.svc.pids_limit = parsed.pids;
                d.svc.mem_reservation = parsed.mem_reservation;
            }
            k if k.starts_with("x-") => {}
            other => return Err(loc.unsupported(other)),
        }
    }
    Ok(d)
}

fn list<'v>(loc: &Loc<'_>, key: &str, v: &'v Value) -> Result<&'v Vec<Value>, ComposeError> {
    v.as_array()
        .ok_or_else(|| loc.invalid(key, "must be a list"))
}

pub(super) fn object<'v>(
    loc: &Loc<'_>,
    key: &str,
    v: &'v Value,
) -> Result<&'v Map<String, Value>, ComposeError> {
    v.as_object()
        .ok_or_else(|| loc.invalid(key, "must be a mapping"))
}

fn strings(loc: &Loc<'_>, key: &str, v: &Value) -> Result<Vec<String>, ComposeError> {
    list(loc, key, v)?
        .iter()
        .map(|item| {
            values::scalar_string(item)
                .ok_or_else(|| loc.invalid(key, format!("{item} is not a string")))
        })
        .collect()
}

/// `KEY=VALUE` list or mapping (`environment`, `labels`, `build.args`). A list item without `=`
/// or a null value means "inherit".
fn key_values(
    loc: &Loc<'_>,
    key: &str,
    v: &Value,
) -> Result<BTreeMap<String, Option<String>>, ComposeError> {
    let mut out = BTreeMap::new();
    match v {
        Value::Array(items) => {
            for item in items {
                let s = values::scalar_string(item)
                    .ok_or_else(|| loc.invalid(key, format!("{item} is not a KEY=VALUE string")))?;
                match s.split_once('=') {
                    Some((k, val)) => out.insert(k.to_owned(), Some(val.to_owned())),
                    None => out.insert(s, None),
                };
            }
        }
        Value::Object(m) => {
            for (k, val) in m {
                let val = match val {
                    Value::Null => None,
                    other => Some(values::scalar_string(other).ok_or_else(|| {
                        loc.invalid(&format!("{key}.{k}"), "must be a string, number or boolean")
                    })?),
                };
                out.insert(k.clone(), val);
            }
        }
        Value::Null => {}
        _ => return Err(loc.invalid(key, "must be a list of KEY=VALUE or a mapping")),
    }
    Ok(out)
}

fn build(loc: &Loc<'_>, v: &Value) -> Result<Build, ComposeError> {
    let mut b = Build::default();
    match v {
        Value::String(ctx) => b.context = loc.path(ctx),
        Value::Object(m) => {
            for (k, val) in m {
                let key = format!("build.{k}");
                let text = || {
                    values::scalar_string(val)
                        .ok_or_else(|| loc.invalid(&key, format!("{val} is not a string")))
                };
                match k.as_str() {
                    "context" => b.context = loc.path(&text()?),
                    "dockerfile" => b.dockerfile = Some(text()?),
                    "target" => b.target = Some(text()?),
                    "args" => b.args = key_values(loc, &key, val)?,
                    x if x.starts_with("x-") => {}
                    _ => return Err(loc.unsupported(&key)),
                }
            }
        }
        _ => return Err(loc.invalid("build", "must be a path or a mapping with context")),
    }
    Ok(b)
}

fn restart(loc: &Loc<'_>, s: &str) -> Result<Restart, ComposeError> {
    Ok(match s {
        "no" | "" => Restart::No,
        "always" => Restart::Always,
        "unless-stopped" => Restart::UnlessStopped,
        "on-failure" => Restart::OnFailure(None),
        other => match other.strip_prefix("on-failure:").map(str::parse::<i64>) {
            Some(Ok(n)) if n >= 0 => Restart::OnFailure(Some(n)),
            _ => {
                return Err(loc.invalid(
                    "restart",
                    format!("unknown restart policy {other:?} (use no, always, on-failure[:N] or unless-stopped)"),
                ));
            }
        },
    })
}

fn env_files(loc: &Loc<'_>, v: &Value) -> Result<Vec<EnvFile>, ComposeError> {
    let one = |item: &Value| -> Result<EnvFile, ComposeError> {
        match item {
            Value::String(p) => Ok(EnvFile {
                path: loc.path(p),
                required: true,
            }),
            Value::Object(m) => {
                let mut f = EnvFile {
                    path: PathBuf::new(),
                    required: true,
                };
                for (k, val) in m {
                    let key = format!("env_file.{k}");
                    match k.as_str() {
                        "path" => {
                            let p = values::scalar_string(val)
                                .ok_or_else(|| loc.invalid(&key, "must be a path"))?;
                            f.path = loc.path(&p);
                        }
                        "required" => {
                            f.required = values::boolean(val).map_err(|m| loc.invalid(&key, m))?
                        }
                        _ => return Err(loc.unsupported(&key)),
                    }
                }
                if f.path.as_os_str().is_empty() {
                    return Err(loc.invalid("env_file", "an entry has no path"));
                }
                Ok(f)
            }
            _ => Err(loc.invalid("env_file", "entries must be paths or {path, required}")),
        }
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn command(loc: &Loc<'_>, key: &str, v: &Value) -> Result<Option<Vec<String>>, ComposeError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => shlex::split(s).map(Some).ok_or_else(|| {
            loc.invalid(
                key,
                format!("{s:?} has unbalanced quotes; use the list form"),
            )
        }),
        Value::Array(_) => strings(loc, key, v).map(Some),
        _ => Err(loc.invalid(key, "must be a string or a list of strings")),
    }
}

fn healthcheck(loc: &Loc<'_>, v: &Value) -> Result<Healthcheck, ComposeError> {
    let mut h = Healthcheck::default();
    for (k, val) in object(loc, "healthcheck", v)? {
        let key = format!("healthcheck.{k}");
        let dur = || {
            let s = values::scalar_string(val)
                .ok_or_else(|| loc.invalid(&key, "must be a duration"))?;
            values::duration(&s).map_err(|m| loc.invalid(&key, m))
        };
        match k.as_str() {
            "test" => {
                h.test = Some(match val {
                    Value::String(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                    Value::Array(_) => {
                        let t = strings(loc, &key, val)?;
                        match t.first().map(String::as_str) {
                            Some("CMD" | "CMD-SHELL" | "NONE") => t,
                            _ => {
                                return Err(loc.invalid(
                                    &key,
                                    "a list must start with CMD, CMD-SHELL or NONE",
                                ));
                            }
                        }
                    }
                    _ => return Err(loc.invalid(&key, "must be a string or a list")),
                })
            }
            "interval" => h.interval = Some(dur()?),
            "timeout" => h.timeout = Some(dur()?),
            "start_period" => h.start_period = Some(dur()?),
            "retries" => h.retries = Some(values::integer(val).map_err(|m| loc.invalid(&key, m))?),
            "disable" => h.disable = values::boolean(val).map_err(|m| loc.invalid(&key, m))?,
            _ => return Err(loc.unsupported(&key)),
        }
    }
    Ok(h)
}

fn extra_hosts(loc: &Loc<'_>, v: &Value) -> Result<Vec<(String, String)>, ComposeError> {
    let mut out = Vec::new();
    match v {
        Value::Array(_) => {
            for entry in strings(loc, "extra_hosts", v)? {
                let (host, addr) = entry
                    .split_once('=')
                    .or_else(|| entry.split_once(':'))
                    .ok_or_else(|| {
                        loc.invalid("extra_hosts", format!("{entry:?}: use HOST:ADDRESS, e.g. host.docker.internal:host-gateway"))
                    })?;
                out.push((host.to_owned(), addr.to_owned()));
            }
        }
        Value::Object(m) => {
            for (host, addr) in m {
                let addr = values::scalar_string(addr).ok_or_else(|| {
                    loc.invalid(
                        "extra_hosts",
                        format!("{host}: the address must be a string"),
                    )
                })?;
                out.push((host.clone(), addr));
            }
        }
        _ => return Err(loc.invalid("extra_hosts", "must be a list or a mapping")),
    }
    Ok(out)
}

fn depends_on(loc: &Loc<'_>, v: &Value) -> Result<BTreeMap<String, Dependency>, ComposeError> {
    let started = Dependency {
        condition: Condition::Started,
        restart: false,
        required: true,
    };
    let mut out = BTreeMap::new();
    match v {
        Value::Array(_) => {
            for name in strings(loc, "depends_on", v)? {
                out.insert(name, started.clone());
            }
        }
        Value::Object(m) => {
            for (name, spec) in m {
                let mut dep = started.clone();
                if let Value::Object(fields) = spec {
                    for (k, val) in fields {
                        let key = format!("depends_on.{name}.{k}");
                        match k.as_str() {
                            "condition" => {
                                dep.condition = match values::scalar_string(val).as_deref() {
                                    Some("service_started") => Condition::Started,
                                    Some("service_healthy") => Condition::Healthy,
                                    Some("service_completed_successfully") => {
                                        Condition::CompletedSuccessfully
                                    }
                                    _ => {
                                        return Err(loc.invalid(&key, format!("{val}: use service_started, service_healthy or service_completed_successfully")));
                                    }
                                }
                            }
                            "restart" => {
                                dep.restart =
                                    values::boolean(val).map_err(|m| loc.invalid(&key, m))?
                            }
                            "required" => {
                                dep.required =
                                    values::boolean(val).map_err(|m| loc.invalid(&key, m))?
                            }
                            _ => return Err(loc.unsupported(&key)),
                        }
                    }
                } else if !spec.is_null() {
                    return Err(loc.invalid(
                        &format!("depends_on.{name}"),
                        "must be a mapping with condition",
                    ));
                }
                out.insert(name.clone(), dep);
            }
        }
        _ => return Err(loc.invalid("depends_on", "must be a list or a mapping")),
    }
    Ok(out)
}

fn network_mode(loc: &Loc<'_>, s: &str) -> Result<NetworkMode, ComposeError> {
    Ok(match s {
        "bridge" | "default" => NetworkMode::Bridge,
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        other => match other.split_once(':') {
            Some(("service", name)) if !name.is_empty() => NetworkMode::Service(name.to_owned()),
            Some(("container", name)) if !name.is_empty() => {
                NetworkMode::Container(name.to_owned())
            }
            _ => {
                return Err(loc.invalid(
                    "network_mode",
                    format!("{other:?}: use bridge, host, none, service:NAME or container:NAME"),
                ));
            }
        },
    })
}

fn logging(loc: &Loc<'_>, v: &Value) -> Result<Logging, ComposeError> {
    let mut l = Logging::default();
    for (k, val) in object(loc, "logging", v)? {
        let key = format!("logging.{k}");
        match k.as_str() {
            "driver" => {
                l.driver = Some(
                    values::scalar_string(val)
                        .ok_or_else(|| loc.invalid(&key, "must be a string"))?,
                )
            }
            "options" => {
                l.options = key_values(loc, &key, val)?
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect()
            }
            _ => return Err(loc.unsupported(&key)),
        }
    }
    Ok(l)
}
