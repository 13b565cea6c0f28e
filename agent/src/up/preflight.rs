//! Checks before any container is touched, so that problems surface as one clear message
//! instead of a crash loop: bind-mount sources exist (created when they are under the state
//! dirs) and are writable by the container's user — OpenClaw runs as `node` (uid 1000) and
//! EACCES on `~/.openclaw` is its most reported failure — and published host ports are free.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use futures::StreamExt;

use super::{UpError, containers::ImageInfo};
use crate::{
    compose::{Mount, MountKind, Project},
    config::ResolvedApp,
    docker::{Engine, ProjectContainer, TempContainer, models::ContainerCreateBody},
};

/// Entries of a bind directory checked for writability besides the directory itself.
const CHECK_CHILDREN: usize = 256;

/// The user a container runs as, resolved to numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUser {
    /// As written (`node`, `1000:1000`, empty for root).
    pub spec: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from `group_add`.
    pub groups: Vec<u32>,
}

/// Runs the preflight for one service; returns notes about what it did (directories created).
pub async fn preflight(
    docker: &Engine,
    app: &ResolvedApp,
    project: &Project,
    service: &str,
    image: &ImageInfo,
    existing: Option<&ProjectContainer>,
) -> Result<Vec<String>, UpError> {
    let Some(svc) = project.service(service) else {
        return Ok(Vec::new());
    };
    let mut notes = Vec::new();
    let mut user: Option<ContainerUser> = None;
    for m in &svc.volumes {
        let MountKind::Bind(source) = &m.kind else {
            continue;
        };
        if m.read_only {
            if !source.exists() {
                return Err(UpError::BindMissing {
                    service: service.to_owned(),
                    path: source.clone(),
                    target: m.target.clone(),
                    hint: format!(
                        "create it (`mkdir -p {}`) or fix the path",
                        source.display()
                    ),
                });
            }
            continue;
        }
        if user.is_none() {
            user = Some(container_user(docker, image, svc.user.as_deref(), &svc.group_add).await?);
        }
        let bind = WritableBind {
            app,
            service,
            source,
            mount: m,
            user: user.as_ref().expect("resolved above"),
        };
        notes.extend(bind.check()?);
    }
    check_ports(docker, project, service, existing).await?;
    Ok(notes)
}

/// A read-write bind mount of a service and the user its container runs as.
struct WritableBind<'a> {
    app: &'a ResolvedApp,
    service: &'a str,
    source: &'a Path,
    mount: &'a Mount,
    user: &'a ContainerUser,
}

// UpError is what every Up step returns (the async ones are not linted); these two helpers
// return it as they are.
#[allow(clippy::result_large_err)]
impl WritableBind<'_> {
    /// The source exists (created when it is under the state dirs) and the container's user
    /// can write it; a note when it was created.
    fn check(&self) -> Result<Option<String>, UpError> {
        let created = if self.source.exists() {
            None
        } else {
            Some(self.create()?)
        };
        if let Some((path, meta)) = first_unwritable(self.source, self.user) {
            let u = self.user;
            return Err(UpError::BindNotWritable {
                service: self.service.to_owned(),
                path: self.source.to_owned(),
                offender: path,
                target: self.mount.target.clone(),
                user: if u.spec.is_empty() {
                    "root".into()
                } else {
                    u.spec.clone()
                },
                uid: u.uid,
                gid: u.gid,
                owner: format!(
                    "{}:{} mode {:o}",
                    meta.uid(),
                    meta.gid(),
                    meta.mode() & 0o7777
                ),
            });
        }
        Ok(created)
    }

    /// Files the container creates should belong to the host owner when it runs as root.
    fn owner(&self) -> (u32, u32) {
        if self.user.uid == 0 {
            (self.app.uid, self.app.gid)
        } else {
            (self.user.uid, self.user.gid)
        }
    }

    fn create(&self) -> Result<String, UpError> {
        let (src, service) = (self.source, self.service);
        let (owner_uid, owner_gid) = self.owner();
        let under_state = self.app.state_dirs.iter().any(|d| src.starts_with(d));
        if !(under_state && self.mount.create_host_path) {
            return Err(UpError::BindMissing {
                service: service.to_owned(),
                path: src.to_owned(),
                target: self.mount.target.clone(),
                hint: format!(
                    "create it for the container user: `sudo mkdir -p {p} && sudo chown -R {owner_uid}:{owner_gid} {p}` \
                     (clawops creates missing directories itself only under [snapshots] dirs)",
                    p = src.display()
                ),
            });
        }
        create_owned(src, owner_uid, owner_gid).map_err(|e| UpError::Preflight(format!(
            "cannot create {} for service {service}: {e}; create it: `sudo mkdir -p {p} && sudo chown -R {owner_uid}:{owner_gid} {p}`",
            src.display(),
            p = src.display()
        )))?;
        Ok(format!(
            "created {} (owner {owner_uid}:{owner_gid})",
            src.display()
        ))
    }
}

/// `mkdir -p` that hands every directory it creates to `uid:gid`.
fn create_owned(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut p = path;
    while !p.exists() {
        missing.push(p.to_owned());
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(path)?;
    for dir in missing.iter().rev() {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// The first of `path` and its direct children that `user` could not write.
fn first_unwritable(path: &Path, user: &ContainerUser) -> Option<(PathBuf, std::fs::Metadata)> {
    if user.uid == 0 {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    if !writable(&meta, user) {
        return Some((path.to_owned(), meta));
    }
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).ok()?;
        for entry in entries.flatten().take(CHECK_CHILDREN) {
            let p = entry.path();
            if let Ok(m) = std::fs::symlink_metadata(&p)
                && !m.file_type().is_symlink()
                && !writable(&m, user)
            {
                return Some((p, m));
            }
        }
    }
    None
}

fn writable(meta: &std::fs::Metadata, user: &ContainerUser) -> bool {
    let mode = meta.mode();
    let (w, x) = if meta.uid() == user.uid {
        (0o200, 0o100)
    } else if meta.gid() == user.gid || user.groups.contains(&meta.gid()) {
        (0o020, 0o010)
    } else {
        (0o002, 0o001)
    };
    mode & w != 0 && (!meta.is_dir() || mode & x != 0)
}

/// Resolves `user` (service `user:` or the image's `USER`) to uid/gid; names go through the
/// image's /etc/passwd and /etc/group, read with the archive API (no container is started).
pub async fn container_user(
    docker: &Engine,
    image: &ImageInfo,
    service_user: Option<&str>,
    group_add: &[String],
) -> Result<ContainerUser, UpError> {
    let spec = service_user.unwrap_or(&image.user).to_owned();
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec.as_str(), None),
    };
    let mut passwd = None;
    let mut group = None;
    let needs_passwd = !(u.is_empty() || u.parse::<u32>().is_ok() && g.is_some());
    if needs_passwd {
        passwd = read_image_file(docker, &image.reference, "/etc/passwd").await?;
    }
    let needs_group = g.is_some_and(|g| g.parse::<u32>().is_err())
        || group_add.iter().any(|g| g.parse::<u32>().is_err());
    if needs_group {
        group = read_image_file(docker, &image.reference, "/etc/group").await?;
    }
    let entry = |table: &Option<String>, name: &str| -> Option<(u32, u32)> {
        table.as_deref()?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && (f[0] == name || f[2] == name))
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    };
    let group_id = |name: &str| -> Option<u32> {
        name.parse().ok().or_else(|| {
            group.as_deref()?.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[0] == name)
                    .then(|| f[2].parse().ok())
                    .flatten()
            })
        })
    };
    let (uid, default_gid) = if u.is_empty() {
        (0, 0)
    } else if let Ok(uid) = u.parse::<u32>() {
        (uid, entry(&passwd, u).map(|e| e.1).unwrap_or(0))
    } else {
        entry(&passwd, u).ok_or_else(|| UpError::Preflight(format!(
            "cannot resolve the container user {u:?} of image {}: it is not in the image's /etc/passwd; \
             set a numeric `user: UID:GID` on the service",
            image.reference
        )))?
    };
    let gid = match g {
        None | Some("") => default_gid,
        Some(g) => group_id(g).ok_or_else(|| {
            UpError::Preflight(format!(
                "cannot resolve group {g:?} of the container user in image {}; use a numeric gid",
                image.reference
            ))
        })?,
    };
    let groups = group_add.iter().filter_map(|g| group_id(g)).collect();
    Ok(ContainerUser {
        spec,
        uid,
        gid,
        groups,
    })
}

/// Reads one file from an image through a created (never started) container.
async fn read_image_file(
    docker: &Engine,
    image: &str,
    path: &str,
) -> Result<Option<String>, UpError> {
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec!["/clawops-preflight".into()]),
        entrypoint: Some(vec![String::new()]),
        network_disabled: Some(true),
        labels: Some([("clawops.preflight".to_owned(), "1".to_owned())].into()),
        ..Default::default()
    };
    let helper = TempContainer::create(docker, "clawops-preflight", "preflight", body).await?;
    let mut stream = docker.download(helper.id(), path);
    let mut tar_bytes = Vec::new();
    let mut result = Ok(());
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => tar_bytes.extend_from_slice(&b),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    helper.remove().await;
    match result {
        Ok(()) => {}
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let Ok(mut entries) = archive.entries() else {
        return Ok(None);
    };
    if let Some(Ok(mut entry)) = entries.next() {
        let mut text = String::new();
        if std::io::Read::read_to_string(&mut entry, &mut text).is_ok() {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// Published host ports must be free, unless the service's own current container holds them
/// (it is about to be replaced or kept).
async fn check_ports(
    docker: &Engine,
    project: &Project,
    service: &str,
    existing: Option<&ProjectContainer>,
) -> Result<(), UpError> {
    let Some(svc) = project.service(service) else {
        return Ok(());
    };
    let mut own = Vec::new();
    if let Some(c) = existing
        && let Ok(info) = docker.inspect_container(&c.id).await
        && let Some(map) = info.host_config.and_then(|h| h.port_bindings)
    {
        for bindings in map.values().flatten() {
            for b in bindings {
                if let Some(p) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) {
                    own.push(p);
                }
            }
        }
    }
    for p in &svc.ports {
        let Some(port) = p.published else { continue };
        if own.contains(&port) {
            continue;
        }
        let ip: IpAddr = if p.host_ip.is_empty() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            p.host_ip
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        let addr = SocketAddr::new(ip, port);
        let probe = if p.protocol == "udp" {
            std::net::UdpSocket::bind(addr).map(drop)
        } else {
            std::net::TcpListener::bind(addr).map(drop)
        };
        match probe {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let holder = docker
                    .port_holder(port)
                    .await
                    .map(|name| format!("container {name}"));
                return Err(UpError::PortInUse {
                    service: service.to_owned(),
                    port,
                    addr: addr.to_string(),
                    holder,
                });
            }
            // Not ours to judge (e.g. a privileged port when not root): docker will say.
            Err(_) => {}
        }
    }
    Ok(())
}
