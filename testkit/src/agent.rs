//! `clawops-agent` as a real process on a random loopback port, with its own token and state.
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// The built agent binary: `CLAWOPS_AGENT_BIN`, else next to the test executable's target dir
/// (built on demand when a single-package test run did not build it).
pub fn agent_binary() -> PathBuf {
    binary("clawops-agent", "CLAWOPS_AGENT_BIN", "clawops-agent")
}

/// The built CLI binary (`CLAWOPS_BIN` overrides).
pub fn client_binary() -> PathBuf {
    binary("clawops", "CLAWOPS_BIN", "clawops")
}

fn binary(name: &str, env: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let path = profile_dir.join(name);
    // Once per process, let cargo make sure the binary is current: a test or bench of one
    // package does not rebuild another package's binaries, and a stale one would test old code.
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", package, "--bin", name]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build");
        assert!(status.success(), "building {name} failed");
        built.push(name.to_owned());
    }
    path
}

pub const TEST_TOKEN: &str = "test-token-0123456789abcdef";

#[derive(Debug)]
pub struct AgentProcess {
    child: Option<Child>,
    dir: TempDir,
    pub addr: SocketAddr,
    pub token: String,
    pub config_path: PathBuf,
    log: Arc<Mutex<String>>,
    run_as: RunAs,
}

/// Who the agent runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunAs {
    /// The test's user.
    Tester,
    /// [`NOBODY`], see [`AgentProcess::start_unprivileged`].
    Nobody,
    /// [`NOBODY`] seeing a /proc that hides other users' processes.
    NobodyHiddenProc,
}

/// In a mount namespace of its own (`unshare --mount`): a /proc that shows each user only its
/// own processes, then the rest of the argv. The test's fixed script; nothing is interpolated.
const HIDE_PROC: &str = "mount -t proc -o hidepid=invisible proc /proc && exec \"$@\"";

/// The uid and gid [`AgentProcess::start_unprivileged`] runs the agent as (`nobody`).
pub const NOBODY: u32 = 65534;

impl AgentProcess {
    /// Starts an agent whose config is `listen`, `token_file`, `state_dir` followed by `extra`
    /// (which must consist of `[tables]`, since top-level keys would land in the previous table).
    pub fn start(extra: &str) -> Self {
        Self::create(extra, RunAs::Tester)
    }

    /// [`Self::start`] as `nobody` ([`NOBODY`]) with the Docker socket's group and no
    /// capabilities, as the packaged agent runs as the unprivileged `clawops` user: the kernel
    /// refuses it what only root may do. Paths in `extra` must be readable by `nobody`.
    pub fn start_unprivileged(extra: &str) -> Self {
        Self::create(extra, RunAs::Nobody)
    }

    /// [`Self::start_unprivileged`] with /proc mounted `hidepid=invisible`, as on a host that
    /// hides processes from other users: the agent sees none of the containers' processes.
    pub fn start_unprivileged_with_hidden_proc(extra: &str) -> Self {
        Self::create(extra, RunAs::NobodyHiddenProc)
    }

    fn create(extra: &str, run_as: RunAs) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TEST_TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config_path = dir.path().join("agent.toml");
        std::fs::write(
            &config_path,
            format!(
                "listen = \"127.0.0.1:0\"\ntoken_file = {:?}\nstate_dir = {:?}\n{extra}\n",
                token_file.display().to_string(),
                dir.path().join("state").display().to_string(),
            ),
        )
        .unwrap();
        let mut agent = Self {
            child: None,
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            token: TEST_TOKEN.into(),
            config_path,
            log: Arc::default(),
            run_as,
        };
        if run_as != RunAs::Tester {
            for path in [
                agent.dir().to_owned(),
                agent.token_file(),
                agent.config_path.clone(),
            ] {
                std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
            }
        }
        agent.spawn();
        agent
    }

    /// Starts an agent with `config`, a whole agent config (`clawops_agent::config::Config`),
    /// of which `listen`, `token_file` and `state_dir` are left to [`Self::start`].
    pub fn start_with(config: &impl serde::Serialize) -> Self {
        Self::start(&extra_toml(config))
    }

    /// Runs the `clawops` CLI against this agent with `args`; the token comes from its file.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_command(args).output().expect("run clawops")
    }

    /// The `clawops` CLI aimed at this agent (`--addr`, `--token-file`) with `args`, whatever
    /// `CLAWOPS_*` target or token the test's environment holds.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(client_binary());
        cmd.args(["--addr", &self.url(), "--token-file"])
            .arg(self.token_file())
            .args(args)
            .env_remove("CLAWOPS_TOKEN")
            .env_remove("CLAWOPS_VIA")
            .env_remove("CLAWOPS_ADDR");
        cmd
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the agent logged so far (JSON lines).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The first log line containing `text`, waiting up to `timeout` for it: lines reach the
    /// log through a reader thread, after what the agent did that made it write them.
    pub fn wait_log_line(&self, text: &str, timeout: Duration) -> String {
        self.wait_log_lines(text, 1, timeout).swap_remove(0)
    }

    /// The first `count` log lines containing `text`, waiting up to `timeout` for them.
    pub fn wait_log_lines(&self, text: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains(text))
                .take(count)
                .map(str::to_owned)
                .collect();
            if lines.len() == count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} {text:?} lines in the agent's log within {timeout:?}:\n{log}",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent binary, or for [`NOBODY`] through `setpriv` (util-linux), after `unshare` and
    /// [`HIDE_PROC`] for a hidden /proc.
    fn command(&self) -> Command {
        let mut cmd = match self.run_as {
            RunAs::Tester => return Command::new(agent_binary()),
            RunAs::Nobody => Command::new("setpriv"),
            RunAs::NobodyHiddenProc => {
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private", "--"])
                    .args(["sh", "-c", HIDE_PROC, "sh", "setpriv"]);
                cmd
            }
        };
        cmd.arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg(format!("--groups={}", docker_socket_gid()))
            .arg("--")
            .arg(self.binary_for_nobody())
            .env("HOME", self.dir());
        cmd
    }

    /// The built binary when `nobody` can reach it, else a copy in the agent's directory.
    fn binary_for_nobody(&self) -> PathBuf {
        use std::os::unix::fs::MetadataExt;
        let built = agent_binary();
        let reachable = built.ancestors().all(|p| {
            p.as_os_str().is_empty() || std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0)
        });
        if reachable {
            return built;
        }
        let copy = self.dir().join("clawops-agent");
        if !copy.exists() {
            std::fs::copy(&built, &copy).unwrap();
        }
        copy
    }

    fn spawn(&mut self) {
        let mut child = self
            .command()
            .arg("--config")
            .arg(&self.config_path)
            .args(["--log-format", "json"])
            .env("CLAWOPS_LOG", "info,clawops_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start clawops-agent");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => self.addr = addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                panic!("the agent did not start ({status:?}):\n{}", self.log());
            }
        }
        self.child = Some(child);
    }

    /// `kill -9`, as a crash or the OOM killer would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills (if running) and starts again with the same config, token and state.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Stops it with SIGTERM (as a VM shutdown does) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix_kill(child.id());
            let _ = child.wait();
        }
    }

    /// Starts it again (after [`Self::stop`] or [`Self::kill9`]) on the same address, as the
    /// agent on a rebooted VM listens where it did before.
    pub fn start_again_on_same_port(&mut self) {
        let config = std::fs::read_to_string(&self.config_path).unwrap();
        let listen = format!("listen = \"{}\"", self.addr);
        let config: Vec<String> = config
            .lines()
            .map(|l| {
                if l.starts_with("listen = ") {
                    listen.clone()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        std::fs::write(&self.config_path, config.join("\n") + "\n").unwrap();
        self.spawn();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A whole agent config as the `extra` part of [`AgentProcess::start`], which sets `listen`,
/// `token_file` and `state_dir` itself.
pub fn extra_toml(config: &impl serde::Serialize) -> String {
    let mut value = toml::Value::try_from(config).expect("a config toml can hold");
    let table = value.as_table_mut().expect("a config is a table");
    for key in ["listen", "token_file", "state_dir"] {
        table.remove(key);
    }
    toml::to_string(&value).expect("toml text")
}

/// The group owning the engine's socket (`DOCKER_HOST` or the default), which lets a user
/// reach it.
fn docker_socket_gid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("the Docker socket {path}: {e}"))
        .gid()
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // SIGTERM first so a running operation can finish its journal entry.
            let _ = nix_kill(child.id());
            for _ in 0..50 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}
