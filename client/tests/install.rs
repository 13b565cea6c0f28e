//! `clawops install` refusals through a real sshd on loopback: this machine runs no systemd, so
//! the real provisioning script's probe refuses it, and nothing may be written. The whole
//! install, upgrade and reboot path runs on a real Debian 12 VM in deploy/tests (group `vm`).
mod cli_home;

use std::path::Path;

use cli_home::{Home, ssh_options_toml};
use testkit::sshd::Sshd;

/// What an install would create or change on this machine, and any upload left behind.
fn footprint() -> Vec<String> {
    let mut seen: Vec<String> = [
        "/etc/clawops",
        "/var/lib/clawops",
        "/usr/local/bin/clawops-agent",
        "/etc/systemd/system/clawops-agent.service",
    ]
    .iter()
    .filter(|p| Path::new(p).exists())
    .map(|p| p.to_string())
    .collect();
    seen.extend(
        std::fs::read_dir("/tmp")
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("clawops-install.")),
    );
    seen
}

fn vm_target(home: &Home, sshd: &Sshd) {
    home.write_config(&format!(
        "[targets.vm]\nvia = {:?}\nssh_options = {}\n",
        sshd.url(),
        ssh_options_toml(sshd)
    ));
}

#[test]
fn a_host_without_systemd_is_refused_and_nothing_is_written() {
    let sshd = Sshd::start();
    let home = Home::new();
    vm_target(&home, &sshd);
    let agent = testkit::agent::agent_binary();
    let before = footprint();
    let run = home
        .run(&[
            "install",
            "-t",
            "vm",
            "--agent-bin",
            &agent.display().to_string(),
        ])
        .expect(1);
    let err = run.stderr();
    assert!(
        err.contains("does not run systemd") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(footprint(), before, "the refusal wrote nothing");
    assert!(!home.clawops_dir().join("tokens/vm").exists());
}

#[test]
fn bad_input_is_refused_before_the_vm_is_touched() {
    let sshd = Sshd::start();
    let home = Home::new();
    vm_target(&home, &sshd);
    let dir = tempfile::tempdir().unwrap();

    // Not a Linux executable (a script, as a macOS build would also be refused): exit 2.
    let script = dir.path().join("clawops-agent");
    std::fs::write(&script, "#!/bin/sh\necho clawops-agent 9\n").unwrap();
    let run = home
        .run(&[
            "install",
            "-t",
            "vm",
            "--agent-bin",
            &script.display().to_string(),
        ])
        .expect(2);
    assert!(run.stderr().contains("no ELF header"), "{}", run.stderr());

    // An ELF for another machine type.
    let mut riscv = b"\x7fELF\x02\x01\x01".to_vec();
    riscv.resize(18, 0);
    riscv.extend(243u16.to_le_bytes());
    riscv.resize(64, 0);
    std::fs::write(&script, riscv).unwrap();
    let run = home
        .run(&[
            "install",
            "-t",
            "vm",
            "--agent-bin",
            &script.display().to_string(),
        ])
        .expect(2);
    assert!(
        run.stderr().contains("machine type 243"),
        "{}",
        run.stderr()
    );

    // A direct address cannot run the installation; an unnamed target needs --output.
    let run = home
        .run(&["--addr", "http://127.0.0.1:1", "install"])
        .expect(2);
    assert!(
        run.stderr().contains("ssh:// or gcloud://"),
        "{}",
        run.stderr()
    );
    let run = home.run(&["--via", &sshd.url(), "install"]).expect(2);
    assert!(run.stderr().contains("--output FILE"), "{}", run.stderr());
    let run = home
        .run(&[
            "install",
            "-t",
            "vm",
            "--agent-url",
            "https://example.invalid/a",
        ])
        .expect(2);
    assert!(run.stderr().contains("--agent-sha256"), "{}", run.stderr());
    assert!(
        sshd.log().matches("Accepted publickey").count() == 0,
        "no login happened"
    );
}

#[test]
fn an_unreachable_host_exits_3_with_ssh_s_own_message() {
    let home = Home::new();
    let out = tempfile::tempdir().unwrap();
    let token = out.path().join("t");
    let run = home
        .run(&[
            "--via",
            "ssh://nobody@127.0.0.1:1",
            "--ssh-option",
            "StrictHostKeyChecking=no",
            "install",
            "--output",
            &token.display().to_string(),
            "--agent-bin",
            &testkit::agent::agent_binary().display().to_string(),
        ])
        .expect(3);
    assert!(
        run.stderr().contains("Connection refused"),
        "{}",
        run.stderr()
    );
    assert!(!token.exists());
}
