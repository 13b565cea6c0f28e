//! Resizing the GCE VM behind a `gcloud://` target: the plan (current and new machine type,
//! their memory and prices), `gcloud compute instances stop` → `set-machine-type` → `start`
//! (once the VM was asked to stop, it is always started again), and waiting for the agent and
//! its gateway to answer again.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use clawops_proto::{
    machine_types::{self, MachineType},
    v1 as pb,
};

use crate::{
    connect::{Client, ConnectOptions},
    gce::{GceInstance, InstanceAction},
};

/// How long one attempt to reach the agent may take while the VM boots.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// gcloud's error output kept for the message (its last lines say what went wrong).
const STDERR_KEEP: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "the agent reached through gcloud://{vm} sees no GCE metadata server, so it is not on a \
         GCE VM (or cannot tell which type it is): resize it by hand"
    )]
    NotOnGce { vm: String },
    #[error(
        "the agent reached through gcloud://{target} runs on the VM {agent:?}: check the \
         target's VM name before resizing"
    )]
    OtherVm { target: String, agent: String },
    #[error(
        "the target says zone {target:?} but the agent's VM is in zone {agent:?}: fix the \
         target's zone before resizing"
    )]
    OtherZone { target: String, agent: String },
}

/// What a resize would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Zone and project from the target, else from the agent's metadata.
    pub instance: GceInstance,
    pub from: String,
    pub to: String,
    /// Memory and price, when clawops's table lists the type.
    pub from_known: Option<&'static MachineType>,
    pub to_known: Option<&'static MachineType>,
    /// What the VM has and has free now.
    pub host_total: u64,
    pub host_available: u64,
}

impl Plan {
    /// Checks that the agent answering through the target runs on the target's VM, and fills
    /// in what the target leaves out.
    pub fn new(
        target: GceInstance,
        to: &str,
        report: &pb::MemoryReport,
    ) -> Result<Self, PlanError> {
        let machine = report.machine.clone().unwrap_or_default();
        if !machine.on_gce || machine.machine_type.is_empty() {
            return Err(PlanError::NotOnGce { vm: target.vm });
        }
        if machine.name != target.vm {
            return Err(PlanError::OtherVm {
                target: target.vm,
                agent: machine.name,
            });
        }
        let known = |v: &str| Some(v.to_owned()).filter(|v| !v.is_empty() && v != "unknown");
        if let (Some(t), Some(a)) = (&target.zone, known(&machine.zone))
            && *t != a
        {
            return Err(PlanError::OtherZone {
                target: t.clone(),
                agent: a,
            });
        }
        let host = report.host.unwrap_or_default();
        Ok(Plan {
            instance: GceInstance {
                zone: target.zone.or_else(|| known(&machine.zone)),
                project: target.project.or_else(|| known(&machine.project)),
                vm: target.vm,
            },
            from_known: machine_types::find(&machine.machine_type).map(|(_, m)| m),
            to_known: machine_types::find(to).map(|(_, m)| m),
            from: machine.machine_type,
            to: to.to_owned(),
            host_total: host.total_bytes,
            host_available: host.available_bytes,
        })
    }

    /// Already the requested type: nothing to do.
    pub fn is_noop(&self) -> bool {
        self.from == self.to
    }

    /// New minus old monthly list price, when both are known.
    pub fn price_difference(&self) -> Option<f64> {
        Some(self.to_known?.usd_month - self.from_known?.usd_month)
    }

    /// The gcloud argv of each step, in order.
    pub fn commands(&self) -> Vec<(InstanceAction, String, Vec<String>)> {
        [
            InstanceAction::Stop,
            InstanceAction::SetMachineType(self.to.clone()),
            InstanceAction::Start,
        ]
        .into_iter()
        .map(|action| {
            let (program, args) = self.instance.command(&action);
            (action, program, args)
        })
        .collect()
    }
}

/// One gcloud command that ran.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub action: InstanceAction,
    pub argv: Vec<String>,
    /// gcloud's error output when it failed.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    #[error("gcloud could not stop the VM, so nothing was changed: {0}")]
    Stop(String),
    #[error("gcloud refused the machine type; the VM was started again as {from}: {error}")]
    SetMachineType { from: String, error: String },
    #[error(
        "the VM is STOPPED: gcloud could not start it ({error}). Start it with: {command}{}",
        earlier.as_ref().map(|e| format!(" (earlier: {e})")).unwrap_or_default()
    )]
    Start {
        error: String,
        command: String,
        earlier: Option<String>,
    },
}

/// Runs stop → set-machine-type → start. Once stop was attempted, start always runs, whatever
/// happened in between: a resize must never leave the VM down. `progress` hears each step
/// before it runs.
pub async fn execute(
    plan: &Plan,
    mut progress: impl FnMut(&InstanceAction, &[String]),
) -> (Vec<StepOutcome>, Result<(), ResizeError>) {
    let mut outcomes = Vec::new();
    let mut earlier: Option<ResizeError> = None;
    for (action, program, args) in plan.commands() {
        let skip = matches!(action, InstanceAction::SetMachineType(_)) && earlier.is_some();
        if skip {
            continue;
        }
        progress(&action, &args);
        let error = run_gcloud(&program, &args)
            .await
            .err()
            .map(|e| e.to_string());
        outcomes.push(StepOutcome {
            action: action.clone(),
            argv: std::iter::once(program.clone())
                .chain(args.clone())
                .collect(),
            error: error.clone(),
        });
        let Some(error) = error else { continue };
        earlier = Some(match action {
            InstanceAction::Stop => ResizeError::Stop(error),
            InstanceAction::SetMachineType(_) => ResizeError::SetMachineType {
                from: plan.from.clone(),
                error,
            },
            InstanceAction::Start => ResizeError::Start {
                error,
                command: shell_words(&program, &args),
                earlier: earlier.take().map(|e| e.to_string()),
            },
        });
    }
    (outcomes, earlier.map_or(Ok(()), Err))
}

/// Why a gcloud command failed.
#[derive(Debug, thiserror::Error)]
enum GcloudFailure {
    #[error("cannot run {program}: {source} (is the Google Cloud CLI installed and on PATH?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// gcloud's own words (the end of its error output).
    #[error("{0}")]
    Refused(String),
}

/// Runs one gcloud command in its own process group, so a Ctrl-C at the terminal does not
/// kill it halfway (the CLI ignores Ctrl-C until the VM is started again).
async fn run_gcloud(program: &str, args: &[String]) -> Result<(), GcloudFailure> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .output()
        .await
        .map_err(|source| GcloudFailure::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr);
    let text = text.trim();
    let mut cut = text.len().saturating_sub(STDERR_KEEP);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    Err(GcloudFailure::Refused(if text.is_empty() {
        format!("{program} exited with {}", output.status)
    } else {
        text[cut..].to_owned()
    }))
}

/// The command as one would type it (for messages).
pub fn shell_words(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(|w| shlex::try_quote(w).map_or_else(|_| w.to_owned(), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What to wait for after the start.
#[derive(Debug, Clone)]
pub struct WaitRequest<'a> {
    pub connect: &'a ConnectOptions,
    /// The gateway's compose service, when a container of it was running before the resize.
    pub gateway_service: Option<String>,
    pub timeout: Duration,
    pub poll_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(
        "the VM was resized and started, but the agent did not answer within {secs}s (last: \
         {last}); it may still be booting: try `clawops status` in a minute"
    )]
    Agent { secs: u64, last: String },
    #[error(
        "the VM was resized and the agent answers, but the gateway ({service}) was not running \
         and ready within {secs}s (last: {last}); see `clawops status` and `clawops logs`"
    )]
    Gateway {
        service: String,
        secs: u64,
        last: String,
    },
}

/// Polls the agent's Status through the tunnel until it answers and, if asked, the gateway's
/// container runs and is healthy (or has no healthcheck). `progress` hears each new state once.
pub async fn wait_until_back(
    req: &WaitRequest<'_>,
    mut progress: impl FnMut(&str),
) -> Result<Client, WaitError> {
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    let mut agent_answered = false;
    loop {
        let pending = match poll(req.connect).await {
            Err(e) => e.to_string(),
            Ok((client, reply)) => {
                agent_answered = true;
                let pending = req
                    .gateway_service
                    .as_deref()
                    .and_then(|service| gateway_pending(&reply, service));
                match pending {
                    None => return Ok(client),
                    Some(what) => what,
                }
            }
        };
        if pending != last {
            progress(&pending);
            last = pending;
        }
        if start.elapsed() + req.poll_every > req.timeout {
            let secs = req.timeout.as_secs();
            return Err(match (&req.gateway_service, agent_answered) {
                (Some(service), true) => WaitError::Gateway {
                    service: service.clone(),
                    secs,
                    last,
                },
                _ => WaitError::Agent { secs, last },
            });
        }
        tokio::time::sleep(req.poll_every).await;
    }
}

/// The agent did not answer one attempt.
#[derive(Debug, thiserror::Error)]
#[error("agent not answering: {0}")]
struct NotAnswering(String);

/// One attempt: a fresh tunnel and a Status call.
async fn poll(opts: &ConnectOptions) -> Result<(Client, pb::StatusReply), NotAnswering> {
    let attempt = async {
        let mut client = Client::connect(opts)
            .await
            .map_err(|e| NotAnswering(first_line(&e.to_string()).to_owned()))?;
        let reply = client
            .agent
            .status(pb::StatusRequest {})
            .await
            .map_err(|s| NotAnswering(first_line(s.message()).to_owned()))?;
        Ok((client, reply.into_inner()))
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(NotAnswering("timed out".into())))
}

/// What the gateway still lacks: `None` when the service's container runs and is healthy or
/// has no healthcheck.
pub fn gateway_pending(reply: &pb::StatusReply, service: &str) -> Option<String> {
    if !reply.docker_error.is_empty() {
        return Some(format!(
            "agent answers; Docker not yet: {}",
            first_line(&reply.docker_error)
        ));
    }
    let Some(c) = reply.containers.iter().find(|c| c.service == service) else {
        return Some(format!("agent answers; no {service} container yet"));
    };
    match (c.state.as_str(), c.health.as_str()) {
        ("running", "" | "healthy") => None,
        ("running", health) => Some(format!("agent answers; {} is running, {health}", c.name)),
        (state, _) => Some(format!("agent answers; {} is {state}", c.name)),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, zone: &str, machine_type: &str) -> pb::MemoryReport {
        pb::MemoryReport {
            machine: Some(pb::Machine {
                on_gce: true,
                name: name.into(),
                zone: zone.into(),
                machine_type: machine_type.into(),
                project: "proj".into(),
            }),
            ..Default::default()
        }
    }

    fn vm(zone: Option<&str>) -> GceInstance {
        GceInstance {
            vm: "gw".into(),
            zone: zone.map(str::to_owned),
            project: None,
        }
    }

    #[test]
    fn plan_fills_zone_and_project_and_prices() {
        let plan = Plan::new(vm(None), "e2-small", &report("gw", "z1", "e2-micro")).unwrap();
        assert_eq!(plan.instance.zone.as_deref(), Some("z1"));
        assert_eq!(plan.instance.project.as_deref(), Some("proj"));
        assert!((plan.price_difference().unwrap() - 6.12).abs() < 1e-9);
        assert!(!plan.is_noop());
        let odd = Plan::new(vm(None), "n2-standard-2", &report("gw", "z1", "e2-micro")).unwrap();
        assert_eq!(odd.price_difference(), None);
        assert!(
            Plan::new(vm(None), "e2-micro", &report("gw", "z1", "e2-micro"))
                .unwrap()
                .is_noop()
        );
    }

    #[test]
    fn plan_refuses_another_vm_or_zone_or_no_gce() {
        let r = report("other", "z1", "e2-micro");
        assert!(matches!(
            Plan::new(vm(None), "e2-small", &r),
            Err(PlanError::OtherVm { .. })
        ));
        let r = report("gw", "z2", "e2-micro");
        assert!(matches!(
            Plan::new(vm(Some("z1")), "e2-small", &r),
            Err(PlanError::OtherZone { .. })
        ));
        assert!(matches!(
            Plan::new(vm(None), "e2-small", &pb::MemoryReport::default()),
            Err(PlanError::NotOnGce { .. })
        ));
    }

    #[test]
    fn gateway_states() {
        let reply = |state: &str, health: &str| pb::StatusReply {
            containers: vec![pb::ContainerState {
                service: "gw".into(),
                name: "p-gw-1".into(),
                state: state.into(),
                health: health.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(gateway_pending(&reply("running", ""), "gw"), None);
        assert_eq!(gateway_pending(&reply("running", "healthy"), "gw"), None);
        assert!(gateway_pending(&reply("running", "starting"), "gw").is_some());
        assert!(gateway_pending(&reply("exited", ""), "gw").is_some());
        assert!(gateway_pending(&reply("running", ""), "other").is_some());
    }
}
