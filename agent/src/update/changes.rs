//! What an update changes in what the repository asks of the VM.
//!
//! The deploy policy (crate::policy) bounds what any commit may ask for; within those bounds, a
//! commit that widens access (a new bind, capability, port, user, network mode, confinement
//! option or base image) is shown, and deployed only with `update --accept-changes`, so that a
//! person sees it before it runs with the VM's Docker engine.
use std::{collections::BTreeSet, path::Path};

use super::short;
use crate::compose::{
    Project,
    model::{MountKind, ResourceDef, Service},
};

/// A Dockerfile larger than this is not read for its `FROM` lines.
const MAX_DOCKERFILE: u64 = 1 << 20;

/// The security-relevant facts of a compose project and its Dockerfiles, one line each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Profile(BTreeSet<String>);

impl Profile {
    pub fn of(project: &Project) -> Self {
        let mut facts = BTreeSet::new();
        for svc in project.services.values() {
            service_facts(svc, &mut facts);
        }
        for (name, def) in &project.networks {
            let how = if def.external {
                "external".to_owned()
            } else {
                driver(def, "bridge")
            };
            facts.insert(format!("network {}: {how}", project.network_name(name)));
        }
        for (name, def) in &project.volumes {
            if !def.driver_opts.is_empty() || def.driver.is_some() {
                facts.insert(format!("volume {name}: {}", driver(def, "local")));
            }
        }
        Profile(facts)
    }

    /// The facts of `after` that `self` did not have: what the change widens.
    pub fn widened_by(&self, after: &Profile) -> Vec<String> {
        after.0.difference(&self.0).cloned().collect()
    }
}

/// A network's or volume's driver and its options, sorted, as one fact.
fn driver(def: &ResourceDef, default: &str) -> String {
    let mut opts: Vec<String> = def
        .driver_opts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    opts.sort();
    let name = def.driver.as_deref().unwrap_or(default);
    format!("driver {name} {}", opts.join(","))
}

fn service_facts(svc: &Service, facts: &mut BTreeSet<String>) {
    let name = &svc.name;
    facts.insert(format!("service {name}"));
    for mount in &svc.volumes {
        if let MountKind::Bind(source) = &mount.kind {
            let mode = if mount.read_only { "ro" } else { "rw" };
            facts.insert(format!(
                "{name}: binds {} at {} ({mode})",
                source.display(),
                mount.target
            ));
        }
    }
    for net in svc.networks.keys() {
        facts.insert(format!("{name}: joins network {net}"));
    }
    for f in svc.configs.iter().chain(&svc.secrets) {
        facts.insert(format!(
            "{name}: mounts {} at {} (ro)",
            f.file.display(),
            f.target
        ));
    }
    for cap in &svc.cap_add {
        facts.insert(format!(
            "{name}: adds capability {}",
            cap.to_ascii_uppercase()
        ));
    }
    for port in &svc.ports {
        let ip = if port.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &port.host_ip
        };
        let published = port.published.map_or("*".to_owned(), |p| p.to_string());
        facts.insert(format!(
            "{name}: publishes {ip}:{published} → {}/{}",
            port.target, port.protocol
        ));
    }
    facts.insert(format!(
        "{name}: runs as {}",
        svc.user.as_deref().unwrap_or("the image's user")
    ));
    if let Some(mode) = &svc.network_mode {
        facts.insert(format!("{name}: network mode {mode:?}"));
    }
    for opt in &svc.security_opt {
        facts.insert(format!("{name}: security option {opt}"));
    }
    if let Some(build) = &svc.build {
        let dockerfile = build
            .context
            .join(build.dockerfile.as_deref().unwrap_or("Dockerfile"));
        for base in base_images(&dockerfile) {
            facts.insert(format!("{name}: built FROM {base}"));
        }
    } else if let Some(image) = &svc.image {
        facts.insert(format!("{name}: image {image}"));
    }
}

/// The `FROM` images of a Dockerfile (stage names and flags left out), read without following a
/// symlink and only up to [`MAX_DOCKERFILE`]: it is the repository's file.
fn base_images(path: &Path) -> Vec<String> {
    let Ok(text) = crate::untrusted::read_text(path, MAX_DOCKERFILE) else {
        return vec![format!("(unreadable Dockerfile {})", path.display())];
    };
    text.lines()
        .map(str::trim)
        .filter(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case("from "))
        .filter_map(|l| l[5..].split_whitespace().find(|w| !w.starts_with("--")))
        .map(str::to_owned)
        .collect()
}

/// The error when a change widens access and was not accepted.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} widens what the repository asks of this VM, so it was not deployed (the checkout is back \
     at {}, nothing was stopped): {}. Review the change, then deploy it with `clawops update \
     --accept-changes`",
    short(.target), short(.deployed), .changes.join("; ")
)]
pub struct Unaccepted {
    pub deployed: String,
    pub target: String,
    pub changes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{self, LoadOptions};

    fn profile(dir: &Path, compose: &str, dockerfile: &str) -> Profile {
        std::fs::write(dir.join("docker-compose.yml"), compose).unwrap();
        std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
        let project = compose::load(&LoadOptions {
            dir: dir.to_owned(),
            files: vec![],
            project_name: Some("p".into()),
            env: Default::default(),
            profiles: Vec::new(),
        })
        .unwrap();
        Profile::of(&project)
    }

    const BASE: &str = "services:\n  gw:\n    build: .\n    image: gw\n    volumes: [\"./data:/data\"]\n    ports: [\"127.0.0.1:18789:18789\"]\n";

    #[test]
    fn widening_changes_are_listed_and_narrowing_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let before = profile(
            d,
            BASE,
            "FROM node:22 AS build\nRUN x\nFROM --platform=linux/amd64 node:22-slim\n",
        );
        assert_eq!(before.widened_by(&before.clone()), Vec::<String>::new());

        let wider = BASE.replace(
            "    ports:",
            "    cap_add: [net_admin]\n    user: root\n    volumes: [\"./data:/data\", \"./secrets:/s:ro\"]\n    ports:",
        ).replacen("    volumes: [\"./data:/data\"]\n", "", 1);
        let after = profile(d, &wider, "FROM node:22 AS build\nFROM evil/node:22\n");
        let widened = before.widened_by(&after);
        let text = widened.join("\n");
        for fact in [
            "adds capability NET_ADMIN",
            "runs as root",
            "binds",
            "/s (ro)",
            "built FROM evil/node:22",
        ] {
            assert!(text.contains(fact), "{fact}: {text}");
        }
        assert!(
            !text.contains("node:22-slim"),
            "a removed base image is not a widening: {text}"
        );
        // The reverse change only narrows.
        assert!(
            after
                .widened_by(&before)
                .iter()
                .all(|f| !f.contains("capability"))
        );
    }

    #[test]
    fn dockerfiles_are_read_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("Dockerfile")).unwrap();
        let facts = base_images(&dir.path().join("Dockerfile"));
        assert_eq!(facts.len(), 1);
        assert!(facts[0].starts_with("(unreadable Dockerfile"), "{facts:?}");
    }
}
