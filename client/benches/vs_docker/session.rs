//! `clawops exec` and `clawops run` against the docker CLI: the latency of a trivial exec over
//! SSH (both through the same test sshd), and the throughput of 100 MB through `cat` in a
//! one-off container.
use std::{
    io::{Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use testkit::{agent::AgentProcess, sshd::Sshd};

use super::{Row, median, ms, timed};

/// What the session rows need from the bench's set-up.
pub struct Setup<'a> {
    pub clawops: &'a str,
    pub agent: &'a AgentProcess,
    /// The running gateway container.
    pub gateway: &'a str,
    /// Its compose service.
    pub service: &'a str,
    /// The image it runs.
    pub image: &'a str,
}

const THROUGHPUT_BYTES: usize = 100 * 1024 * 1024;

pub fn rows(s: &Setup<'_>) -> Vec<Row> {
    let sshd = Sshd::start();
    let ssh_options = sshd.client_options();
    let token = s.agent.token_file().display().to_string();
    let agent_port = s.agent.addr.port().to_string();
    let mut ours: Vec<String> = vec![
        s.clawops.into(),
        "--via".into(),
        sshd.url(),
        "--agent-port".into(),
        agent_port,
        "--token-file".into(),
        token,
    ];
    for o in &ssh_options {
        ours.extend(["--ssh-option".into(), o.clone()]);
    }
    ours.extend(["exec", "-T", "--", "true"].map(String::from));
    let mut theirs: Vec<String> = vec!["ssh".into(), "-p".into(), sshd.port.to_string()];
    for o in &ssh_options {
        theirs.extend(["-o".into(), o.clone()]);
    }
    theirs.extend(
        [
            &format!("{}@127.0.0.1", sshd.user),
            "docker",
            "exec",
            s.gateway,
            "true",
        ]
        .map(|a| a.to_string()),
    );
    // Warm both paths (ssh host keys, agent connection set-up) before measuring.
    timed(1, &argv(&ours), None, false);
    timed(1, &argv(&theirs), None, false);
    let exec_ours = timed(9, &argv(&ours), None, false);
    let exec_theirs = timed(9, &argv(&theirs), None, false);

    let run_ours: Vec<String> = [
        s.clawops,
        "--addr",
        &s.agent.url(),
        "--token-file",
        &s.agent.token_file().display().to_string(),
        "run",
        "-T",
        s.service,
        "--",
        "cat",
    ]
    .map(String::from)
    .to_vec();
    let run_theirs: Vec<String> = ["docker", "run", "-i", "--rm", s.image, "cat"]
        .map(String::from)
        .to_vec();
    let mut t_ours = Vec::new();
    let mut t_theirs = Vec::new();
    for _ in 0..3 {
        t_ours.push(pipe_through(&run_ours));
        t_theirs.push(pipe_through(&run_theirs));
    }
    let (t_ours, t_theirs) = (median(t_ours), median(t_theirs));
    let mb_s = |d: Duration| THROUGHPUT_BYTES as f64 / 1024.0 / 1024.0 / d.as_secs_f64();
    vec![
        Row {
            measure: "exec -- true over ssh vs ssh … docker exec CONTAINER true",
            ours: ms(exec_ours),
            theirs: ms(exec_theirs),
            ratio: format!(
                "{:.2}× faster",
                exec_theirs.as_secs_f64() / exec_ours.as_secs_f64()
            ),
            target: "≥ 1×",
            met: Some(exec_ours <= exec_theirs),
        },
        Row {
            measure: "run: 100 MiB through cat vs docker run -i --rm … cat",
            ours: format!("{} ({:.0} MiB/s)", ms(t_ours), mb_s(t_ours)),
            theirs: format!("{} ({:.0} MiB/s)", ms(t_theirs), mb_s(t_theirs)),
            ratio: format!("{:.2}×", t_theirs.as_secs_f64() / t_ours.as_secs_f64()),
            target: "≥ 0.5× docker's throughput",
            met: Some(t_ours.as_secs_f64() <= 2.0 * t_theirs.as_secs_f64()),
        },
    ]
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Pipes THROUGHPUT_BYTES through `argv` (which must echo stdin), checks every byte came back;
/// the wall time from spawn to exit.
fn pipe_through(argv: &[String]) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let block = vec![b'x'; 1024 * 1024];
        for _ in 0..THROUGHPUT_BYTES / block.len() {
            stdin.write_all(&block).unwrap();
        }
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("{argv:?}: {e}"),
        }
    }
    writer.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{argv:?}: {status}");
    assert_eq!(total, THROUGHPUT_BYTES, "{argv:?} lost bytes");
    started.elapsed()
}
