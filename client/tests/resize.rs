//! `clawops resize` against a `gcloud://` target. gcloud cannot run here, so a stand-in on PATH
//! records every argv and plays it: `compute ssh` runs ssh to the fixture sshd (the tunnel to a
//! real agent process); `compute instances stop` asks the test to stop the agent and the
//! gateway container, as a VM stop does; `set-machine-type` checks the VM is stopped and
//! answers like gcloud (including its error for a type that does not exist); `start` asks the
//! test to change the metadata server's machine type and start the agent and the gateway again.
mod cli_home;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use bollard::query_parameters::{StartContainerOptions, StopContainerOptionsBuilder};
use cli_home::{Home, Run, ssh_options_toml};
use testkit::{
    agent::AgentProcess,
    cleanup::ProjectGuard,
    container::ServiceContainer,
    gce::{E2_MICRO, FakeGce},
    image,
    sshd::Sshd,
    standin::recorded,
    unique,
};

const VIA: &str = "gcloud://openclaw-gateway?zone=us-central1-a";
const BOGUS_ERROR: &str = "ERROR: (gcloud.compute.instances.set-machine-type) Could not fetch \
    resource:\n - Invalid value for field 'resource.machineType': \
    'zones/us-central1-a/machineTypes/e2-bogus'. Machine type with name 'e2-bogus' does not \
    exist in zone 'us-central1-a'.";

/// The stand-in: records argv (one argument a line, then `<end>`) into `argv.log`, and talks
/// to the test's "VM" thread through files in `dir`.
fn fake_gcloud(dir: &Path, sshd: &Sshd) -> PathBuf {
    let script = format!(
        r#"#!/bin/bash
set -euo pipefail
dir='{dir}'
{{ printf '%s\n' "$@"; echo '<end>'; }} >> "$dir/argv.log"
if [ "$1 $2" = "compute ssh" ]; then
  shift 2
  ssh_args=()
  while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; ssh_args=("$@"); break; fi
    shift
  done
  exec ssh "${{ssh_args[@]}}" -p {port} -- {user}@127.0.0.1
fi
[ "$1 $2" = "compute instances" ] || {{ echo "ERROR: (gcloud) stand-in: unexpected $1 $2" >&2; exit 2; }}
verb=$3
vm=$4
case "$verb" in
  stop)
    touch "$dir/stop"
    for _ in $(seq 300); do
      if [ -e "$dir/stopped" ]; then rm -f "$dir/stopped"; echo "Stopping instance(s) $vm...done." >&2; exit 0; fi
      sleep 0.1
    done
    echo "ERROR: stand-in: the test did not stop the VM" >&2; exit 1 ;;
  set-machine-type)
    [ -e "$dir/is-stopped" ] || {{ echo "ERROR: (gcloud.compute.instances.set-machine-type) Could not fetch resource:" >&2; echo " - The resource 'projects/p/zones/us-central1-a/instances/$vm' is not ready" >&2; exit 1; }}
    machine_type=""
    while [ $# -gt 0 ]; do
      if [ "$1" = "--machine-type" ]; then machine_type=$2; fi
      shift
    done
    if [ "$machine_type" = e2-bogus ]; then
      printf '%s\n' "{bogus}" >&2; exit 1
    fi
    echo "$machine_type" > "$dir/machine-type"
    echo "Updated [https://compute.googleapis.com/compute/v1/projects/p/zones/us-central1-a/instances/$vm]." >&2 ;;
  start)
    touch "$dir/start"
    echo "Starting instance(s) $vm...done." >&2 ;;
  *) echo "ERROR: (gcloud) stand-in: unexpected verb $verb" >&2; exit 2 ;;
esac
"#,
        dir = dir.display(),
        port = sshd.port,
        user = sshd.user,
        bogus = BOGUS_ERROR.replace('"', "\\\""),
    );
    let path = dir.join("gcloud");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The recorded `compute instances …` calls (the tunnel's `compute ssh` calls left out).
fn instance_calls(dir: &Path) -> Vec<Vec<String>> {
    recorded(&dir.join("argv.log"))
        .into_iter()
        .filter(|c| c[..2] == ["compute", "instances"])
        .collect()
}

fn instance_argv(verb: &str, extra: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = ["compute", "instances", verb, "openclaw-gateway"]
        .map(String::from)
        .to_vec();
    argv.extend(extra.iter().map(|s| s.to_string()));
    // The zone from the URL, the project from the agent's metadata server.
    argv.extend(
        [
            "--zone",
            "us-central1-a",
            "--project",
            "my-claw-project",
            "--quiet",
        ]
        .map(String::from),
    );
    argv
}

/// Waits until the client has opened `count` tunnels (`compute ssh`) since the last
/// `compute instances start`, or `timeout` passed.
fn polls_after_start(dir: &Path, count: usize, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let calls = recorded(&dir.join("argv.log"));
        let since_start = calls
            .iter()
            .rev()
            .take_while(|c| c[..2] != ["compute", "instances"])
            .filter(|c| c[..2] == ["compute", "ssh"])
            .count();
        if since_start >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The VM: stops and starts the agent and the gateway container when the stand-in asks.
struct Vm {
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<AgentProcess>>,
}

impl Vm {
    fn start(mut agent: AgentProcess, gce: Arc<FakeGce>, dir: PathBuf, container: String) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let keep_going = running.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let docker = rt.block_on(testkit::docker::connect());
            while keep_going.load(Ordering::SeqCst) {
                if std::fs::remove_file(dir.join("stop")).is_ok() {
                    agent.stop();
                    let stop = StopContainerOptionsBuilder::default().t(1).build();
                    rt.block_on(docker.stop_container(&container, Some(stop)))
                        .unwrap();
                    std::fs::write(dir.join("is-stopped"), "").unwrap();
                    std::fs::write(dir.join("stopped"), "").unwrap();
                }
                if std::fs::remove_file(dir.join("start")).is_ok() {
                    if let Ok(t) = std::fs::read_to_string(dir.join("machine-type")) {
                        let answer = format!("projects/123456789/machineTypes/{}", t.trim());
                        gce.set("/instance/machine-type", &answer);
                    }
                    let _ = std::fs::remove_file(dir.join("is-stopped"));
                    // Booting: the client's first poll finds nobody (it has ended when a
                    // second one starts), then an agent without its gateway.
                    polls_after_start(&dir, 2, Duration::from_secs(60));
                    agent.start_again_on_same_port();
                    std::thread::sleep(Duration::from_millis(2500));
                    rt.block_on(docker.start_container(&container, None::<StartContainerOptions>))
                        .unwrap();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            agent
        });
        Self {
            running,
            thread: Some(thread),
        }
    }
}

/// Stops the thread and the agent it holds, also when the test failed.
impl Drop for Vm {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            drop(thread.join());
        }
    }
}

struct Fixture {
    home: Home,
    bin: tempfile::TempDir,
    path: String,
}

impl Fixture {
    fn new(sshd: &Sshd, agent_port: u16, token_file: &Path) -> Self {
        let home = Home::new();
        let bin = tempfile::tempdir().unwrap();
        fake_gcloud(bin.path(), sshd);
        home.write_config(&format!(
            "default = \"gw\"\n[targets.gw]\nvia = {VIA:?}\nagent_port = {agent_port}\n\
             token_file = {:?}\nssh_options = {}\n",
            token_file.display().to_string(),
            ssh_options_toml(sshd)
        ));
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Self { home, bin, path }
    }

    fn run(&self, args: &[&str]) -> Run {
        Run(self
            .home
            .command(args)
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .output()
            .unwrap())
    }

    fn dir(&self) -> &Path {
        self.bin.path()
    }
}

#[test]
fn resize_stops_resizes_starts_and_waits_for_the_gateway() {
    let project = unique("resize");
    let _guard = ProjectGuard::new(&project);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let img = rt.block_on(image::build(
        &format!("clawops-test/{project}:1"),
        &[],
        r#"["/bin/sh"]"#,
    ));
    let container = format!("{project}-openclaw-gateway-1");
    rt.block_on(
        ServiceContainer::new(&project, "openclaw-gateway", &img.tag)
            .script("trap 'exit 0' TERM; while true; do sleep 1; done")
            .start(),
    );
    let gce = Arc::new(FakeGce::start(&E2_MICRO, true));
    let repo = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&format!(
        "[app]\nrepo = {:?}\nproject = {project:?}\n[memory]\nmetadata_url = {:?}\nmetadata_timeout_ms = 5000\n",
        repo.path().display().to_string(),
        gce.url
    ));
    let sshd = Sshd::start();
    let fx = Fixture::new(&sshd, agent.addr.port(), &agent.token_file());

    // Same type: nothing to do, nothing run but the tunnel.
    let run = fx.run(&["resize", "e2-micro", "--yes"]).expect(0);
    assert!(
        run.stdout()
            .contains("openclaw-gateway is already e2-micro: nothing to do"),
        "{}",
        run.stdout()
    );
    assert!(instance_calls(fx.dir()).is_empty());

    // --dry-run: the plan, prices and the exact commands; nothing run.
    let run = fx.run(&["resize", "e2-small", "--dry-run"]).expect(0);
    let out = run.stdout();
    for expected in [
        "machine     e2-micro (1.0 GiB, ≈$6.11/month) → e2-small (2.0 GiB, ≈$12.23/month)",
        "price       +$6.12/month",
        "gcloud compute instances stop openclaw-gateway --zone us-central1-a --project \
         my-claw-project --quiet",
        "gcloud compute instances set-machine-type openclaw-gateway --machine-type e2-small \
         --zone us-central1-a --project my-claw-project --quiet",
        "gcloud compute instances start openclaw-gateway --zone us-central1-a --project \
         my-claw-project --quiet",
    ] {
        assert!(out.contains(expected), "{expected:?} missing in:\n{out}");
    }
    let run = fx
        .run(&["resize", "e2-small", "--dry-run", "--json"])
        .expect(0);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(doc["outcome"], "dry_run");
    assert_eq!(
        doc["price_difference_usd_month"]
            .as_f64()
            .map(|d| (d * 100.0).round()),
        Some(612.0)
    );
    let mut set_type = vec!["gcloud".to_string()];
    set_type.extend(instance_argv(
        "set-machine-type",
        &["--machine-type", "e2-small"],
    ));
    assert_eq!(doc["commands"][1], serde_json::json!(set_type));
    assert!(instance_calls(fx.dir()).is_empty());

    let vm = Vm::start(agent, gce.clone(), fx.dir().to_owned(), container.clone());

    // A type gcloud rejects: its words, exit 1, and the VM started again as it was.
    let run = fx
        .run(&["resize", "e2-bogus", "--yes", "--timeout", "60"])
        .expect(1);
    let err = run.stderr();
    assert!(
        err.contains("Machine type with name 'e2-bogus' does not exist in zone 'us-central1-a'"),
        "{err}"
    );
    assert!(err.contains("started again as e2-micro"), "{err}");
    assert_eq!(
        instance_calls(fx.dir()),
        [
            instance_argv("stop", &[]),
            instance_argv("set-machine-type", &["--machine-type", "e2-bogus"]),
            instance_argv("start", &[]),
        ]
    );
    let run = fx.run(&["status"]).expect(0);
    assert!(run.stdout().contains("running"), "{}", run.stdout());

    // The real thing: stop, set-machine-type, start, wait, memory after.
    std::fs::remove_file(fx.dir().join("argv.log")).unwrap();
    let run = fx
        .run(&["resize", "e2-small", "--yes", "--timeout", "60"])
        .expect(0);
    let out = run.stdout();
    assert_eq!(
        instance_calls(fx.dir()),
        [
            instance_argv("stop", &[]),
            instance_argv("set-machine-type", &["--machine-type", "e2-small"]),
            instance_argv("start", &[]),
        ]
    );
    for expected in [
        "stopping    gcloud compute instances stop openclaw-gateway",
        "resizing    gcloud compute instances set-machine-type openclaw-gateway --machine-type e2-small",
        "starting    gcloud compute instances start openclaw-gateway",
        "agent not answering",
        "memory after e2-small · ",
    ] {
        assert!(out.contains(expected), "{expected:?} missing in:\n{out}");
    }
    // It waited for the gateway: its container runs again.
    let run = fx.run(&["status", "--json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(status["containers"][0]["state"], "running", "{status}");
    let run = fx.run(&["resize", "e2-small", "--yes"]).expect(0);
    assert!(
        run.stdout().contains("already e2-small"),
        "{}",
        run.stdout()
    );

    drop(vm);
    drop(img);
}

#[test]
fn refusals_run_nothing() {
    let sshd = Sshd::start();
    let token = tempfile::NamedTempFile::new().unwrap();
    let fx = Fixture::new(&sshd, testkit::free_port(), token.path());

    // Without --yes and without a terminal to ask on.
    let run = fx.run(&["resize", "e2-small"]).expect(2);
    assert!(run.stderr().contains("--yes"), "{}", run.stderr());
    // Not a machine type.
    for bad in ["E2-SMALL", "e2_small", "e2-small;id", "--", "small"] {
        let run = fx.run(&["resize", "--yes", "--", bad]).expect(2);
        assert!(
            run.stderr().contains("not a machine type"),
            "{bad}: {}",
            run.stderr()
        );
    }
    assert!(
        recorded(&fx.dir().join("argv.log")).is_empty(),
        "{:?}",
        recorded(&fx.dir().join("argv.log"))
    );

    // Not a gcloud:// target.
    for target in [sshd.url(), "http://127.0.0.1:1".to_string()] {
        let flag = if target.starts_with("http") {
            "--addr"
        } else {
            "--via"
        };
        let run = fx
            .run(&[flag, &target, "resize", "e2-small", "--yes"])
            .expect(2);
        assert!(run.stderr().contains("gcloud://"), "{}", run.stderr());
    }
    assert!(recorded(&fx.dir().join("argv.log")).is_empty());
}
