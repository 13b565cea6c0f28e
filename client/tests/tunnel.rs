//! `clawops tunnel` against a real sshd: the gateway's port (a tiny echo server on loopback
//! plays the gateway) and the agent's port forwarded to this machine, ssh's failures passed
//! through, and the tunnel gone when the command is stopped.
mod cli_home;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use cli_home::{Home, ssh_options_toml};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use testkit::{
    agent::{AgentProcess, TEST_TOKEN},
    free_port,
    sshd::Sshd,
};

/// A running `clawops tunnel`: its stdout lines, and SIGTERM (as a user's Ctrl-C would be
/// forwarded) when dropped, so no ssh outlives a failed test.
struct Tunnel {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Tunnel {
    fn start(home: &Home, args: &[&str]) -> Self {
        let mut child = home
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start clawops tunnel");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            seen: vec![],
        }
    }

    /// Waits (bounded) for a stdout line containing `text`.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {text:?} within 60s; stdout: {:?}", self.seen),
            }
        }
    }

    /// SIGTERM, then the exit code (bounded).
    fn stop(&mut self) -> Option<i32> {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("clawops tunnel did not stop within 15s of SIGTERM");
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            for _ in 0..100 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The gateway stand-in: echoes what it reads, one connection at a time.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn setup(agent_port: u16) -> (Sshd, Home) {
    let sshd = Sshd::start();
    let home = Home::new();
    home.write_config(&format!(
        "[targets.vm]\nvia = {:?}\nagent_port = {agent_port}\nssh_options = {}\n",
        sshd.url(),
        ssh_options_toml(&sshd)
    ));
    (sshd, home)
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn gateway_port_round_trips_and_closes_with_the_command() {
    let gateway = echo_server();
    let (_sshd, home) = setup(1);
    let local = free_port();
    let (gw, lp) = (gateway.to_string(), local.to_string());
    let mut tunnel = Tunnel::start(
        &home,
        &[
            "-t",
            "vm",
            "tunnel",
            "--gateway",
            "--gateway-port",
            &gw,
            "--local-port",
            &lp,
        ],
    );
    let line = tunnel.wait_for("in your browser");
    assert_eq!(
        line,
        format!("open http://127.0.0.1:{local}/ in your browser (Ctrl-C to close)")
    );
    assert!(
        !tunnel.seen.iter().any(|l| l.contains("nothing answers")),
        "{:?}",
        tunnel.seen
    );

    let mut conn = TcpStream::connect(("127.0.0.1", local)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"ping\n").unwrap();
    let mut back = [0u8; 5];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping\n");
    drop(conn);

    assert_eq!(tunnel.stop(), Some(0));
    // ssh went with it: nothing listens on the local port any more.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !refused(local) {
        assert!(Instant::now() < deadline, "127.0.0.1:{local} still open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_gateway_that_is_down_is_reported_and_the_agent_port_works_for_other_tools() {
    let agent = AgentProcess::start("");
    let (_sshd, home) = setup(agent.addr.port());

    let nothing = free_port().to_string();
    let local = free_port();
    let lp = local.to_string();
    let mut tunnel = Tunnel::start(
        &home,
        &[
            "-t",
            "vm",
            "tunnel",
            "--gateway",
            "--gateway-port",
            &nothing,
            "--local-port",
            &lp,
        ],
    );
    let line = tunnel.wait_for("nothing answers");
    assert!(line.contains(&format!("port {nothing}")), "{line}");
    tunnel.wait_for("in your browser");
    assert_eq!(tunnel.stop(), Some(0));

    // Without --gateway: the agent's port, usable with --addr.
    let local = free_port();
    let lp = local.to_string();
    let mut tunnel = Tunnel::start(&home, &["-t", "vm", "tunnel", "--local-port", &lp]);
    let line = tunnel.wait_for("the agent is at");
    assert!(
        line.contains(&format!("http://127.0.0.1:{local}")),
        "{line}"
    );
    let addr = format!("http://127.0.0.1:{local}");
    let run = home
        .command(&["--addr", &addr, "status", "--json"])
        .env("CLAWOPS_TOKEN", TEST_TOKEN)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(tunnel.stop(), Some(0));
}

#[test]
fn ssh_failures_pass_through_with_exit_3() {
    let (sshd, home) = setup(1);
    // A key the server does not know.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    home.write_config(&format!(
        "[targets.stranger]\nvia = {:?}\nssh_options = [\"IdentityFile={}\", \
         \"IdentitiesOnly=yes\", \"StrictHostKeyChecking=no\", \"UserKnownHostsFile=/dev/null\"]\n",
        sshd.url(),
        key.display()
    ));
    let local = free_port().to_string();
    let started = Instant::now();
    let run = home
        .run(&[
            "-t",
            "stranger",
            "tunnel",
            "--gateway",
            "--local-port",
            &local,
        ])
        .expect(3);
    assert!(started.elapsed() < Duration::from_secs(60));
    let stderr = run.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("ssh exited (255)") && last.contains("Permission denied"),
        "{stderr}"
    );

    // A local port in use: said before connecting, exit 2.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let run = home
        .run(&[
            "-t",
            "stranger",
            "tunnel",
            "--gateway",
            "--local-port",
            &port,
        ])
        .expect(2);
    assert!(run.stderr().contains("--local-port"), "{}", run.stderr());

    // A direct address has nothing to tunnel through.
    let run = home
        .run(&["--addr", "http://127.0.0.1:1", "tunnel", "--gateway"])
        .expect(2);
    assert!(run.stderr().contains("ssh://"), "{}", run.stderr());
    let run = home.run(&["-t", "stranger", "tunnel", "--gateway-port", "1"]);
    assert_eq!(run.code(), Some(2), "--gateway-port requires --gateway");
}

/// ssh's stdout closes the moment it exits, but its exit can be noticed later (a loaded CI
/// runner). The failed call must still wait for ssh's last words and exit 3, not report a bare
/// "transport error" with exit 1.
#[test]
fn a_tunnel_slow_to_be_reaped_is_still_explained_with_exit_3() {
    let home = Home::new();
    let dir = tempfile::tempdir().unwrap();
    let slow_ssh = dir.path().join("slow-ssh");
    // The real ssh gets stdin/stdout; the wrapper lets go of them at once but lingers 1 s.
    std::fs::write(
        &slow_ssh,
        "#!/bin/sh\nexec 3<&0 4>&1 0</dev/null 1>/dev/null\n\
         ssh \"$@\" <&3 >&4 3<&- 4>&- &\nexec 3<&- 4>&-\nwait $!\nrc=$?\nsleep 1\nexit $rc\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &slow_ssh,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let run = home
        .command(&["--via", "ssh://nobody@127.0.0.1:1", "status"])
        .env("CLAWOPS_SSH", &slow_ssh)
        .env("CLAWOPS_TOKEN", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("slow-ssh exited (255)") && stderr.contains("Connection refused"),
        "{stderr}"
    );
}
