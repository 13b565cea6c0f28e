//! The git CLI, run as the repository's owner with argument vectors only. Update fetches and
//! fast-forwards; it never resets, stashes or touches untracked files: whatever the operator had
//! in the checkout is still there afterwards.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::Command;

/// A fetch over a slow link can take a while; a hung one must not hold the lock forever.
const GIT_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_REF_LEN: usize = 256;

/// Whoever can write the checkout's `.git` must not get code run by the agent (possibly root):
/// no hooks, no fsmonitor command, and only the transports remotes really use (no `ext::`,
/// no plain http; tests and deployments fetch over ssh, https or a local path).
const HARDENING: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.ssh.allow=always",
    "protocol.file.allow=always",
];

/// A rebase runs nothing but git itself and touches nothing but the current branch: no
/// signing program, no stash, no other branches moved, no recorded resolutions replayed.
const REBASE_SAFETY: &[&str] = &[
    "commit.gpgSign=false",
    "rebase.autoStash=false",
    "rebase.autoSquash=false",
    "rebase.updateRefs=false",
    "rebase.backend=merge",
    "rerere.enabled=false",
    "sequence.editor=true",
];

/// The scratch worktree a rebase runs in, inside the common git directory.
const SCRATCH_WORKTREE: &str = "clawops-rebase";

/// Who the commits a rebase rewrites are committed by.
const COMMITTER: (&str, &str) = ("clawops-agent", "clawops-agent@localhost");

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{0} is not a git checkout: clone your fork there first (`git clone URL {0}`)")]
    NotARepo(String),
    #[error("git {args}: {message}")]
    Command { args: String, message: String },
    #[error("git {0} did not finish within {1}s")]
    Timeout(String, u64),
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("{0:?} is not an acceptable git ref: {1}")]
    BadRef(String, &'static str),
    #[error("{0} does not name a commit in {1} (after fetching {2})")]
    UnknownRef(String, String, String),
}

/// How the checkout's HEAD relates to the commit we want to deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Same,
    /// Target is ahead of HEAD: a fast-forward.
    Behind,
    /// HEAD has commits the target lacks, target adds nothing (local commits, or an older ref).
    Ahead,
    /// Both have commits the other lacks (e.g. upstream force-pushed).
    Diverged,
}

#[derive(Debug, Clone)]
pub struct Repo {
    path: PathBuf,
    /// uid, gid and supplementary groups to switch to (only when running as root).
    run_as: Option<(u32, u32, Vec<u32>)>,
    home: PathBuf,
}

impl Repo {
    /// `uid`/`gid`/`home`: the repository's owner. The agent switches to that user when it runs
    /// as root, so files git writes keep the owner's ownership and the owner's git/ssh config
    /// (deploy keys, known hosts) applies.
    pub fn new(path: &Path, owner: &str, uid: u32, gid: u32, home: &Path) -> Self {
        let run_as = (nix::unistd::geteuid().is_root() && uid != 0).then(|| {
            let groups = std::ffi::CString::new(owner)
                .ok()
                .and_then(|name| {
                    nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid)).ok()
                })
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_else(|| vec![gid]);
            (uid, gid, groups)
        });
        Self {
            path: path.to_owned(),
            run_as,
            home: home.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        self.git_with(&[], args).await
    }

    /// `git` with `config` (`key=value`) on top of [`HARDENING`].
    async fn git_with(&self, config: &[&str], args: &[&str]) -> Result<String, GitError> {
        let mut cmd = Command::new("git");
        // safe.directory: the agent (root or the clawops user) is not the repo's owner; this
        // trusts exactly this one repository, not all of them.
        cmd.arg("-c")
            .arg(format!("safe.directory={}", self.path.display()))
            .args(HARDENING.iter().chain(config).flat_map(|c| ["-c", c]))
            .arg("-C")
            .arg(&self.path)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            // /etc/gitconfig is not the owner's to set, and not ours to trust either.
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .env("HOME", &self.home)
            // Only a rebase commits; its commits say the agent made them, whatever identity
            // (or none) the owner configured.
            .env("GIT_COMMITTER_NAME", COMMITTER.0)
            .env("GIT_COMMITTER_EMAIL", COMMITTER.1)
            .env("GIT_EDITOR", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((uid, gid, groups)) = self.run_as.clone() {
            cmd.uid(uid).gid(gid);
            // Drop root's supplementary groups too; std's uid()/gid() keep them.
            // SAFETY: setgroups is async-signal-safe and `groups` was allocated before fork.
            unsafe {
                cmd.pre_exec(move || {
                    let list: Vec<libc::gid_t> = groups.clone();
                    if libc::setgroups(list.len(), list.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let shown = args.join(" ");
        let output = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
            .await
            .map_err(|_| GitError::Timeout(shown.clone(), GIT_TIMEOUT.as_secs()))?
            .map_err(GitError::Spawn)?;
        if output.status.success() {
            // Only the end: porcelain output starts with significant spaces.
            Ok(String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            Err(GitError::Command {
                args: shown,
                message: if message.is_empty() {
                    format!("exit status {}", output.status)
                } else {
                    message
                },
            })
        }
    }

    /// Fails with a clear message when the path is not a checkout.
    pub async fn check(&self) -> Result<(), GitError> {
        if !self.path.join(".git").exists() {
            return Err(GitError::NotARepo(self.path.display().to_string()));
        }
        self.git(&["rev-parse", "--git-dir"]).await.map(|_| ())
    }

    pub async fn head(&self) -> Result<String, GitError> {
        self.git(&["rev-parse", "--verify", "HEAD^{commit}"]).await
    }

    /// Fetches `branch` from `remote` (and its tags) and returns the remote branch's sha.
    pub async fn fetch(&self, remote: &str, branch: &str) -> Result<String, GitError> {
        validate_ref(remote)?;
        validate_ref(branch)?;
        let refspec = format!("+refs/heads/{branch}:refs/remotes/{remote}/{branch}");
        self.git(&["fetch", "--quiet", "--tags", "--", remote, &refspec])
            .await?;
        self.git(&[
            "rev-parse",
            "--verify",
            "--end-of-options",
            &format!("refs/remotes/{remote}/{branch}^{{commit}}"),
        ])
        .await
    }

    /// The sha `branch` points at on `remote`, asked of the remote without fetching anything
    /// (the watcher's cheap check); `None` when the remote has no such branch.
    pub async fn remote_head(
        &self,
        remote: &str,
        branch: &str,
    ) -> Result<Option<String>, GitError> {
        validate_ref(remote)?;
        validate_ref(branch)?;
        let wanted = format!("refs/heads/{branch}");
        let out = self
            .git(&["ls-remote", "--heads", "--", remote, &wanted])
            .await?;
        Ok(out.lines().find_map(|line| {
            let (sha, name) = line.split_once('\t')?;
            (name == wanted).then(|| sha.to_owned())
        }))
    }

    /// Resolves a sha, tag or branch name to a commit sha.
    pub async fn resolve(&self, reference: &str, fetched: &str) -> Result<String, GitError> {
        validate_ref(reference)?;
        self.git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{reference}^{{commit}}"),
        ])
        .await
        .map_err(|_| {
            GitError::UnknownRef(
                reference.to_owned(),
                self.path.display().to_string(),
                fetched.to_owned(),
            )
        })
    }

    /// Tracked files with uncommitted changes (untracked files such as `.env` do not count).
    pub async fn modified_tracked_files(&self) -> Result<Vec<String>, GitError> {
        let out = self
            .git(&["status", "--porcelain=v1", "--untracked-files=no"])
            .await?;
        Ok(out
            .lines()
            .filter(|l| l.len() > 3)
            .map(|l| l[3..].to_owned())
            .collect())
    }

    pub async fn relation(&self, head: &str, target: &str) -> Result<Relation, GitError> {
        if head == target {
            return Ok(Relation::Same);
        }
        let head_in_target = self.is_ancestor(head, target).await?;
        let target_in_head = self.is_ancestor(target, head).await?;
        Ok(match (head_in_target, target_in_head) {
            (true, _) => Relation::Behind,
            (false, true) => Relation::Ahead,
            (false, false) => Relation::Diverged,
        })
    }

    async fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, GitError> {
        match self
            .git(&["merge-base", "--is-ancestor", "--end-of-options", a, b])
            .await
        {
            Ok(_) => Ok(true),
            // Exit 1 means "no"; anything else is a real error (and carries a message).
            Err(GitError::Command { message, .. }) if message.starts_with("exit status") => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// How many commits each side has that the other lacks: (only in head, only in target).
    pub async fn divergence(&self, head: &str, target: &str) -> Result<(u32, u32), GitError> {
        let out = self
            .git(&[
                "rev-list",
                "--left-right",
                "--count",
                "--end-of-options",
                &format!("{head}...{target}"),
            ])
            .await?;
        let mut parts = out.split_whitespace().map(|n| n.parse().unwrap_or(0));
        Ok((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
    }

    /// Fast-forwards the current branch to `target` (refuses anything else).
    pub async fn fast_forward(&self, target: &str) -> Result<(), GitError> {
        self.git(&["merge", "--ff-only", "--quiet", "--end-of-options", target])
            .await
            .map(|_| ())
    }

    /// Checks out `target` detached (for `--allow-non-ff` deploys of an older or other commit).
    /// Refuses, like git does, when it would overwrite local changes.
    pub async fn checkout_detached(&self, target: &str) -> Result<(), GitError> {
        self.git(&["checkout", "--quiet", "--detach", target, "--"])
            .await
            .map(|_| ())
    }

    /// Moves the current branch back to `sha`, keeping local changes (refuses, like git, when a
    /// file it would touch has any): undoes our own fast-forward, and moves the branch to the
    /// commit a rebase made.
    pub async fn reset_keep(&self, sha: &str) -> Result<(), GitError> {
        self.git(&["reset", "--quiet", "--keep", sha, "--"])
            .await
            .map(|_| ())
    }

    /// Replays HEAD's commits that `onto` lacks on top of it, in a scratch worktree inside the
    /// git directory, so the checkout itself (HEAD, index, files) is untouched until the rebase
    /// has succeeded, and also when the agent dies half-way. The caller moves the branch to the
    /// sha of [`Rebased::Done`].
    pub async fn rebase(&self, onto: &str) -> Result<Rebased, GitError> {
        let common = self
            .git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .await?;
        let scratch = Path::new(&common).join(SCRATCH_WORKTREE);
        let scratch_arg = scratch.display().to_string();
        // One left by an agent that died during a rebase.
        let _ = self
            .git(&["worktree", "remove", "--force", "--", &scratch_arg])
            .await;
        self.git(&["worktree", "prune"]).await?;
        self.git(&[
            "worktree",
            "add",
            "--detach",
            "--quiet",
            "--",
            &scratch_arg,
            "HEAD",
        ])
        .await?;
        let worktree = Repo {
            path: scratch.clone(),
            ..self.clone()
        };
        let result = worktree.rebase_here(onto).await;
        let removed = self
            .git(&["worktree", "remove", "--force", "--", &scratch_arg])
            .await;
        let rebased = result?;
        removed?;
        Ok(rebased)
    }

    async fn rebase_here(&self, onto: &str) -> Result<Rebased, GitError> {
        let args = [
            "rebase",
            "--quiet",
            "--no-verify",
            "--no-autostash",
            "--no-autosquash",
            "--no-gpg-sign",
            "--end-of-options",
            onto,
        ];
        let failure = match self.git_with(REBASE_SAFETY, &args).await {
            Ok(_) => return Ok(Rebased::Done(self.head().await?)),
            Err(e) => e,
        };
        if !self.rebase_in_progress().await? {
            return Err(failure);
        }
        let conflicts = self
            .git(&["diff", "--name-only", "--diff-filter=U", "-z"])
            .await
            .unwrap_or_default();
        self.git_with(REBASE_SAFETY, &["rebase", "--abort"]).await?;
        let mut files: Vec<String> = conflicts
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        files.sort();
        files.dedup();
        Ok(Rebased::Conflict(files))
    }

    /// Whether a rebase (ours, or one the operator left) is stopped in the checkout.
    pub async fn rebase_in_progress(&self) -> Result<bool, GitError> {
        for dir in ["rebase-merge", "rebase-apply"] {
            let path = self.git(&["rev-parse", "--git-path", dir]).await?;
            if self.path.join(path).exists() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Porcelain v2 status (branch header, changes, untracked files): two equal answers mean
    /// the checkout's HEAD, index and working tree are as they were.
    pub async fn status_v2(&self) -> Result<String, GitError> {
        self.git(&[
            "status",
            "--porcelain=v2",
            "--branch",
            "--untracked-files=all",
        ])
        .await
    }

    pub async fn checkout_branch(&self, branch: &str) -> Result<(), GitError> {
        self.git(&["checkout", "--quiet", branch, "--"])
            .await
            .map(|_| ())
    }

    pub async fn current_branch(&self) -> Result<Option<String>, GitError> {
        match self
            .git(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .await
        {
            Ok(b) => Ok(Some(b)),
            Err(GitError::Command { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// How a rebase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebased {
    /// The rebased commit.
    Done(String),
    /// Aborted; the files that conflicted.
    Conflict(Vec<String>),
}

/// Refuses refs that git could read as options or that are not valid ref names, before they
/// reach a command line.
pub fn validate_ref(reference: &str) -> Result<(), GitError> {
    let bad = |why| Err(GitError::BadRef(reference.to_owned(), why));
    if reference.is_empty() {
        return bad("empty");
    }
    if reference.len() > MAX_REF_LEN {
        return bad("longer than 256 characters");
    }
    if reference.starts_with('-') {
        return bad("starts with '-'");
    }
    if reference.contains("..")
        || reference.contains("@{")
        || reference.ends_with('/')
        || reference.ends_with(".lock")
        || reference.ends_with('.')
        || reference.starts_with('/')
        || reference.contains("//")
    {
        return bad("not a valid ref name (see `git check-ref-format`)");
    }
    if reference
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\;$`'\"|&<>(){}!".contains(c))
    {
        return bad("contains a character git refs cannot have");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hooks and an fsmonitor command planted in the checkout's `.git` never run on update.
    #[tokio::test]
    async fn fetch_and_merge_run_no_hooks_or_fsmonitor() {
        use std::os::unix::fs::PermissionsExt;
        let fx = testkit::git::GitFixture::new("hooks", &[("a.txt", b"1")]);
        let marker = fx.checkout.parent().unwrap().join("ran");
        let script = format!("#!/bin/sh\necho \"$0\" >> {}\n", marker.display());
        let hooks = fx.checkout.join(".git/hooks");
        let monitor = fx.checkout.parent().unwrap().join("monitor.sh");
        for p in [
            hooks.join("post-merge"),
            hooks.join("post-checkout"),
            hooks.join("reference-transaction"),
            monitor.clone(),
        ] {
            std::fs::write(&p, &script).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let monitor = monitor.to_str().unwrap();
        testkit::git::git(&fx.checkout, &["config", "core.fsmonitor", monitor]);
        let first = fx.checkout_head();
        let target = fx.commit(&[("a.txt", b"2")], "second");

        let home = fx.checkout.parent().unwrap();
        let repo = Repo::new(&fx.checkout, "root", 0, 0, home);
        assert_eq!(repo.fetch("origin", "main").await.unwrap(), target);
        repo.modified_tracked_files().await.unwrap();
        repo.fast_forward(&target).await.unwrap();
        repo.checkout_detached(&first).await.unwrap();
        assert_eq!(repo.head().await.unwrap(), first);
        assert!(
            !marker.exists(),
            "ran: {}",
            std::fs::read_to_string(&marker).unwrap_or_default()
        );
    }

    /// `ext::` would run a command from a remote URL; plain http is off too.
    #[tokio::test]
    async fn only_ssh_https_and_local_transports() {
        let fx = testkit::git::GitFixture::new("transports", &[("a.txt", b"1")]);
        let marker = fx.checkout.parent().unwrap().join("ext-ran");
        let url = format!("ext::sh -c touch% {}", marker.display());
        testkit::git::git(&fx.checkout, &["remote", "add", "evil", &url]);
        testkit::git::git(
            &fx.checkout,
            &["remote", "add", "plain", "http://127.0.0.1:9/x"],
        );
        let home = fx.checkout.parent().unwrap();
        let repo = Repo::new(&fx.checkout, "root", 0, 0, home);
        for remote in ["evil", "plain"] {
            let err = repo.fetch(remote, "main").await.unwrap_err();
            assert!(err.to_string().contains("not allowed"), "{err}");
        }
        assert!(!marker.exists());
    }

    #[test]
    fn hostile_refs_are_refused() {
        for r in [
            "--upload-pack=x",
            ";rm -rf /",
            "a..b",
            "x y",
            "",
            "main.lock",
            "$(id)",
            "a`b`",
            &"x".repeat(300),
        ] {
            assert!(validate_ref(r).is_err(), "{r:?} accepted");
        }
        for r in ["main", "v1.2.3", "feature/x", "0123abcd", "origin"] {
            validate_ref(r).unwrap();
        }
    }
}
