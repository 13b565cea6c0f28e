//! A real image registry on loopback: Debian's `docker-registry` (distribution) serving a
//! tempdir on a runtime-chosen port, optionally behind htpasswd basic auth. The engine trusts
//! 127.0.0.0/8 registries without TLS. Images are pushed with the docker CLI (its own
//! `--config` dir, never the user's), and everything the registry's images left on the engine
//! is removed on drop.
use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};

use crate::{block_on_fresh, docker, image};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry; killed, and its images removed from the engine, on drop.
#[derive(Debug)]
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    /// `(user, password)` when started with basic auth.
    pub auth: Option<(String, String)>,
}

/// An image pushed to the registry.
#[derive(Debug, Clone)]
pub struct Published {
    /// `127.0.0.1:PORT/name:tag`.
    pub reference: String,
    /// `sha256:…`, as the registry serves it.
    pub digest: String,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt: `htpasswd -B`).
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::launch(Some((user.to_owned(), password.to_owned())))
    }

    fn launch(auth: Option<(String, String)>) -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: `apt-get install -y docker-registry` (bash .ci/run does it)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = crate::free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: \
             127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = &auth {
            let htpasswd = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apt-get install -y apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(&htpasswd, out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: clawops-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = Self {
            child: None,
            dir,
            port,
            auth,
        };
        registry.restart();
        registry
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the registry (the port stops answering); its data stays for [`Registry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the registry and waits until `GET /v2/` answers.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}: {}",
                self.host(),
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Does `GET /v2/` get an HTTP answer (200, or 401 with auth)?
    fn answers(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
    }

    /// A docker CLI config dir for this registry: `docker --config DIR login` done when the
    /// registry wants auth, so `DIR/config.json` is what `[registry] auth_file` names.
    pub fn docker_config(&self) -> PathBuf {
        let dir = self.dir.path().join("docker-config");
        if dir.join("config.json").exists() {
            return dir;
        }
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        if let Some((user, password)) = &self.auth {
            let mut login = Command::new("docker")
                .arg("--config")
                .arg(&dir)
                .args(["login", "-u", user, "--password-stdin", &self.host()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("docker login");
            login
                .stdin
                .take()
                .unwrap()
                .write_all(password.as_bytes())
                .unwrap();
            let out = login.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "docker login failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    }

    /// A gateway `v1` (mode `ok`) published as `tag` in a repository of its own: its name,
    /// for later versions, and what was published.
    pub async fn publish_new_gateway(&self, tag: &str) -> (String, Published) {
        let name = crate::unique("gw");
        let v1 = self.publish_gateway(&name, &[tag], "ok", "v1").await;
        (name, v1)
    }

    /// Publishes a gateway image (`crate::gateway`) in `mode` reporting `version`.
    pub async fn publish_gateway(
        &self,
        name: &str,
        tags: &[&str],
        mode: &str,
        version: &str,
    ) -> Published {
        let files = crate::gateway::files(mode, version);
        self.publish(name, tags, &files, crate::gateway::CMD).await
    }

    /// Builds a busybox image `FROM scratch` holding `files`, pushes it as `name:TAG` for each
    /// of `tags`, and removes it from the engine again, so a deploy has to pull it.
    pub async fn publish(
        &self,
        name: &str,
        tags: &[&str],
        files: &[image::ImageFile],
        cmd: &str,
    ) -> Published {
        let repo = format!("{}/{name}", self.host());
        let reference = format!("{repo}:{}", tags[0]);
        let dir = tempfile::tempdir().unwrap();
        image::write_context(dir.path(), files, cmd);
        let id = image::build_dir(dir.path(), &reference).await;
        let mut digest = String::new();
        for tag in tags {
            let tagged = format!("{repo}:{tag}");
            self.docker(&["tag", &id, &tagged]);
            let stdout = self.docker(&["push", &tagged]);
            digest = stdout
                .split_whitespace()
                .find(|w| w.starts_with("sha256:"))
                .unwrap_or_else(|| panic!("no digest in `docker push` output: {stdout}"))
                .to_owned();
        }
        remove_image(id).await;
        Published { reference, digest }
    }

    /// Runs the docker CLI with this registry's config dir; its stdout.
    fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .arg("--config")
            .arg(self.docker_config())
            .args(args)
            .output()
            .expect("docker CLI");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "docker {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

async fn remove_image(id: String) {
    let docker = docker::connect().await;
    let options = RemoveImageOptionsBuilder::default().force(true).build();
    let _ = docker.remove_image(&id, Some(options), None).await;
}

/// Removes every image the engine holds from `host` (by tag or by digest).
pub async fn remove_images_from(host: String) {
    let docker = docker::connect().await;
    let prefix = format!("{host}/");
    let images = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(true).build()))
        .await
        .unwrap_or_default();
    for image in images {
        let ours = image
            .repo_digests
            .iter()
            .chain(image.repo_tags.iter())
            .any(|r| r.starts_with(&prefix));
        if ours {
            remove_image(image.id).await;
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        block_on_fresh(remove_images_from(self.host()));
    }
}
