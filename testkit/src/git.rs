//! A bare git remote in a tempdir and a clone of it, as an operator's VM would have.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use tempfile::TempDir;

#[derive(Debug)]
pub struct GitFixture {
    _dir: TempDir,
    pub remote: PathBuf,
    /// The "developer" working copy that pushes to the remote.
    pub upstream: PathBuf,
    /// The VM's checkout (cloned from the remote) that the agent updates.
    pub checkout: PathBuf,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=clawops-test",
            "-c",
            "user.email=test@clawops.invalid",
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
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl GitFixture {
    /// An empty bare remote, an upstream clone with `files` committed and pushed, and the VM
    /// checkout cloned from the remote. The checkout's directory is named `name` (the compose
    /// project name derives from it).
    pub fn new(name: &str, files: &[(&str, &[u8])]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remote.git");
        let upstream = dir.path().join("upstream");
        let checkout = dir.path().join(name);
        std::fs::create_dir_all(&remote).unwrap();
        git(&remote, &["init", "--bare", "-q", "-b", "main"]);
        git(
            dir.path(),
            &["clone", "-q", remote.to_str().unwrap(), "upstream"],
        );
        let fixture = Self {
            _dir: dir,
            remote,
            upstream,
            checkout,
        };
        fixture.commit(files, "initial");
        git(
            fixture.checkout.parent().unwrap(),
            &["clone", "-q", fixture.remote.to_str().unwrap(), name],
        );
        fixture
    }

    /// Writes `files` into upstream, commits, pushes; returns the new sha.
    pub fn commit(&self, files: &[(&str, &[u8])], message: &str) -> String {
        for (path, contents) in files {
            let p = self.upstream.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, contents).unwrap();
            if path.ends_with(".sh") || path.ends_with("busybox") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        git(&self.upstream, &["add", "-A"]);
        git(
            &self.upstream,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.upstream, &["push", "-q", "origin", "HEAD:main"]);
        self.upstream_head()
    }

    pub fn upstream_head(&self) -> String {
        git(&self.upstream, &["rev-parse", "HEAD"])
    }

    pub fn checkout_head(&self) -> String {
        git(&self.checkout, &["rev-parse", "HEAD"])
    }

    /// Rewrites upstream history (as a force-push would) so the checkout has diverged.
    pub fn force_push_rewrite(&self, message: &str) -> String {
        git(
            &self.upstream,
            &["commit", "-q", "--amend", "--allow-empty", "-m", message],
        );
        git(
            &self.upstream,
            &["push", "-q", "--force", "origin", "HEAD:main"],
        );
        self.upstream_head()
    }
}
