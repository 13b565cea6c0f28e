//! The deploy policy: what the repository's compose file may ask of Docker.
//!
//! The compose file comes from the branch the agent deploys, often on every push, and the Docker
//! engine does what it says with root's power: a bind of `/` or of the Docker socket, the host's
//! network, an added capability or an unconfined profile each hands the host to whoever can
//! push. So before `up`, `update` or `rollback` stops anything, every service is checked against
//! `[policy]` in agent.toml, which is safe by default; a violation names the service, the key, the
//! value and the setting that would allow it.
use std::{
    net::IpAddr,
    os::unix::fs::FileTypeExt,
    path::{Component, Path, PathBuf},
};

use crate::{
    compose::{
        Project,
        model::{MountKind, NetworkMode, Service},
    },
    config::{PolicyConfig, ResolvedApp, expand_home},
};

/// One thing the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub service: String,
    pub key: String,
    pub value: String,
    pub why: String,
    /// The agent.toml setting that would allow it, when one does.
    pub allow: Option<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service {}: {} {:?}: {}",
            self.service, self.key, self.value, self.why
        )?;
        match &self.allow {
            Some(setting) => write!(f, " (to allow it: {setting} in [policy] of agent.toml)"),
            None => write!(f, " (no setting allows it)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the deploy policy refuses the compose project; nothing was stopped: {}",
    .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct PolicyError(pub Vec<Violation>);

/// Where bind mounts may come from: the checkout, the snapshotted state and `bind_roots`.
pub struct Roots(Vec<PathBuf>);

impl Roots {
    pub fn for_app(app: &ResolvedApp, policy: &PolicyConfig) -> Self {
        let expanded = PolicyConfig {
            bind_roots: policy
                .bind_roots
                .iter()
                .map(|r| expand_home(r, &app.home))
                .collect(),
            ..policy.clone()
        };
        Self::new(&app.repo, &app.state_dirs, &expanded)
    }

    pub fn new(checkout: &Path, state_dirs: &[PathBuf], policy: &PolicyConfig) -> Self {
        let all = std::iter::once(checkout)
            .chain(state_dirs.iter().map(PathBuf::as_path))
            .chain(policy.bind_roots.iter().map(PathBuf::as_path));
        Self(all.map(resolve).collect())
    }

    fn contain(&self, path: &Path) -> bool {
        self.0.iter().any(|root| path.starts_with(root))
    }
}

/// Checks every service and named volume; returns warnings (public ports that are allowed).
pub fn check(
    project: &Project,
    roots: &Roots,
    policy: &PolicyConfig,
) -> Result<Vec<String>, PolicyError> {
    let mut violations = Vec::new();
    let mut warnings = Vec::new();
    for service in project.services.values() {
        check_binds(service, roots, policy, &mut violations);
        check_namespaces(service, &mut violations);
        check_privileges(service, policy, &mut violations);
        check_ports(service, policy, &mut violations, &mut warnings);
    }
    check_volume_definitions(project, roots, &mut violations);
    if violations.is_empty() {
        Ok(warnings)
    } else {
        Err(PolicyError(violations))
    }
}

fn violation(service: &str, key: &str, value: &str, why: &str, allow: Option<&str>) -> Violation {
    Violation {
        service: service.to_owned(),
        key: key.to_owned(),
        value: value.to_owned(),
        why: why.to_owned(),
        allow: allow.map(str::to_owned),
    }
}

fn check_binds(svc: &Service, roots: &Roots, policy: &PolicyConfig, out: &mut Vec<Violation>) {
    for mount in &svc.volumes {
        let MountKind::Bind(source) = &mount.kind else {
            continue;
        };
        let shown = format!("{}:{}", source.display(), mount.target);
        let resolved = resolve(source);
        if is_socket(&resolved) {
            if !policy.allow_docker_socket {
                out.push(violation(
                    &svc.name,
                    "volumes",
                    &shown,
                    "binds a Unix socket such as the Docker socket, which is root on the host",
                    Some("allow_docker_socket = true"),
                ));
            }
        } else if !roots.contain(&resolved) {
            out.push(violation(
                &svc.name,
                "volumes",
                &shown,
                &format!(
                    "{} is outside the checkout, the snapshotted state directories and bind_roots",
                    resolved.display()
                ),
                Some(&format!(
                    "bind_roots = [{:?}]",
                    resolved.display().to_string()
                )),
            ));
        }
    }
}

fn is_socket(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "docker.sock")
        || std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn check_namespaces(svc: &Service, out: &mut Vec<Violation>) {
    let (value, why) = match &svc.network_mode {
        Some(NetworkMode::Host) => ("host".to_owned(), "shares the host's network namespace"),
        Some(NetworkMode::Container(c)) => (
            format!("container:{c}"),
            "joins the namespace of a container outside the project (use service:NAME)",
        ),
        _ => return,
    };
    out.push(violation(&svc.name, "network_mode", &value, why, None));
}

fn check_privileges(svc: &Service, policy: &PolicyConfig, out: &mut Vec<Violation>) {
    let allowed: Vec<String> = policy.cap_add.iter().map(|c| cap_name(c)).collect();
    for cap in &svc.cap_add {
        if !allowed.contains(&cap_name(cap)) {
            out.push(violation(
                &svc.name,
                "cap_add",
                cap,
                "adds a capability the policy does not list",
                Some(&format!("cap_add = [{:?}]", cap_name(cap))),
            ));
        }
    }
    for opt in &svc.security_opt {
        let lower = opt.to_ascii_lowercase();
        if lower.contains("unconfined") || lower.replace(':', "=") == "label=disable" {
            out.push(violation(
                &svc.name,
                "security_opt",
                opt,
                "turns off a confinement (seccomp, AppArmor or SELinux) of the container",
                None,
            ));
        }
    }
}

/// `CAP_NET_ADMIN`, `net_admin` and `NET_ADMIN` are one capability.
fn cap_name(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned()
}

fn check_ports(
    svc: &Service,
    policy: &PolicyConfig,
    out: &mut Vec<Violation>,
    warnings: &mut Vec<String>,
) {
    for port in &svc.ports {
        if is_loopback(&port.host_ip) {
            continue;
        }
        let ip = if port.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &port.host_ip
        };
        let published = port
            .published
            .map_or_else(|| "a random port".to_owned(), |p| p.to_string());
        let shown = format!("{ip}:{published}:{}", port.target);
        if policy.allow_public_ports {
            warnings.push(format!(
                "service {}: port {published} is published on {ip}, beyond this machine (allowed \
                 by allow_public_ports); only the firewall stands between it and the network",
                svc.name
            ));
        } else {
            out.push(violation(
                &svc.name,
                "ports",
                &shown,
                "publishes a port on an address other than loopback (reach the gateway through \
                 an SSH tunnel: `clawops tunnel --gateway`)",
                Some("allow_public_ports = true"),
            ));
        }
    }
}

fn is_loopback(host_ip: &str) -> bool {
    host_ip == "localhost"
        || host_ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A named volume whose local driver binds a host path is a bind mount by another name.
fn check_volume_definitions(project: &Project, roots: &Roots, out: &mut Vec<Violation>) {
    for (name, def) in &project.volumes {
        let opts = &def.driver_opts;
        let binds = opts
            .get("o")
            .is_some_and(|o| o.split(',').any(|w| w == "bind"))
            || opts.get("type").is_some_and(|t| t == "none");
        let device = opts.get("device").map(PathBuf::from);
        let outside = match (&device, binds) {
            (Some(d), true) => !roots.contain(&resolve(d)),
            (None, true) => true,
            _ => false,
        };
        if outside {
            let shown = device.map_or_else(String::new, |d| d.display().to_string());
            out.push(violation(
                "(volumes)",
                &format!("volumes.{name}.driver_opts"),
                &shown,
                "binds a host path outside the checkout, the state directories and bind_roots",
                Some("bind_roots"),
            ));
        }
    }
}

/// The path as the kernel would reach it: symlinks resolved where the path exists (Docker
/// follows them in a bind source), `..` applied after them, the rest taken as written.
pub fn resolve(path: &Path) -> PathBuf {
    let mut current = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => current = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                current = current
                    .parent()
                    .map_or_else(|| "/".into(), Path::to_path_buf);
            }
            Component::Normal(name) => {
                current.push(name);
                if let Ok(real) = current.canonicalize() {
                    current = real;
                }
            }
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{self, LoadOptions};

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("repo/data")).unwrap();
            std::fs::create_dir_all(dir.path().join("home/.openclaw/workspace")).unwrap();
            Self { dir }
        }

        fn repo(&self) -> PathBuf {
            self.dir.path().join("repo")
        }

        fn state(&self) -> PathBuf {
            self.dir.path().join("home/.openclaw")
        }

        /// Loads `services: {gw: SERVICE}` plus `extra` through the real compose loader.
        fn check(
            &self,
            service: &str,
            extra: &str,
            policy: &PolicyConfig,
        ) -> Result<Vec<String>, PolicyError> {
            let yaml = format!("services:\n  gw:\n    image: x\n{service}{extra}");
            std::fs::write(self.repo().join("docker-compose.yml"), yaml).unwrap();
            let project = compose::load(&LoadOptions {
                dir: self.repo(),
                files: vec![],
                project_name: Some("p".into()),
                env: Default::default(),
                profiles: Vec::new(),
            })
            .unwrap();
            let roots = Roots::new(&self.repo(), &[self.state()], policy);
            check(&project, &roots, policy)
        }

        fn refused(&self, service: &str, extra: &str) -> Violation {
            match self.check(service, extra, &PolicyConfig::default()) {
                Err(PolicyError(v)) if v.len() == 1 => v[0].clone(),
                other => panic!("expected one violation for {service}{extra}, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_six_ways_to_the_host_are_refused_by_name() {
        let f = Fixture::new();
        let v = f.refused("    volumes: [\"/:/host\"]\n", "");
        assert_eq!((v.key.as_str(), v.value.as_str()), ("volumes", "/:/host"));
        assert!(v.to_string().contains("bind_roots"), "{v}");
        let v = f.refused(
            "    volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n",
            "",
        );
        assert_eq!(v.allow.as_deref(), Some("allow_docker_socket = true"));
        let v = f.refused("    network_mode: host\n", "");
        assert_eq!(
            (v.key.as_str(), v.value.as_str(), v.allow),
            ("network_mode", "host", None)
        );
        let v = f.refused("    cap_add: [ALL]\n", "");
        assert_eq!((v.key.as_str(), v.value.as_str()), ("cap_add", "ALL"));
        assert!(v.to_string().contains("cap_add = [\"ALL\"]"), "{v}");
        let v = f.refused("    security_opt: [\"seccomp=unconfined\"]\n", "");
        assert_eq!((v.key.as_str(), v.service.as_str()), ("security_opt", "gw"));
        let v = f.refused(
            "    volumes: [\"root:/host\"]\n",
            "volumes:\n  root:\n    driver_opts: {type: none, o: bind, device: /}\n",
        );
        assert_eq!(
            (v.key.as_str(), v.value.as_str()),
            ("volumes.root.driver_opts", "/")
        );
        let v = f.refused("    ports: [\"18789:18789\"]\n", "");
        assert_eq!(
            (v.key.as_str(), v.value.as_str()),
            ("ports", "0.0.0.0:18789:18789")
        );
        assert!(v.to_string().contains("allow_public_ports = true"), "{v}");
    }

    #[test]
    fn what_openclaw_needs_passes_and_settings_widen_it() {
        let f = Fixture::new();
        let state = f.state().display().to_string();
        let ok = format!(
            "    volumes: [\"./data:/data\", \"{state}:/home/node/.openclaw\", \"{state}/workspace:/w\"]\n    \
             ports: [\"127.0.0.1:18789:18789\", \"[::1]:18790:18790\"]\n    \
             network_mode: bridge\n    security_opt: [\"no-new-privileges:true\"]\n"
        );
        assert_eq!(
            f.check(&ok, "", &PolicyConfig::default()).unwrap(),
            Vec::<String>::new()
        );

        let policy = PolicyConfig {
            bind_roots: vec!["/srv/media".into()],
            allow_docker_socket: true,
            cap_add: vec!["CAP_NET_ADMIN".into()],
            allow_public_ports: true,
        };
        let wide = "    volumes: [\"/srv/media/x:/m\", \"/var/run/docker.sock:/s\"]\n    \
                    cap_add: [net_admin]\n    ports: [\"8080:80\"]\n";
        let warnings = f.check(wide, "", &policy).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("port 8080 is published on 0.0.0.0"),
            "{warnings:?}"
        );
    }

    #[test]
    fn symlinks_and_dot_dots_do_not_lead_out_of_the_checkout() {
        let f = Fixture::new();
        std::os::unix::fs::symlink("/etc", f.repo().join("etc-link")).unwrap();
        let v = f.refused("    volumes: [\"./etc-link:/x\"]\n", "");
        assert!(v.why.starts_with("/etc is outside"), "{v}");
        let v = f.refused(
            "    volumes: [\"./missing/../../../../../../etc:/x\"]\n",
            "",
        );
        assert!(v.why.starts_with("/etc is outside"), "{v}");
        // A bind under the checkout that does not exist yet (Docker creates it) is fine.
        assert!(
            f.check(
                "    volumes: [\"./new/dir:/x\"]\n",
                "",
                &PolicyConfig::default()
            )
            .is_ok()
        );
    }
}
