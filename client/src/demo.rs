//! A throwaway OpenClaw-like app for the demo (and the end-to-end tests): a bare git remote, an
//! upstream working copy that "pushes", and the VM's checkout; the image is built `FROM scratch`
//! with Debian's static busybox, and a busybox script plays the gateway (prints the ready line,
//! serves `/healthz`). Nothing is pulled from a registry.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use clawops_agent::{
    config::Config,
    docker::{DockerError, Engine},
};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "busybox is not installed: `apt-get install -y busybox-static` (the demo builds its gateway image from it)"
    )]
    NoBusybox,
    #[error("git {args}: {message}")]
    Git { args: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The gateway stand-in (see the script's header for its modes); shared with the tests.
pub const GATEWAY_SH: &str = include_str!("../assets/gateway.sh");

pub const DOCKERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY gateway.sh /gateway.sh
COPY etc/ /etc/
COPY tools/ /usr/local/bin/
CMD ["/bin/sh", "/gateway.sh"]
"#;

/// The compose file of the GCP guide, trimmed to what the stand-in needs.
pub const COMPOSE: &str = r#"services:
  openclaw-gateway:
    image: ${OPENCLAW_IMAGE}
    build: .
    restart: unless-stopped
    init: true
    env_file:
      - .env
    environment:
      - HOME=/home/node
      - OPENCLAW_GATEWAY_PORT=${OPENCLAW_GATEWAY_PORT}
    volumes:
      - ${OPENCLAW_CONFIG_DIR}:/home/node/.openclaw
    ports:
      - "127.0.0.1:${OPENCLAW_GATEWAY_PORT}:18789"
"#;

/// Stand-ins for skill binaries (gog, goplaces, wacli) the image carries.
pub const SKILL_TOOLS: [(&str, &str); 3] =
    [("gog", "1.4.2"), ("goplaces", "0.9.0"), ("wacli", "2.1.0")];

#[derive(Debug)]
pub struct DemoApp {
    pub root: PathBuf,
    pub remote: PathBuf,
    pub upstream: PathBuf,
    pub checkout: PathBuf,
    /// Host port of the gateway (127.0.0.1 only).
    pub port: u16,
    /// Image repository, e.g. `clawops-demo-1a2b3c4d`; `:latest` is the compose `image:`.
    pub image_repo: String,
    /// Compose project (the checkout's directory name).
    pub project: String,
    /// Stands in for `~/.openclaw`.
    pub state_dir: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, DemoError> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=clawops demo",
            "-c",
            "user.email=demo@clawops.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| DemoError::Git {
            args: args.join(" "),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(DemoError::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)
}

fn busybox() -> Result<PathBuf, DemoError> {
    ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or(DemoError::NoBusybox)
}

fn free_port() -> Result<u16, DemoError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| DemoError::Io {
            path: "127.0.0.1:0".into(),
            source,
        })
}

impl DemoApp {
    /// Creates the repos under `root` (which must exist) with version `v1` pushed and cloned.
    pub fn create(root: &Path, id: &str) -> Result<Self, DemoError> {
        let busybox = std::fs::read(busybox()?).map_err(|source| DemoError::Io {
            path: busybox().unwrap_or_default(),
            source,
        })?;
        let project = format!("clawops-demo-{id}");
        let app = Self {
            root: root.to_owned(),
            remote: root.join("remote.git"),
            upstream: root.join("upstream"),
            checkout: root.join(&project),
            port: free_port()?,
            image_repo: project.clone(),
            state_dir: root.join("home/.openclaw"),
            project,
        };
        std::fs::create_dir_all(&app.remote).map_err(|source| DemoError::Io {
            path: app.remote.clone(),
            source,
        })?;
        git(&app.remote, &["init", "--bare", "-q", "-b", "main"])?;
        git(
            root,
            &[
                "clone",
                "-q",
                app.remote.to_str().unwrap_or_default(),
                "upstream",
            ],
        )?;
        app.write_upstream(&busybox)?;
        app.commit("v1", "ok", "v1: first version")?;
        git(
            root,
            &[
                "clone",
                "-q",
                app.remote.to_str().unwrap_or_default(),
                &app.project,
            ],
        )?;
        app.write_operator_files()?;
        Ok(app)
    }

    /// The repository's files: busybox, Dockerfile, gateway script, compose file, skill tools.
    fn write_upstream(&self, busybox: &[u8]) -> Result<(), DemoError> {
        let up = &self.upstream;
        write(&up.join("busybox"), busybox, 0o755)?;
        write(&up.join("Dockerfile"), DOCKERFILE.as_bytes(), 0o644)?;
        write(&up.join("gateway.sh"), GATEWAY_SH.as_bytes(), 0o755)?;
        write(&up.join("docker-compose.yml"), COMPOSE.as_bytes(), 0o644)?;
        write(&up.join(".dockerignore"), b".git\nREADME.md\n", 0o644)?;
        write(
            &up.join("README.md"),
            b"OpenClaw stand-in for the clawops demo\n",
            0o644,
        )?;
        // Skill binaries baked into the image, as the guide requires (see `clawops verify`).
        for (tool, version) in SKILL_TOOLS {
            write(
                &up.join("tools").join(tool),
                format!("#!/bin/sh\necho \"{tool} {version}\"\n").as_bytes(),
                0o755,
            )?;
        }
        Ok(())
    }

    /// What the operator adds to the checkout: `.env` (untracked, as in the GCP guide) and the
    /// gateway's state directory.
    fn write_operator_files(&self) -> Result<(), DemoError> {
        write(
            &self.checkout.join(".env"),
            format!(
                "OPENCLAW_IMAGE={}:latest\nOPENCLAW_GATEWAY_PORT={}\nOPENCLAW_CONFIG_DIR={}\n",
                self.image_repo,
                self.port,
                self.state_dir.display()
            )
            .as_bytes(),
            0o600,
        )?;
        std::fs::create_dir_all(&self.state_dir).map_err(|source| DemoError::Io {
            path: self.state_dir.clone(),
            source,
        })?;
        write(
            &self.state_dir.join("openclaw.json"),
            b"{\"gateway\":{\"mode\":\"local\"}}\n",
            0o644,
        )
    }

    /// Pushes a commit to the remote that makes the gateway report `version` and behave per
    /// `mode` (`ok`, `exit`, `never-ready`). Returns the new sha.
    pub fn commit(&self, version: &str, mode: &str, message: &str) -> Result<String, DemoError> {
        self.commit_files(
            &[
                ("etc/gateway/version", &format!("{version}\n")),
                ("etc/gateway/mode", &format!("{mode}\n")),
            ],
            message,
        )
    }

    /// Pushes a commit to the remote that writes `files` (paths relative to the repository).
    /// Returns the new sha.
    pub fn commit_files(&self, files: &[(&str, &str)], message: &str) -> Result<String, DemoError> {
        for (path, text) in files {
            write(&self.upstream.join(path), text.as_bytes(), 0o644)?;
        }
        git(&self.upstream, &["add", "-A"])?;
        git(&self.upstream, &["commit", "-q", "-m", message])?;
        git(&self.upstream, &["push", "-q", "origin", "HEAD:main"])?;
        git(&self.upstream, &["rev-parse", "HEAD"])
    }

    /// The agent configuration for this app.
    pub fn config(&self) -> Config {
        let mut c = Config {
            state_dir: self.root.join("agent-state"),
            ..Config::default()
        };
        c.app.repo = Some(self.checkout.clone());
        c.app.branch = "main".into();
        c.readiness.url = Some(format!("http://127.0.0.1:{}/healthz", self.port));
        c.readiness.timeout_secs = 20;
        c.snapshots.dirs = vec![self.state_dir.clone()];
        // Keep the demo's own images few: the machine may be small.
        c.build.keep_images = 2;
        // The demo must run on small machines too; the real defaults guard real VMs.
        c.build.min_free_disk_mb = 256;
        c.build.min_available_memory_mb = 0;
        c
    }

    pub fn healthz_url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.port)
    }

    /// The version the gateway reports on `/healthz` (plain HTTP/1.0 on loopback), or `None`
    /// when nothing answers.
    pub async fn served_version(&self) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        let v: serde_json::Value = serde_json::from_str(body.split("\r\n\r\n").nth(1)?).ok()?;
        v["version"].as_str().map(str::to_owned)
    }
}

/// Removes the demo project's containers and network and the images of `image_repo`.
pub async fn remove(project: &str, image_repo: &str) -> Result<(), DockerError> {
    let docker = Engine::connect().await?;
    for c in docker.project_containers(project).await? {
        docker.remove(&c.id).await?;
    }
    docker.remove_network(&format!("{project}_default")).await?;
    // Builds leave untagged images behind (replaced tags); they carry the project label.
    let label = format!("clawops.project={project}");
    let labelled = docker.list_images(Some(&label), true).await?;
    let prefix = format!("{image_repo}:");
    for image in docker.list_images(None, false).await? {
        for tag in image.repo_tags.iter().filter(|t| t.starts_with(&prefix)) {
            docker.force_remove_image(tag).await?;
        }
    }
    for image in labelled {
        // Already gone with its tags, or shared with a layer still in use: not an error.
        let _ = docker.force_remove_image(&image.id).await;
    }
    Ok(())
}
