//! `clawops run` and `clawops exec` end to end, piped: the CLI binary → gRPC → a real agent
//! process → the real engine, with a busybox gateway and a compose file whose `cli` service
//! shares the gateway's network namespace (as OpenClaw's `openclaw-cli` does).
use std::{
    io::Write,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use testkit::{
    agent::{AgentProcess, client_binary},
    cleanup::ProjectGuard,
    container::ServiceContainer,
    image::{self, TestImage},
    unique,
};

struct Fixture {
    agent: AgentProcess,
    project: String,
    _repo: tempfile::TempDir,
    _image: TestImage,
    // Last: removes the containers before the image goes.
    _guard: ProjectGuard,
}

async fn fixture() -> Fixture {
    fixture_with(false).await
}

/// `unprivileged`: the agent runs as `nobody`, as the packaged agent runs as `clawops`.
async fn fixture_with(unprivileged: bool) -> Fixture {
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
    let agent = if unprivileged {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(repo.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        AgentProcess::start_unprivileged(&config)
    } else {
        AgentProcess::start(&config)
    };
    Fixture {
        agent,
        project,
        _repo: repo,
        _image: img,
        _guard: guard,
    }
}

fn command(agent: &AgentProcess, args: &[&str]) -> Command {
    let mut cmd = Command::new(client_binary());
    cmd.args(["--addr", &agent.url(), "--token-file"])
        .arg(agent.token_file())
        .args(args)
        .env_remove("CLAWOPS_VIA")
        .env_remove("CLAWOPS_ADDR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs clawops with `stdin` piped in; (exit code, stdout, stderr).
fn clawops(agent: &AgentProcess, args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
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

async fn one_offs(project: &str) -> Vec<bollard::models::ContainerSummary> {
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

async fn runs(container: &str) -> bool {
    let docker = testkit::docker::connect().await;
    let inspect = docker.inspect_container(container, None).await.unwrap();
    inspect.state.and_then(|s| s.running) == Some(true)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_pipes_stdin_stdout_stderr_and_exit_codes_and_leaves_nothing() {
    let f = fixture().await;
    let a = &f.agent;

    let (code, out, err) = clawops(a, &["run", "cli", "--", "cat"], b"hello\nworld\n");
    assert_eq!((code, out.as_slice()), (0, &b"hello\nworld\n"[..]), "{err}");

    // The compose environment and extra -e; stderr stays separate.
    let script = "echo \"$GREETING/$EXTRA\"; echo to-stderr >&2; exit 7";
    let (code, out, err) = clawops(
        a,
        &["run", "-e", "EXTRA=x", "cli", "--", "sh", "-c", script],
        b"",
    );
    assert_eq!(code, 7, "{err}");
    assert_eq!(String::from_utf8_lossy(&out), "hello from compose/x\n");
    assert!(err.contains("to-stderr") && !err.contains("hello"), "{err}");

    // Arguments are an argv: nothing is interpreted by a shell on the way.
    let (code, out, err) = clawops(a, &["run", "cli", "echo", "$HOME", "a;b", "--x"], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out), "$HOME a;b --x\n");

    // --json: stdout stays the process's; the exit code comes last on stderr.
    let (code, out, err) = clawops(
        a,
        &["--json", "run", "cli", "--", "sh", "-c", "exit 3"],
        b"",
    );
    assert_eq!((code, out.len()), (3, 0), "{err}");
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(last["exit_code"], 3);
    let name = last["container"].as_str().unwrap();
    let suffix = name
        .strip_prefix(&format!("{}-cli-run-", f.project))
        .unwrap_or_else(|| panic!("{name}"));
    assert!(suffix.len() == 12 && suffix.chars().all(|c| c.is_ascii_hexdigit()));

    assert!(
        one_offs(&f.project).await.is_empty(),
        "one-offs left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_megabytes_through_cat_with_a_flat_agent() {
    let f = fixture().await;
    let input: Vec<u8> = (0..50 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let before = vm_hwm_kib(f.agent.pid().unwrap());
    let started = Instant::now();
    let (code, out, err) = clawops(&f.agent, &["run", "-T", "cli", "--", "cat"], &input);
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), input.len());
    assert_eq!(Sha256::digest(&out), Sha256::digest(&input));
    let after = vm_hwm_kib(f.agent.pid().unwrap());
    eprintln!(
        "50 MiB round trip through cat: {:.2}s ({:.1} MiB/s); agent peak RSS {before} KiB before, {after} KiB after",
        took.as_secs_f64(),
        100.0 / took.as_secs_f64()
    );
    // Bounded channels: the agent holds a few chunks, not the stream.
    assert!(
        after < before + 24 * 1024,
        "agent peak RSS grew from {before} to {after} KiB"
    );
    assert!(one_offs(&f.project).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_client_leaves_no_one_off_behind() {
    let f = fixture().await;
    let mut child: Child = command(&f.agent, &["run", "cli", "--", "sleep", "600"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = loop {
        let list = one_offs(&f.project).await;
        if let Some(c) = list
            .into_iter()
            .find(|c| c.state.as_ref().is_some_and(|s| s.to_string() == "running"))
        {
            break c;
        }
        assert!(Instant::now() < deadline, "the one-off never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let labels = running.labels.unwrap_or_default();
    assert_eq!(labels["com.docker.compose.service"], "cli");
    assert_eq!(labels["com.docker.compose.oneoff"], "True");
    child.kill().unwrap(); // SIGKILL: no chance to say goodbye
    child.wait().unwrap();
    let killed = Instant::now();
    while !one_offs(&f.project).await.is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the one-off outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "one-off removed {:?} after its client was killed",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_in_the_gateway_and_bad_input_touches_nothing() {
    let f = fixture().await;
    let a = &f.agent;
    let gateway = format!("{}-gateway-1", f.project);

    // The default service is [app] service; the process runs in that very container.
    let (code, out, err) = clawops(a, &["exec", "--", "cat", "/etc/hostname"], b"");
    assert_eq!(code, 0, "{err}");
    let docker = testkit::docker::connect().await;
    let inspect = docker.inspect_container(&gateway, None).await.unwrap();
    let hostname = inspect.config.unwrap().hostname.unwrap();
    assert_eq!(String::from_utf8_lossy(&out).trim(), hostname);

    let (code, out, err) = clawops(
        a,
        &["exec", "-T", "--", "sh", "-c", "cat; exit 4"],
        b"piped",
    );
    assert_eq!((code, out.as_slice()), (4, &b"piped"[..]), "{err}");

    // Bad input: clear errors, exit codes, and the gateway keeps running.
    let (code, _, err) = clawops(a, &["run", "nosuch", "--", "true"], b"");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no service \"nosuch\"") && err.contains("cli, gateway"),
        "{err}"
    );
    let (code, _, err) = clawops(a, &["run", "ghost"], b"");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("missing:1") && err.contains("never pulls"),
        "{err}"
    );
    let (code, _, err) = clawops(a, &["exec", "--service", "cli", "--", "true"], b"");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no running container") && err.contains("running: gateway"),
        "{err}"
    );
    let (code, _, err) = clawops(a, &["exec", "--tty", "--", "true"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tty needs stdin to be a terminal"), "{err}");
    let (code, _, err) = clawops(a, &["exec", "-e", "NOEQUALS", "--", "true"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("KEY=VALUE") && !err.contains("NOEQUALS"),
        "{err}"
    );
    let (code, _, err) = clawops(a, &["exec", "--", "/no/such/binary"], b"");
    assert_ne!(code, 0, "{err}");

    assert!(runs(&gateway).await);
    assert!(one_offs(&f.project).await.is_empty());
}

/// A tmux server on its own socket, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
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

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "tty"])
    }

    /// Waits until the pane shows a line satisfying `ok`.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.try_wait_for(&ok, Duration::from_secs(30))
            .unwrap_or_else(|screen| panic!("no {what} on the screen:\n{screen}"))
    }

    /// The screen once a line satisfies `ok`, or the last screen seen after `timeout`.
    fn try_wait_for(&self, ok: impl Fn(&str) -> bool, timeout: Duration) -> Result<String, String> {
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

    fn type_line(&self, line: &str) {
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
fn exec_sh_line(agent: &AgentProcess) -> String {
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

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_session_is_raw_follows_resizes_and_restores_the_terminal() {
    let f = fixture().await;
    // The pane's shell (the test's own fixed script) reports how clawops ended and what state
    // it left the terminal in.
    let script = format!(
        "{}; echo EXIT=$?; stty -a; echo STTY-DONE; sleep 60",
        exec_sh_line(&f.agent)
    );
    let tmux = Tmux {
        socket: unique("clawops-tty"),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "tty",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
        "-c",
        &script,
    ]);
    tmux.run(&["set-option", "-t", "tty", "status", "off"]);
    tmux.wait_for("prompt", |l| l.trim_end().ends_with('#'));

    tmux.type_line("echo $((6*7))");
    tmux.wait_for("42", |l| l.trim() == "42");

    tmux.run(&["resize-window", "-t", "tty", "-x", "123", "-y", "37"]);
    let size = tmux.run(&[
        "display-message",
        "-p",
        "-t",
        "tty",
        "#{pane_height} #{pane_width}",
    ]);
    let size = size.trim().to_owned();
    assert_eq!(size, "37 123");
    // The resize and the keystrokes reach the container independently: ask until the new
    // size shows.
    for asked in 1.. {
        tmux.type_line("stty size");
        match tmux.try_wait_for(|l| l.trim() == size, Duration::from_secs(3)) {
            Ok(_) => break,
            Err(screen) => assert!(asked < 10, "the new size never showed:\n{screen}"),
        }
    }

    tmux.type_line("exit 5");
    // Wait for the end marker, not EXIT=5: `stty -a` prints after it, and a capture taken
    // in between shows no flags at all.
    let screen = tmux.wait_for("stty -a output", |l| l.trim() == "STTY-DONE");
    let (_, after_exit) = screen.split_once("EXIT=5").expect("EXIT=5 on the screen");
    let flags: Vec<&str> = after_exit.split([' ', ';', '\n']).collect();
    for restored in ["icanon", "echo", "isig", "opost"] {
        assert!(
            flags.contains(&restored),
            "{restored} not restored:\n{screen}"
        );
    }
}

/// How many processes in `container` run exactly `cmd` (a zombie shows as `[sleep] <defunct>`).
async fn running(container: &str, cmd: &str) -> usize {
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
async fn wait_until_running(container: &str, cmd: &str, count: usize, within: Duration) {
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

/// Starts `sh -c` with a job in the background and one in the foreground in the gateway,
/// SIGKILLs the client and waits for both to be gone; how long that took.
async fn kill_the_client_of_sh_with_a_job(f: &Fixture) -> Duration {
    let gateway = format!("{}-gateway-1", f.project);
    let script = "sleep 1000 & sleep 1000; true";
    let mut child = command(&f.agent, &["exec", "-T", "--", "sh", "-c", script])
        .spawn()
        .unwrap();
    wait_until_running(&gateway, "sleep 1000", 2, Duration::from_secs(30)).await;
    child.kill().unwrap(); // SIGKILL: no chance to say goodbye
    child.wait().unwrap();
    let killed = Instant::now();
    wait_until_running(&gateway, "sleep 1000", 0, Duration::from_secs(30)).await;
    killed.elapsed()
}

/// An agent that may signal the processes (root, as here) kills them directly.
#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_exec_and_its_jobs_are_killed() {
    let f = fixture().await;
    kill_the_client_of_sh_with_a_job(&f).await;
    let log = f.agent.log();
    assert!(!log.contains("could not be killed"), "{log}");
    assert!(!log.contains("from inside its container"), "{log}");
    assert!(runs(&format!("{}-gateway-1", f.project)).await);
}

/// The packaged agent runs as an unprivileged user and the gateway's processes as root, so the
/// kernel refuses the agent the kill: it goes through the engine and takes along what the
/// exec started, a job in the background too, with a terminal and without.
#[tokio::test(flavor = "multi_thread")]
async fn an_unprivileged_agent_kills_everything_an_abandoned_exec_started() {
    let f = fixture_with(true).await;
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", f.agent.pid().unwrap())).unwrap();
    let field = |name: &str| -> Vec<String> {
        let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(field("Uid:"), ["65534"; 4]);
    assert_eq!(field("CapEff:"), ["0000000000000000"]);
    let gateway = format!("{}-gateway-1", f.project);
    let sleep = "sleep 1000";

    // Piped: `sh -c` with a job in the background and one in the foreground.
    let took = kill_the_client_of_sh_with_a_job(&f).await;
    eprintln!("piped exec killed {took:?} after its client");

    // A terminal: the interactive shell gives each job a process group of its own.
    let tmux = Tmux {
        socket: unique("clawops-tty"),
    };
    let script = format!("exec {}", exec_sh_line(&f.agent));
    tmux.run(&["new-session", "-d", "-s", "tty", "sh", "-c", &script]);
    tmux.wait_for("prompt", |l| l.trim_end().ends_with('#'));
    tmux.type_line("sleep 1000 &");
    tmux.type_line("sleep 1000");
    wait_until_running(&gateway, sleep, 2, Duration::from_secs(30)).await;
    let pid = tmux.run(&["display-message", "-p", "-t", "tty", "#{pane_pid}"]);
    let status = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = Instant::now();
    wait_until_running(&gateway, sleep, 0, Duration::from_secs(30)).await;
    eprintln!(
        "terminal exec killed {:?} after its client",
        killed.elapsed()
    );

    // Nothing else was touched, and nothing was left to warn about.
    assert!(runs(&gateway).await);
    let log = f.agent.log();
    assert!(!log.contains("could not be killed"), "{log}");
    assert!(
        log.contains("killed an abandoned exec from inside its container"),
        "{log}"
    );

    // An image without `kill`: the process keeps running, and the log says so and what to do.
    let (code, _, err) = clawops(&f.agent, &["exec", "--", "rm", "/bin/kill"], b"");
    assert_eq!(code, 0, "{err}");
    let mut child = command(&f.agent, &["exec", "-T", "--", "sleep", "1000"])
        .spawn()
        .unwrap();
    wait_until_running(&gateway, sleep, 1, Duration::from_secs(30)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let warning = f
        .agent
        .wait_log_line("could not be killed", Duration::from_secs(30));
    for needed in ["keep running", "no `kill` command", "kill -KILL", &gateway] {
        assert!(warning.contains(needed), "{needed:?} not in {warning}");
    }
    assert_eq!(running(&gateway, sleep).await, 1);
}
