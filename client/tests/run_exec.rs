//! `clawops run` and `clawops exec` end to end, piped: the CLI binary → gRPC → a real agent
//! process → the real engine, with a busybox gateway and a compose file whose `cli` service
//! shares the gateway's network namespace (as OpenClaw's `openclaw-cli` does).

mod session_support;

use std::{
    process::Child,
    time::{Duration, Instant},
};

use session_support::*;
use sha2::{Digest, Sha256};
use testkit::unique;

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
        err.contains("missing:1") && err.contains("Only `clawops update` pulls"),
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
