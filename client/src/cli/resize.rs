//! `clawops resize MACHINE_TYPE`: the GCE VM behind a gcloud:// target, stopped, resized and
//! started again, then waited for.
use std::{
    io::{BufRead, IsTerminal, Write},
    time::Duration,
};

use clap::Args;
use clawops::{
    Client, ClientError,
    gce::{InstanceAction, valid_machine_type},
    proto,
    resize::{self, Plan, ResizeError, StepOutcome, WaitRequest},
};
use clawops_proto::machine_types::{MachineType, PRICE_SOURCE};
use serde_json::{Value, json};

use super::{ConnArgs, memory::bytes_human, output::Output};

/// How often the agent is asked whether it is back.
const POLL_EVERY: Duration = Duration::from_secs(2);
const PRICING_URL: &str = "https://cloud.google.com/compute/vm-instance-pricing";
const DOWNTIME: &str = "the gateway is down while the VM stops and starts (about 1–2 minutes) \
    and for its cold start (up to ~3 minutes); an ephemeral external IP may change";

/// Change the machine type of the GCE VM behind a gcloud:// target: shows the memory and the
/// monthly price difference, asks (or --yes), runs gcloud stop, set-machine-type and start,
/// waits for the agent and a ready gateway, and shows the memory after. If gcloud refuses the
/// type, the VM is started again as it was.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops -t prod resize e2-small
  clawops -t prod resize e2-medium --dry-run
  clawops --via 'gcloud://openclaw-gateway?zone=us-central1-a&project=my-proj' resize e2-small --yes")]
pub struct ResizeArgs {
    /// The new machine type, e.g. e2-small (2 GiB), e2-medium (4 GiB), e2-standard-2 (8 GiB).
    #[arg(value_name = "MACHINE_TYPE")]
    pub machine_type: String,
    /// Go ahead without asking (needed when stdin is not a terminal, e.g. in CI).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show the plan and print the gcloud commands; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the agent and the gateway after the start, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=7200))]
    pub timeout: u64,
}

pub async fn run(args: ResizeArgs, conn: &ConnArgs, out: &Output) -> Result<u8, ClientError> {
    check_machine_type(&args.machine_type)?;
    let resolved = super::resolve_target(conn)?;
    let Some(instance) = resolved.target.gce_instance() else {
        return Err(ClientError::Usage(format!(
            "clawops resize changes a GCE VM's machine type with gcloud, so it needs a \
             gcloud://VM?zone=ZONE&project=PROJECT target, and {} is not one. Resize other \
             machines with their provider's tools",
            resolved.target
        )));
    };
    if !args.yes && !args.dry_run && !std::io::stdin().is_terminal() {
        return Err(ClientError::Usage(
            "clawops resize stops the VM, so it asks first, and stdin is not a terminal to ask \
             on: pass --yes to go ahead (or --dry-run to see the commands). Nothing was run"
                .into(),
        ));
    }
    let opts = super::connect_options(conn)?;
    let mut client = Client::connect(&opts).await?;
    let before = memory_report(&mut client).await?;
    let status = match client.agent.status(proto::StatusRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(client.explain(s).await),
    };
    drop(client);
    let plan = Plan::new(instance, &args.machine_type, &before)
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    if plan.is_noop() {
        return Ok(unchanged(&plan, out));
    }
    show_plan(&plan, out);
    if args.dry_run {
        if out.json {
            out.json_line(&plan_json(&plan, "dry_run"));
        }
        return Ok(0);
    }
    if !args.yes && !confirm(&plan)? {
        eprintln!("clawops: not resized; nothing was changed");
        return Ok(1);
    }
    let wait = WaitRequest {
        connect: &opts,
        gateway_service: running_gateway(&status),
        timeout: Duration::from_secs(args.timeout),
        poll_every: POLL_EVERY,
    };
    apply(&plan, &wait, out).await
}

/// Runs the gcloud steps, waits for the agent (also after a refused type: the VM was started
/// again), and reports.
async fn apply(plan: &Plan, wait: &WaitRequest<'_>, out: &Output) -> Result<u8, ClientError> {
    let steps = {
        // Ctrl-C must not stop us between stop and start; gcloud runs in its own process group.
        let guard = tokio::spawn(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("clawops: interrupt ignored until the VM is started again");
            }
        });
        let result = resize::execute(plan, |action, args| step_line(out, action, args)).await;
        guard.abort();
        result
    };
    let (outcomes, result) = steps;
    if let Err(e @ ResizeError::Start { .. }) = &result {
        return Ok(failed(plan, &outcomes, None, &e.to_string(), out));
    }
    say(
        out,
        "waiting     for the agent and the gateway to answer again",
    );
    let back = tokio::select! {
        back = resize::wait_until_back(wait, |state| say(out, &format!("            {state}"))) => back,
        _ = tokio::signal::ctrl_c() => {
            return Ok(failed(plan, &outcomes, None, "interrupted while waiting; the VM was \
                started: see `clawops status`", out));
        }
    };
    let mut client = match back {
        Ok(client) => client,
        Err(e) => {
            let error = match &result {
                Err(first) => format!("{first}; then {e}"),
                Ok(()) => e.to_string(),
            };
            return Ok(failed(plan, &outcomes, None, &error, out));
        }
    };
    let after = memory_report(&mut client).await?;
    if let Err(e) = result {
        return Ok(failed(plan, &outcomes, Some(&after), &e.to_string(), out));
    }
    show_after(plan, &after, &outcomes, out);
    Ok(0)
}

fn check_machine_type(name: &str) -> Result<(), ClientError> {
    if valid_machine_type(name) {
        return Ok(());
    }
    Err(ClientError::Usage(format!(
        "{name:?} is not a machine type: GCE names them in lowercase words joined by '-', like \
         e2-small, e2-medium, e2-standard-2 or e2-custom-2-4096 (`gcloud compute machine-types \
         list` shows them)"
    )))
}

async fn memory_report(client: &mut Client) -> Result<proto::MemoryReport, ClientError> {
    let request = proto::MemoryRequest {
        history: false,
        max_samples: 0,
    };
    match client.agent.memory_stats(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) => Err(client.explain(s).await),
    }
}

/// The gateway's service, when its container runs now (then the resize waits for it again).
fn running_gateway(status: &proto::StatusReply) -> Option<String> {
    let service = status.app.as_ref().map(|a| a.service.clone())?;
    status
        .containers
        .iter()
        .any(|c| c.service == service && c.state == "running")
        .then_some(service)
}

/// Asks on the terminal; `false` unless the answer is yes.
fn confirm(plan: &Plan) -> Result<bool, ClientError> {
    eprint!(
        "Stop {}, change it to {} and start it again? The gateway is down meanwhile. [y/N] ",
        plan.instance.vm, plan.to
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| ClientError::Usage(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Progress and plans go to stdout, or to stderr when stdout carries JSON.
fn say(out: &Output, line: &str) {
    if out.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn step_line(out: &Output, action: &InstanceAction, args: &[String]) {
    let what = match action {
        InstanceAction::Stop => "stopping",
        InstanceAction::SetMachineType(_) => "resizing",
        InstanceAction::Start => "starting",
    };
    say(out, &format!("{what:<11} gcloud {}", args.join(" ")));
}

fn machine_text(name: &str, known: Option<&MachineType>) -> String {
    match known {
        Some(m) => format!(
            "{name} ({}, ≈${:.2}/month)",
            bytes_human(m.memory),
            m.usd_month
        ),
        None => format!("{name} (not in clawops's table: see {PRICING_URL})"),
    }
}

fn show_plan(plan: &Plan, out: &Output) {
    let vm = &plan.instance;
    let mut lines = vec![
        format!(
            "resize      {} (zone {}, project {})",
            vm.vm,
            vm.zone.as_deref().unwrap_or("gcloud's default"),
            vm.project.as_deref().unwrap_or("gcloud's default")
        ),
        format!(
            "machine     {} → {}",
            machine_text(&plan.from, plan.from_known),
            machine_text(&plan.to, plan.to_known)
        ),
    ];
    if let Some(diff) = plan.price_difference() {
        let sign = if diff < 0.0 { "-" } else { "+" };
        lines.push(format!(
            "price       {sign}${:.2}/month ({PRICE_SOURCE})",
            diff.abs()
        ));
    }
    lines.push(format!(
        "memory now  {} available of {}",
        bytes_human(plan.host_available),
        bytes_human(plan.host_total)
    ));
    lines.push(format!("downtime    {DOWNTIME}"));
    for (i, (_, program, args)) in plan.commands().iter().enumerate() {
        let label = if i == 0 { "commands" } else { "" };
        lines.push(format!(
            "{label:<11} {}",
            resize::shell_words(program, args)
        ));
    }
    for line in lines {
        say(out, &line);
    }
}

fn show_after(plan: &Plan, after: &proto::MemoryReport, steps: &[StepOutcome], out: &Output) {
    if out.json {
        let mut doc = plan_json(plan, "resized");
        doc["steps"] = steps_json(steps);
        doc["memory_after"] = super::memory::to_json(after);
        out.json_line(&doc);
        return;
    }
    let machine = after.machine.clone().unwrap_or_default();
    let host = after.host.unwrap_or_default();
    println!(
        "memory after {} · {} available of {}",
        machine.machine_type,
        bytes_human(host.available_bytes),
        bytes_human(host.total_bytes)
    );
    for c in after.containers.iter().filter(|c| !c.source.is_empty()) {
        println!("  {:<34} {}", c.name, bytes_human(c.usage_bytes));
    }
    if machine.machine_type != plan.to {
        eprintln!(
            "clawops: warning: the agent reports machine type {:?}, not {}",
            machine.machine_type, plan.to
        );
    }
}

fn unchanged(plan: &Plan, out: &Output) -> u8 {
    if out.json {
        out.json_line(&plan_json(plan, "unchanged"));
    } else {
        println!(
            "{} is already {}: nothing to do",
            plan.instance.vm, plan.from
        );
    }
    0
}

/// Reports a failure (gcloud's words included) and gives exit code 1.
fn failed(
    plan: &Plan,
    steps: &[StepOutcome],
    after: Option<&proto::MemoryReport>,
    error: &str,
    out: &Output,
) -> u8 {
    if out.json {
        let mut doc = plan_json(plan, "failed");
        doc["steps"] = steps_json(steps);
        doc["error"] = json!(error);
        doc["memory_after"] = after.map_or(Value::Null, super::memory::to_json);
        out.json_line(&doc);
    }
    eprintln!("clawops: {error}");
    1
}

fn plan_json(plan: &Plan, outcome: &str) -> Value {
    let vm = &plan.instance;
    json!({
        "outcome": outcome,
        "vm": vm.vm, "zone": vm.zone, "project": vm.project,
        "from_machine_type": plan.from,
        "to_machine_type": plan.to,
        "memory_before_bytes": plan.from_known.map(|m| m.memory),
        "memory_after_bytes": plan.to_known.map(|m| m.memory),
        "price_before_usd_month": plan.from_known.map(|m| m.usd_month),
        "price_after_usd_month": plan.to_known.map(|m| m.usd_month),
        "price_difference_usd_month": plan.price_difference(),
        "host_total_bytes": plan.host_total,
        "host_available_bytes": plan.host_available,
        "commands": plan.commands().into_iter()
            .map(|(_, program, args)| std::iter::once(program).chain(args).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
    })
}

fn steps_json(steps: &[StepOutcome]) -> Value {
    steps
        .iter()
        .map(|s| json!({"command": s.argv, "ok": s.error.is_none(), "error": s.error}))
        .collect()
}
