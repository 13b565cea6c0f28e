//! An `exec` whose client goes away is killed with everything it started (the engine keeps
//! it running): by an agent that may signal it, by an unprivileged one through the engine, and
//! what an agent that cannot see it in /proc says.

mod session_support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use session_support::*;
use testkit::{agent::AgentProcess, unique};

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
    let f = fixture_with(AgentProcess::start_unprivileged).await;
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

    // Nothing else was touched, and nothing was left to warn about: both were killed from
    // inside the container (the line comes after the kill is seen to have worked).
    assert!(runs(&gateway).await);
    f.agent.wait_log_lines(
        "killed an abandoned exec from inside its container",
        2,
        Duration::from_secs(30),
    );
    let log = f.agent.log();
    assert!(!log.contains("could not be killed"), "{log}");

    // An image without `kill`: the process keeps running, and the log says so and what to do.
    let (code, _, err) = clawops(&f.agent, &["exec", "--", "rm", "/bin/kill"], b"");
    assert_eq!(code, 0, "{err}");
    let warning = abandon_an_exec_that_survives(&f).await;
    for needed in ["keep running", "no `kill` command", "kill -KILL", &gateway] {
        assert!(warning.contains(needed), "{needed:?} not in {warning}");
    }
}

/// Starts `sleep 1000` by exec in the gateway, SIGKILLs the client, waits for the agent's
/// warning that it could not be killed, and checks that it still runs; the warning.
async fn abandon_an_exec_that_survives(f: &Fixture) -> String {
    let gateway = format!("{}-gateway-1", f.project);
    let sleep = "sleep 1000";
    let mut child = command(&f.agent, &["exec", "-T", "--", "sleep", "1000"])
        .spawn()
        .unwrap();
    wait_until_running(&gateway, sleep, 1, Duration::from_secs(30)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let warning = f
        .agent
        .wait_log_line("could not be killed", Duration::from_secs(30));
    assert_eq!(running(&gateway, sleep).await, 1);
    warning
}

/// A host whose /proc hides other users' processes (hidepid): the agent cannot find what the
/// exec started, so it leaves it running and says why and what to do; a leader that is gone
/// by then would need nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_cannot_see_the_exec_in_proc_says_so() {
    let f = fixture_with(AgentProcess::start_unprivileged_with_hidden_proc).await;
    let gateway = format!("{}-gateway-1", f.project);
    let warning = abandon_an_exec_that_survives(&f).await;
    for needed in [
        "is hidden from the agent",
        "hidepid",
        "kill -KILL",
        &gateway,
    ] {
        assert!(warning.contains(needed), "{needed:?} not in {warning}");
    }
}
