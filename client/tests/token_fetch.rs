//! `clawops token fetch` through a real sshd (the fixture runs as the current user, so the
//! remote path points at the agent's own token file and `--no-sudo` reads it), and the
//! `gcloud://` form through a fake `gcloud` on PATH that records its argv and plays `gcloud
//! compute ssh` by running ssh to the fixture.
mod cli_home;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use cli_home::{Home, ssh_options_toml};
use testkit::{
    agent::{AgentProcess, TEST_TOKEN},
    sshd::Sshd,
    standin::recorded,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn vm_config(home: &Home, sshd: &Sshd, agent: &AgentProcess) {
    home.write_config(&format!(
        "[targets.vm]\nvia = {:?}\nagent_port = {}\nssh_options = {}\n",
        sshd.url(),
        agent.addr.port(),
        ssh_options_toml(sshd)
    ));
}

#[test]
fn fetch_over_ssh_writes_a_private_file_that_works() {
    let agent = AgentProcess::start("");
    let sshd = Sshd::start();
    let home = Home::new();
    vm_config(&home, &sshd, &agent);
    let remote = agent.token_file().display().to_string();

    let run = home
        .run(&[
            "token",
            "fetch",
            "-t",
            "vm",
            "--no-sudo",
            "--remote-path",
            &remote,
        ])
        .expect(0);
    let saved = home.clawops_dir().join("tokens/vm");
    let out = run.stdout();
    assert!(
        out.contains(&saved.display().to_string()) && out.contains("accepts it"),
        "{out}"
    );
    assert!(
        !out.contains(TEST_TOKEN),
        "the token is never printed: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(&saved).unwrap(),
        format!("{TEST_TOKEN}\n")
    );
    assert_eq!(mode(&saved), 0o600);
    assert_eq!(mode(saved.parent().unwrap()), 0o700);
    let run = home.run(&["-t", "vm", "status", "--json"]).expect(0);
    let json: serde_json::Value = serde_json::from_slice(&run.0.stdout).unwrap();
    assert_eq!(json["agent_version"], env!("CARGO_PKG_VERSION"));

    // --json, and a second fetch replaces the file in place.
    let run = home
        .run(&[
            "token",
            "fetch",
            "-t",
            "vm",
            "--no-sudo",
            "--remote-path",
            &remote,
            "--json",
        ])
        .expect(0);
    let json: serde_json::Value = serde_json::from_slice(&run.0.stdout).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["target"], "vm");
    assert_eq!(json["path"], saved.display().to_string());
    assert_eq!(mode(&saved), 0o600);

    // The default reads with `sudo -n`: where sudo is missing, the error says what to do.
    let run = home.run(&["token", "fetch", "-t", "vm", "--remote-path", &remote]);
    if which("sudo").is_some() {
        run.expect(0);
    } else {
        let run = run.expect(1);
        assert!(run.stderr().contains("--no-sudo"), "{}", run.stderr());
    }
}

#[test]
fn fetch_failures_say_what_to_do_and_write_nothing() {
    let agent = AgentProcess::start("");
    let sshd = Sshd::start();
    let home = Home::new();
    vm_config(&home, &sshd, &agent);
    let scratch = tempfile::tempdir().unwrap();
    let out_file = scratch.path().join("out/token");
    let out = out_file.to_str().unwrap();

    // No such file on the VM: exit 1, the remote error and the hint.
    let missing = scratch.path().join("missing");
    let run = home
        .run(&[
            "token",
            "fetch",
            "-t",
            "vm",
            "--no-sudo",
            "--output",
            out,
            "--remote-path",
            missing.to_str().unwrap(),
        ])
        .expect(1);
    assert!(
        run.stderr().contains("No such file") && run.stderr().contains("--remote-path"),
        "{}",
        run.stderr()
    );

    // A token the agent does not accept: exit 3, nothing saved.
    let wrong = scratch.path().join("wrong");
    std::fs::write(&wrong, "not-the-agents-token-0000\n").unwrap();
    let run = home
        .run(&[
            "token",
            "fetch",
            "-t",
            "vm",
            "--no-sudo",
            "--output",
            out,
            "--remote-path",
            wrong.to_str().unwrap(),
        ])
        .expect(3);
    assert!(
        run.stderr().contains("refused") && run.stderr().contains("nothing was saved"),
        "{}",
        run.stderr()
    );
    assert!(!out_file.exists());

    // The agent is down: exit 3 and nothing saved, unless --no-verify.
    let remote = agent.token_file().display().to_string();
    let closed = testkit::free_port().to_string();
    let args = [
        "token",
        "fetch",
        "-t",
        "vm",
        "--no-sudo",
        "--output",
        out,
        "--remote-path",
        &remote,
        "--agent-port",
        &closed,
    ];
    let run = home.run(&args).expect(3);
    assert!(run.stderr().contains("--no-verify"), "{}", run.stderr());
    assert!(!out_file.exists());
    let mut no_verify = args.to_vec();
    no_verify.push("--no-verify");
    home.run(&no_verify).expect(0);
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap().trim(),
        TEST_TOKEN
    );
    assert_eq!(mode(&out_file), 0o600);

    // Paths that would need quoting never reach the remote shell.
    for bad in ["/tmp/a b", "/tmp/$(id)", "relative", "/tmp/x;id"] {
        let run = home
            .run(&["token", "fetch", "-t", "vm", "--remote-path", bad])
            .expect(2);
        assert!(run.stderr().contains("--remote-path"), "{}", run.stderr());
    }
    // An unnamed target needs --output; a direct address cannot run commands.
    let run = home
        .run(&["token", "fetch", "--via", &sshd.url(), "--no-sudo"])
        .expect(2);
    assert!(run.stderr().contains("--output"), "{}", run.stderr());
    let run = home
        .run(&["token", "fetch", "--addr", &agent.url(), "--output", out])
        .expect(2);
    assert!(run.stderr().contains("ssh://"), "{}", run.stderr());
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// A `gcloud` that records each argv (one argument a line, then `<end>`) and plays `gcloud
/// compute ssh` with ssh to the fixture: the flags after `--` go to ssh, `--command=` is split
/// on spaces like gcloud does and run after the host.
fn fake_gcloud(dir: &Path, sshd: &Sshd) -> PathBuf {
    let log = dir.join("argv.log");
    let script = format!(
        r#"#!/bin/bash
set -euo pipefail
{{ printf '%s\n' "$@"; echo '<end>'; }} >> '{log}'
[ "$1 $2" = "compute ssh" ] || {{ echo "ERROR: (gcloud) this fake knows compute ssh only" >&2; exit 2; }}
shift 2
cmd=""
ssh_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --command=*) cmd="${{1#--command=}}" ;;
    --) shift; ssh_args=("$@"); break ;;
  esac
  shift
done
# shellcheck disable=SC2086
exec ssh "${{ssh_args[@]}}" -p {port} -- {user}@127.0.0.1 $cmd
"#,
        log = log.display(),
        port = sshd.port,
        user = sshd.user,
    );
    let path = dir.join("gcloud");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[test]
fn gcloud_targets_run_the_exact_gcloud_argv() {
    let agent = AgentProcess::start("");
    let sshd = Sshd::start();
    let home = Home::new();
    let bin = tempfile::tempdir().unwrap();
    let log = fake_gcloud(bin.path(), &sshd);
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let via = "gcloud://openclaw-gw?zone=us-central1-a&project=my-proj";
    home.write_config(&format!(
        "[targets.gw]\nvia = {via:?}\nagent_port = {}\nssh_options = {}\n",
        agent.addr.port(),
        ssh_options_toml(&sshd)
    ));
    let mut ssh_flags: Vec<String> = [
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=20",
        "-o",
        "ServerAliveInterval=30",
    ]
    .map(String::from)
    .to_vec();
    for opt in sshd.client_options() {
        ssh_flags.push("-o".into());
        ssh_flags.push(opt);
    }
    let head = |extra: &[&str]| -> Vec<String> {
        let mut argv: Vec<String> = [
            "compute",
            "ssh",
            "openclaw-gw",
            "--zone=us-central1-a",
            "--project=my-proj",
            "--quiet",
        ]
        .map(String::from)
        .to_vec();
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv.push("--".into());
        argv.extend(ssh_flags.iter().cloned());
        argv
    };

    // token fetch: the remote command in gcloud's --command, then one Status call to check it.
    let remote = agent.token_file().display().to_string();
    let run = home
        .command(&[
            "token",
            "fetch",
            "-t",
            "gw",
            "--no-sudo",
            "--remote-path",
            &remote,
        ])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let calls = recorded(&log);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0], head(&[&format!("--command=cat {remote}")]));
    let mut stdio = head(&[]);
    stdio.extend(["-W".to_string(), format!("127.0.0.1:{}", agent.addr.port())]);
    assert_eq!(calls[1], stdio);
    let saved = home.clawops_dir().join("tokens/gw");
    assert_eq!(std::fs::read_to_string(&saved).unwrap().trim(), TEST_TOKEN);

    // status through `--via gcloud://…` as a CI job would run it.
    let run = home
        .command(&[
            "--via",
            via,
            "--agent-port",
            &agent.addr.port().to_string(),
            "status",
        ])
        .args(
            sshd.client_options()
                .iter()
                .flat_map(|o| ["--ssh-option".to_string(), o.clone()]),
        )
        .env("PATH", &path)
        .env("CLAWOPS_TOKEN", TEST_TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("gcloud://openclaw-gw (zone us-central1-a)"),
        "{stdout}"
    );
    assert_eq!(recorded(&log)[2], stdio);

    // gcloud's own failure comes through with exit 3.
    std::fs::write(
        bin.path().join("gcloud"),
        "#!/bin/sh\necho 'ERROR: (gcloud.compute.ssh) Could not fetch resource: instance not found' >&2\nexit 1\n",
    )
    .unwrap();
    let run = home
        .command(&["token", "fetch", "-t", "gw"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&run.stderr).contains("instance not found"));
}
