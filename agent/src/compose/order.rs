//! Project-level checks after merging: each service's final environment, references between
//! services and volumes, the project name, and the dependency order services start in.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use super::{
    ComposeError, deploy, dotenv, files,
    model::{
        DEFAULT_NETWORK, FileKind, MountKind, NetworkDef, NetworkMode, Project, Service, Vars,
        VolumeDef,
    },
    parse::Draft,
};

/// The env file's real path when it lies under the checkout or the owner's home. The agent may
/// run as root: `env_file: /etc/clawops/token` (or a symlink to it) must not read the secret.
pub(super) fn env_file_within(path: &Path, dir: &Path, home: Option<&str>) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    let roots = [Some(dir), home.map(Path::new)];
    roots
        .into_iter()
        .flatten()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|r| real.starts_with(&r))
        .then_some(real)
}

/// Resolves `env_file` + `environment` into the container's environment and checks what one
/// service needs on its own.
pub fn finalize(
    draft: Draft,
    lookup: &dyn Fn(&str) -> Option<String>,
    first_file: &Path,
    dir: &Path,
) -> Result<Service, ComposeError> {
    let mut svc = draft.svc;
    let invalid = |key: &str, message: String| ComposeError::Invalid {
        file: first_file.to_owned(),
        service: Some(svc.name.clone()),
        key: key.to_owned(),
        message,
    };
    svc.environment = environment(&svc, draft.env, lookup, dir)?;
    if svc.image.is_none() && svc.build.is_none() {
        return Err(invalid(
            "image",
            "the service has neither `image` nor `build`: give it one".into(),
        ));
    }
    if let Some(b) = &mut svc.build
        && b.context.as_os_str().is_empty()
    {
        b.context = dir.to_owned();
    }
    if let Some(NetworkMode::Service(_) | NetworkMode::Container(_) | NetworkMode::Host) =
        &svc.network_mode
        && !svc.ports.is_empty()
    {
        return Err(invalid(
            "ports",
            "cannot publish ports with this network_mode: the network stack belongs to another \
             container (or the host); publish them there"
                .into(),
        ));
    }
    deploy::apply_limits(&draft.limits, &mut svc.mem_limit, &mut svc.cpus, &invalid)?;
    if svc.network_mode.is_some() && !svc.networks.is_empty() {
        return Err(invalid(
            "networks",
            "cannot be used with network_mode: choose one of them".into(),
        ));
    }
    if svc.cpus == Some(0.0) {
        svc.cpus = None;
    }
    Ok(svc)
}

/// `env_file` entries, then `environment` over them (`None`: inherit from `lookup`).
fn environment(
    svc: &Service,
    entries: BTreeMap<String, Option<String>>,
    lookup: &dyn Fn(&str) -> Option<String>,
    dir: &Path,
) -> Result<Vars, ComposeError> {
    let mut env = Vars::new();
    for f in &svc.env_files {
        if !f.path.is_file() {
            if f.required {
                return Err(ComposeError::MissingEnvFile {
                    service: svc.name.clone(),
                    path: f.path.clone(),
                });
            }
            continue;
        }
        let path = env_file_within(&f.path, dir, lookup("HOME").as_deref()).ok_or_else(|| {
            ComposeError::EnvFileOutside {
                path: f.path.clone(),
            }
        })?;
        let text = crate::untrusted::read_text(&path, crate::untrusted::MAX_TEXT_FILE)?;
        let vars = dotenv::parse(&text, lookup).map_err(|e| ComposeError::EnvFile {
            path: f.path.clone(),
            message: e.to_string(),
        })?;
        env.extend(vars);
    }
    for (k, v) in entries {
        match v.or_else(|| lookup(&k)) {
            Some(v) => {
                env.insert(k, v);
            }
            None => {
                env.remove(&k);
            }
        }
    }
    Ok(env)
}

/// compose's rule: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub fn validate_project_name(name: &str) -> Result<(), ComposeError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ComposeError::Project(format!(
            "{name:?} is not a valid compose project name: use lowercase letters, digits, `-` and `_`, \
             starting with a letter or digit (set [app] project in agent.toml)"
        )))
    }
}

/// References between services and to volumes, networks, configs and secrets exist; there is
/// no dependency cycle. Optional dependencies (`required: false`) on missing services are
/// dropped with a warning.
pub fn check_references(project: &mut Project) -> Result<(), ComposeError> {
    let names: Vec<String> = project.services.keys().cloned().collect();
    let file = project.config_files[0].clone();
    let mut warnings = Vec::new();
    let Project {
        services,
        volumes,
        networks,
        configs,
        secrets,
        disabled_services,
        ..
    } = project;
    let refs = Refs {
        file: &file,
        names: &names,
        disabled: disabled_services,
        volumes,
        networks,
    };
    for svc in services.values_mut() {
        refs.check(svc, &mut warnings)?;
        files::resolve(
            &file,
            &svc.name,
            FileKind::Config,
            &mut svc.configs,
            configs,
        )?;
        files::resolve(
            &file,
            &svc.name,
            FileKind::Secret,
            &mut svc.secrets,
            secrets,
        )?;
    }
    project.warnings.extend(warnings);
    project.start_order(&[])?;
    Ok(())
}

/// What a service may refer to.
struct Refs<'p> {
    file: &'p Path,
    names: &'p [String],
    disabled: &'p [String],
    volumes: &'p BTreeMap<String, VolumeDef>,
    networks: &'p BTreeMap<String, NetworkDef>,
}

impl Refs<'_> {
    fn invalid(&self, svc: &Service, key: &str, message: String) -> ComposeError {
        ComposeError::Invalid {
            file: self.file.to_owned(),
            service: Some(svc.name.clone()),
            key: key.to_owned(),
            message,
        }
    }

    fn check(&self, svc: &mut Service, warnings: &mut Vec<String>) -> Result<(), ComposeError> {
        self.dependencies(svc, warnings)?;
        if let Some(NetworkMode::Service(target)) = &svc.network_mode
            && !self.names.contains(target)
        {
            let message = format!("service:{target} names an undefined service");
            return Err(self.invalid(svc, "network_mode", message));
        }
        for m in &svc.volumes {
            if let MountKind::Volume(v) = &m.kind
                && !self.volumes.contains_key(v)
            {
                let message = format!(
                    "refers to undefined volume {v:?}: declare it under the top-level `volumes:` key"
                );
                return Err(self.invalid(svc, "volumes", message));
            }
        }
        for net in svc.networks.keys() {
            if net != DEFAULT_NETWORK && !self.networks.contains_key(net) {
                let message = format!(
                    "refers to undefined network {net:?}: declare it under the top-level `networks:` key"
                );
                return Err(self.invalid(svc, "networks", message));
            }
        }
        Ok(())
    }

    /// `depends_on` names defined services; optional ones that are not are dropped with a
    /// warning.
    fn dependencies(
        &self,
        svc: &mut Service,
        warnings: &mut Vec<String>,
    ) -> Result<(), ComposeError> {
        let mut dropped = Vec::new();
        for (dep, spec) in &svc.depends_on {
            if self.names.contains(dep) {
                continue;
            }
            if spec.required {
                let message = if self.disabled.contains(dep) {
                    format!(
                        "depends on service {dep:?}, whose profiles are not enabled: add one of them to [app] profiles in agent.toml"
                    )
                } else {
                    format!(
                        "depends on undefined service {dep:?} (services: {})",
                        self.names.join(", ")
                    )
                };
                return Err(self.invalid(svc, "depends_on", message));
            }
            warnings.push(format!(
                "service {}: optional dependency {dep:?} is not defined; ignoring it",
                svc.name
            ));
            dropped.push(dep.clone());
        }
        for d in dropped {
            svc.depends_on.remove(&d);
        }
        Ok(())
    }
}

impl Project {
    /// `selected` (all services when empty) and everything they depend on, dependencies first;
    /// ties in name order so that the order is stable.
    pub fn start_order(&self, selected: &[String]) -> Result<Vec<String>, ComposeError> {
        let roots: Vec<String> = if selected.is_empty() {
            self.services.keys().cloned().collect()
        } else {
            for s in selected {
                self.require_service(s)?;
            }
            selected.to_vec()
        };
        #[derive(PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        let mut marks: HashMap<String, Mark> = HashMap::new();
        let mut out = Vec::new();
        fn visit(
            p: &Project,
            name: &str,
            marks: &mut HashMap<String, Mark>,
            out: &mut Vec<String>,
            chain: &mut Vec<String>,
        ) -> Result<(), ComposeError> {
            match marks.get(name) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    chain.push(name.to_owned());
                    return Err(ComposeError::Project(format!(
                        "dependency cycle between services: {}",
                        chain.join(" → ")
                    )));
                }
                None => {}
            }
            marks.insert(name.to_owned(), Mark::Visiting);
            chain.push(name.to_owned());
            if let Some(svc) = p.services.get(name) {
                let mut deps = svc.dependencies();
                deps.sort();
                for d in deps {
                    visit(p, d, marks, out, chain)?;
                }
            }
            chain.pop();
            marks.insert(name.to_owned(), Mark::Done);
            out.push(name.to_owned());
            Ok(())
        }
        for r in &roots {
            visit(self, r, &mut marks, &mut out, &mut Vec::new())?;
        }
        Ok(out)
    }
}
