//! Shared by the session tests (`run_exec.rs`, `exec_kill.rs`): a project whose busybox
//! `gateway` runs and whose compose file has a `cli` service in the gateway's network namespace
//! (as OpenClaw's `openclaw-cli` is), a real agent process for it, the CLI binary against it, a
//! tmux server for terminal sessions, and what runs in a container. Each test binary uses a
//! subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use testkit::{
    agent::{AgentProcess, client_binary},
    cleanup::ProjectGuard,
    container::ServiceContainer,
    image::{self, TestImage},
    unique,
};

pub struct Fixture {
    pub agent: AgentProcess,
    pub project: String,
    _repo: tempfile::TempDir,
    _image: TestImage,
    // Last: removes the containers before the image goes.
    _guard: ProjectGuard,
}

pub async fn fixture() -> Fixture {
    fixture_with(AgentProcess::start).await
}

/// The fixture with its agent started by `start`: an [`AgentProcess`] constructor, e.g.
/// `start_unprivileged` (as `nobody`, as the packaged agent runs as `clawops`).
pub async fn fixture_with(start: fn(&str) -> AgentProcess) -> Fixture {
    let project = unique("runexec");
    let guard = ProjectGuard::new(&project);
    let tag = format!("{project}:latest");
    let img = image::build(&tag, &[], "[\"/bin/sleep\", \"3600\"]").await;
    ServiceContainer::new(&project, "gateway", &img.tag)
        .start()
        .await;
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("compose.yaml"),
        format!(
            "services:
  gateway:
    image: {tag}
  cli:
    image: {tag}
    network_mode: \"service:gateway\"
    environment:
      GREETING: hello from compose
  ghost:
    image: {project}-missing:1
"
        ),
    )
    .unwrap();
    let config = format!(
        "[app]\nrepo = {:?}\nproject = {project:?}\nservice = \"gateway\"\n",
        repo.path().display().to_string()
    );
    // Readable by an agent that runs as another user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(repo.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = start(&config);
    Fixture {
        agent,
        project,
        _repo: repo,
        _image: img,
        _guard: guard,
    }
}

pub fn command(agent: &AgentProcess, args: &[&str]) -> Command {
    let mut cmd = agent.cli_command(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs clawops with `stdin` piped in; (exit code, stdout, stderr).
pub fn clawops(agent: &AgentProcess, args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = command(agent, args).spawn().expect("run clawops");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    // A thread, so a process that writes before it reads cannot deadlock the test.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub async fn one_offs(project: &str) -> Vec<bollard::models::ContainerSummary> {
    let docker = testkit::docker::connect().await;
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![
            format!("com.docker.compose.project={project}"),
            "com.docker.compose.oneoff=True".to_string(),
        ],
    )]);
    docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
}

pub async fn runs(container: &str) -> bool {
    let docker = testkit::docker::connect().await;
    let inspect = docker.inspect_container(container, None).await.unwrap();
    inspect.state.and_then(|s| s.running) == Some(true)
}

pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A tmux server on its own socket, killed on drop.
pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux (apt-get install tmux)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "tty"])
    }

    /// Waits until the pane shows a line satisfying `ok`.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.try_wait_for(&ok, Duration::from_secs(30))
            .unwrap_or_else(|screen| panic!("no {what} on the screen:\n{screen}"))
    }

    /// The screen once a line satisfies `ok`, or the last screen seen after `timeout`.
    pub fn try_wait_for(
        &self,
        ok: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if screen.lines().any(&ok) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                return Err(screen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "tty", "-l", line]);
        self.run(&["send-keys", "-t", "tty", "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// `clawops exec -- sh` against `agent`, quoted for a shell command line.
pub fn exec_sh_line(agent: &AgentProcess) -> String {
    let bin = client_binary();
    let token = agent.token_file();
    let url = agent.url();
    let argv = [
        bin.to_str().unwrap(),
        "--addr",
        &url,
        "--token-file",
        token.to_str().unwrap(),
        "exec",
        "--",
        "sh",
    ];
    shlex::try_join(argv).unwrap()
}

/// How many processes in `container` run exactly `cmd` (a zombie shows as `[sleep] <defunct>`).
pub async fn running(container: &str, cmd: &str) -> usize {
    let docker = testkit::docker::connect().await;
    let options = bollard::query_parameters::TopOptionsBuilder::default()
        .ps_args("-ef")
        .build();
    let top = docker
        .top_processes(container, Some(options))
        .await
        .unwrap();
    let titles = top.titles.unwrap_or_default();
    let cmd_column = titles.iter().position(|t| t == "CMD").unwrap();
    top.processes
        .unwrap_or_default()
        .iter()
        .filter(|p| p.get(cmd_column).is_some_and(|c| c == cmd))
        .count()
}

/// Waits until `count` processes in `container` run `cmd`.
pub async fn wait_until_running(container: &str, cmd: &str, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = running(container, cmd).await;
        if now == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} processes `{cmd}` in {container} after {within:?}, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
