//! docker compose, natively: load `docker-compose.yml` / `compose.yaml` (+ override) and `.env`
//! with compose's interpolation and merge rules, and turn services into Docker create options
//! labelled like compose v2, so `docker compose ps/exec/logs` see the containers.
//!
//! Public API (plain Rust types):
//! - [`load`] → [`Project`]: every supported key parsed; anything else is an error naming the key,
//!   the service and the file.
//! - [`Project::start_order`]: services with their dependencies, dependencies first.
//! - [`container_spec`] → [`ContainerSpec`]: create options + config hash for one service,
//!   for a given image (e.g. `openclaw:<sha>` during an update).
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use serde_json::Value;

pub mod create;
mod deploy;
pub mod dotenv;
mod files;
pub mod interpolate;
mod merge;
pub mod model;
mod mounts;
mod networks;
mod order;
mod parse;
mod top;
pub mod values;

pub use create::{ContainerSpec, SpecInput, container_spec, labels as compose_labels};
pub use model::*;
pub use parse::SUPPORTED_KEYS;

/// File names docker compose looks for, in its order of preference.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
pub const OVERRIDE_FILES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(
        "no compose file in {dir}: looked for {}; set [app] compose_files in agent.toml if it has another name",
        DEFAULT_FILES.join(", ")
    )]
    NoComposeFile { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{}: {}unsupported key `{key}`: clawops does not implement it and will not ignore it silently; remove it ({})",
        file.display(), service_prefix(service), supported_keys(service))]
    UnsupportedKey {
        file: PathBuf,
        service: Option<String>,
        key: String,
    },
    #[error("{}: {}`{key}`: {message}", file.display(), service_prefix(service))]
    Invalid {
        file: PathBuf,
        service: Option<String>,
        key: String,
        message: String,
    },
    #[error("{}: `{key}`: {message}", file.display())]
    Interpolation {
        file: PathBuf,
        key: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    EnvFile { path: PathBuf, message: String },
    #[error("service {service}: env_file {} does not exist (mark it `required: false` if it is optional)", path.display())]
    MissingEnvFile { service: String, path: PathBuf },
    #[error("{}: an env file outside the checkout and the owner's home; clawops reads env files only from those", path.display())]
    EnvFileOutside { path: PathBuf },
    #[error("{}: `{key}`: {} is outside the checkout (symlinks followed); configs and secrets are mounted from files in the checkout only", file.display(), path.display())]
    FileOutside {
        file: PathBuf,
        key: String,
        path: PathBuf,
    },
    #[error(transparent)]
    Untrusted(#[from] crate::untrusted::UntrustedReadError),
    #[error("{0}")]
    Project(String),
    #[error("no service {name:?} in the compose project (services: {})", available.join(", "))]
    UnknownService {
        name: String,
        available: Vec<String>,
    },
}

fn supported_keys(service: &Option<String>) -> String {
    match service {
        Some(_) => format!("supported service keys: {}", SUPPORTED_KEYS.join(", ")),
        None => "supported top-level keys: services, volumes, networks, configs, secrets, name, version, x-*".into(),
    }
}

fn service_prefix(service: &Option<String>) -> String {
    match service {
        Some(s) => format!("service {s}: "),
        None => String::new(),
    }
}

/// Variables from the process environment or `.env`, as interpolation looks them up.
pub type ShellEnv = HashMap<String, String>;

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The project directory (the repository).
    pub dir: PathBuf,
    /// Compose files, relative to `dir`; empty: the default names plus the override file.
    pub files: Vec<PathBuf>,
    /// Project name; default: `COMPOSE_PROJECT_NAME`, the file's `name:`, the directory name.
    pub project_name: Option<String>,
    /// The process environment; it takes precedence over `.env`, as in docker compose.
    pub env: ShellEnv,
    /// Enabled profiles; empty: `COMPOSE_PROFILES`, else none (services without `profiles:`).
    pub profiles: Vec<String>,
}

/// Loads, interpolates, merges and validates the project.
pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
    let dir = parse::normalize(&std::env::current_dir().unwrap_or_default().join(&opts.dir));
    let env_path = dir.join(".env");
    let dotenv_map = read_dotenv(&env_path, &dir, &opts.env)?;
    let lookup = |k: &str| opts.env.get(k).or_else(|| dotenv_map.get(k)).cloned();
    let files = config_files(&dir, &opts.files, &lookup)?;
    let mut read = Read::default();
    for file in &files {
        read_file(file, &dir, &lookup, &mut read)?;
    }
    let name = opts
        .project_name
        .clone()
        .or_else(|| lookup("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()))
        .or(read.file_name.take())
        .unwrap_or_else(|| crate::config::compose_project_name(&dir));
    order::validate_project_name(&name)?;
    let profiles = enabled_profiles(&opts.profiles, &lookup);
    let mut project = Project {
        name,
        working_dir: dir,
        env_file: env_path.is_file().then_some(env_path),
        config_files: files,
        services: BTreeMap::new(),
        volumes: std::mem::take(&mut read.volumes),
        networks: std::mem::take(&mut read.networks),
        configs: std::mem::take(&mut read.configs),
        secrets: std::mem::take(&mut read.secrets),
        disabled_services: Vec::new(),
        warnings: Vec::new(),
    };
    finalize_services(&mut project, read, &lookup, &profiles)?;
    order::check_references(&mut project)?;
    Ok(project)
}

/// What the compose files declare, file after file.
#[derive(Default)]
struct Read {
    drafts: BTreeMap<String, parse::Draft>,
    volumes: BTreeMap<String, VolumeDef>,
    networks: BTreeMap<String, NetworkDef>,
    configs: BTreeMap<String, PathBuf>,
    secrets: BTreeMap<String, PathBuf>,
    file_name: Option<String>,
    warnings: Vec<String>,
    unset: BTreeSet<String>,
}

/// The variables of the project's `.env` (none when there is no such file); it must resolve
/// inside the checkout or the owner's home.
fn read_dotenv(env_path: &Path, dir: &Path, env: &ShellEnv) -> Result<ShellEnv, ComposeError> {
    if !env_path.is_file() {
        return Ok(HashMap::new());
    }
    let home = env.get("HOME").map(String::as_str);
    let real = order::env_file_within(env_path, dir, home).ok_or_else(|| {
        ComposeError::EnvFileOutside {
            path: env_path.to_owned(),
        }
    })?;
    let text = read(&real)?;
    let vars =
        dotenv::parse(&text, &|k| env.get(k).cloned()).map_err(|e| ComposeError::EnvFile {
            path: env_path.to_owned(),
            message: e.to_string(),
        })?;
    Ok(vars.into_iter().collect())
}

/// One compose file: every top-level key interpolated and parsed into `read`.
fn read_file(
    file: &Path,
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    read: &mut Read,
) -> Result<(), ComposeError> {
    let top = match read_yaml(file)? {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        _ => {
            return Err(ComposeError::Yaml {
                path: file.to_owned(),
                message: "the top level must be a mapping with `services:`".into(),
            });
        }
    };
    for (key, mut value) in top {
        if key.starts_with("x-") {
            continue;
        }
        interpolate_value(&mut value, &mut key.clone(), lookup, &mut read.unset, file)?;
        match key.as_str() {
            "version" => read.warnings.push(format!(
                "{}: `version` is obsolete and ignored, as docker compose does",
                file.display()
            )),
            "name" => read.file_name = values::scalar_string(&value),
            "services" => read_services(file, dir, lookup, &value, &mut read.drafts)?,
            "volumes" => top::definitions(file, "volumes", &value, &mut read.volumes)?,
            "networks" => top::definitions(file, "networks", &value, &mut read.networks)?,
            "configs" => {
                files::definitions(file, dir, FileKind::Config, &value, &mut read.configs)?
            }
            "secrets" => {
                files::definitions(file, dir, FileKind::Secret, &value, &mut read.secrets)?
            }
            other => return Err(top::unsupported(file, other)),
        }
    }
    Ok(())
}

/// `services:` of one file, merged over what earlier files said.
fn read_services(
    file: &Path,
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    value: &Value,
    drafts: &mut BTreeMap<String, parse::Draft>,
) -> Result<(), ComposeError> {
    let Value::Object(services) = value else {
        return Err(invalid_top(
            file,
            "services",
            "must be a mapping of services",
        ));
    };
    let home = lookup("HOME");
    for (name, svc) in services {
        let loc = parse::Loc {
            file,
            service: name,
            base: dir,
            home: home.as_deref(),
        };
        let draft = parse::service(&loc, svc)?;
        match drafts.get_mut(name) {
            Some(base) => merge::merge(base, draft),
            None => {
                drafts.insert(name.clone(), draft);
            }
        }
    }
    Ok(())
}

/// `[app] profiles`, else `COMPOSE_PROFILES` (comma-separated), as docker compose reads it.
fn enabled_profiles(
    configured: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> BTreeSet<String> {
    if !configured.is_empty() {
        return configured.iter().cloned().collect();
    }
    lookup("COMPOSE_PROFILES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Each service's final form; services whose profiles are all disabled are left out, as
/// docker compose does. Warnings (obsolete keys, unset variables) go to the project.
fn finalize_services(
    project: &mut Project,
    read: Read,
    lookup: &dyn Fn(&str) -> Option<String>,
    profiles: &BTreeSet<String>,
) -> Result<(), ComposeError> {
    let first = project.config_files[0].clone();
    project.warnings = read.warnings;
    for name in &read.unset {
        project.warnings.push(format!(
            "the {name} variable is not set; defaulting to a blank string"
        ));
    }
    if read.drafts.is_empty() {
        return Err(ComposeError::Project(format!(
            "{}: the project has no services",
            first.display()
        )));
    }
    for (name, mut draft) in read.drafts {
        let enabled = draft.svc.profiles.is_empty()
            || draft.svc.profiles.iter().any(|p| profiles.contains(p));
        if !enabled {
            project.disabled_services.push(name);
            continue;
        }
        project.warnings.append(&mut draft.warnings);
        let svc = order::finalize(draft, lookup, &first, &project.working_dir)?;
        if svc.pull_policy == Some(PullPolicy::Always) {
            project.warnings.push(format!(
                "service {name}: pull_policy always is not followed: `clawops up` runs the image on this machine (only `clawops update` pulls, in image mode)"
            ));
        }
        project.services.insert(name, svc);
    }
    Ok(())
}

fn invalid_top(file: &Path, key: &str, message: &str) -> ComposeError {
    ComposeError::Invalid {
        file: file.to_owned(),
        service: None,
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

/// Compose files and `.env` come from the checkout: bounded, regular files only.
fn read(path: &Path) -> Result<String, ComposeError> {
    Ok(crate::untrusted::read_text(
        path,
        crate::untrusted::MAX_TEXT_FILE,
    )?)
}

fn read_yaml(path: &Path) -> Result<Value, ComposeError> {
    let text = read(path)?;
    // YAML 1.2 booleans (compose's go-yaml v3 reads `yes`/`on` as strings); tags such as
    // `!reset` are refused rather than silently dropped.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.reject_unsupported_tags = true;
    serde_saphyr::from_str_with_options::<Value>(&text, options).map_err(|e| ComposeError::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The compose files: explicit ones, `COMPOSE_FILE`, or the default name plus its override.
fn config_files(
    dir: &Path,
    explicit: &[PathBuf],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PathBuf>, ComposeError> {
    let mut chosen: Vec<PathBuf> = explicit.iter().map(|f| dir.join(f)).collect();
    if chosen.is_empty()
        && let Some(list) = lookup("COMPOSE_FILE").filter(|l| !l.is_empty())
    {
        let sep = lookup("COMPOSE_PATH_SEPARATOR").unwrap_or_else(|| ":".into());
        chosen = list.split(sep.as_str()).map(|f| dir.join(f)).collect();
    }
    if chosen.is_empty() {
        let first = DEFAULT_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file());
        let Some(first) = first else {
            return Err(ComposeError::NoComposeFile {
                dir: dir.to_owned(),
            });
        };
        chosen.push(first);
        if let Some(o) = OVERRIDE_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        {
            chosen.push(o);
        }
    }
    for f in &chosen {
        if !f.is_file() {
            return Err(ComposeError::Read {
                path: f.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
    }
    Ok(chosen.into_iter().map(|p| parse::normalize(&p)).collect())
}

/// Interpolates every string value (not keys) of `v` in place, as compose does before
/// validating types; `path` names the key for errors.
fn interpolate_value(
    v: &mut Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut BTreeSet<String>,
    file: &Path,
) -> Result<(), ComposeError> {
    match v {
        Value::String(s) => {
            let r =
                interpolate::interpolate(s, lookup).map_err(|e| ComposeError::Interpolation {
                    file: file.to_owned(),
                    key: path.clone(),
                    message: e.to_string(),
                })?;
            unset.extend(r.unset);
            *s = r.value;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate_value(item, path, lookup, unset, file)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                interpolate_value(item, path, lookup, unset, file)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}
