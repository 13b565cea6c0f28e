//! The machine-type advisor. The GCP guide's rule is "start on e2-micro, move to e2-small when
//! you hit OOMs"; this turns the evidence (OOM kills, sustained low available memory, sustained
//! memory pressure, or a week of idle headroom) into one piece of advice with its reason, the
//! exact gcloud commands, the list prices and the downtime.
//!
//! A container killed by its own `mem_limit` on a host that still has memory to spare does not
//! need a bigger machine: that case gets "raise the limit" advice instead.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    ContainerMemory, EventKind, HostMemory, MemoryEvent, Sample, headroom::WeekSummary,
    metadata::Machine, ring::Ring,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// A window "sustains" a condition when this share of its samples meet it: robust against a
/// single good or bad sample.
const SUSTAINED_SHARE: f64 = 0.8;

pub use clawops_proto::machine_types::{LADDER, MachineType, find as machine_type};

/// What resizing a GCE VM costs in availability.
pub const GCE_DOWNTIME: &str = "about 1–2 minutes for the VM to stop and start, plus the \
    gateway's cold start (up to ~3 minutes); an ephemeral external IP may change (gcloud and \
    `clawops --via gcloud://` find the VM by name)";
const HOST_DOWNTIME: &str =
    "a reboot of this machine, plus the gateway's cold start (up to ~3 minutes)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdviceKind {
    Upgrade,
    Downgrade,
    RaiseLimit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Advice {
    pub kind: AdviceKind,
    /// The evidence that triggered the advice.
    pub reason: String,
    /// What to do, in one sentence.
    pub summary: String,
    pub from_machine_type: Option<String>,
    pub to_machine_type: Option<String>,
    /// The one command that does it: `clawops resize TYPE` (stop, resize, start, wait).
    pub resize_command: Option<String>,
    /// The same by hand: the exact gcloud commands, in order (empty when there is nothing to
    /// run).
    pub commands: Vec<String>,
    pub price_before_usd_month: Option<f64>,
    pub price_after_usd_month: Option<f64>,
    pub downtime: String,
    pub memory_before: u64,
    pub memory_after: u64,
    /// For `RaiseLimit`: the compose service.
    pub service: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub low_available: u64,
    /// PSI `some avg10`, percent.
    pub pressure_pct: f64,
    pub sustained_secs: u64,
    pub interval_secs: u64,
}

/// Everything the advisor looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub machine: &'a Machine,
    pub host: &'a HostMemory,
    pub containers: &'a [ContainerMemory],
    /// Docker events within the history window.
    pub events: &'a [MemoryEvent],
    pub samples: &'a Ring<Sample>,
    /// The kernel's OOM kill count when sampling started.
    pub oom_baseline: Option<u64>,
    pub week: Option<WeekSummary>,
    pub thresholds: Thresholds,
}

/// A container that was OOM-killed, with what is known about its limit.
#[derive(Debug, Clone)]
struct Oom {
    container: String,
    service: String,
    at: Option<DateTime<Utc>>,
    limit: Option<u64>,
    events: u64,
}

pub fn advise(inputs: &Inputs) -> Vec<Advice> {
    let host = inputs.host;
    let ooms = container_ooms(inputs);
    let (limit_bound, machine_bound): (Vec<&Oom>, Vec<&Oom>) = ooms.values().partition(|o| {
        o.limit
            .is_some_and(|l| l < host.total / 10 * 9 && host.available >= l)
    });
    let mut advice: Vec<Advice> = limit_bound.iter().map(|o| raise_limit(o, host)).collect();

    let mut reasons = Vec::new();
    for o in &machine_bound {
        reasons.push(format!(
            "container {} was OOM-killed (exit 137){}",
            o.container,
            at(o.at)
        ));
    }
    let kernel_kills = kernel_kills_in_window(inputs);
    let explained: u64 = limit_bound.iter().map(|o| o.events.max(1)).sum();
    let host_kills = kernel_kills.saturating_sub(explained);
    if host_kills > 0 && machine_bound.is_empty() {
        reasons.push(format!(
            "the kernel OOM-killed {host_kills} process{} in the last {}",
            if host_kills == 1 { "" } else { "es" },
            window_text(inputs)
        ));
    }
    let t = &inputs.thresholds;
    if let Some(e) = sustained(inputs.samples, t, |s| Some(s.available < t.low_available)) {
        let lowest = window_values(inputs.samples, &e, |s| Some(s.available as f64))
            .fold(f64::INFINITY, f64::min);
        reasons.push(format!(
            "available memory was under {} in {:.0}% of the samples for {} (lowest {}), until {}",
            human(t.low_available),
            e.share * 100.0,
            duration_text(e.end - e.start),
            human(lowest as u64),
            clock(e.end)
        ));
    }
    if let Some(e) = sustained(inputs.samples, t, |s| {
        s.pressure_some_avg10.map(|p| p as f64 >= t.pressure_pct)
    }) {
        let peak = window_values(inputs.samples, &e, |s| {
            s.pressure_some_avg10.map(|p| p as f64)
        })
        .fold(0.0, f64::max);
        reasons.push(format!(
            "tasks stalled on memory (PSI some avg10 ≥ {}%) in {:.0}% of the samples for {} \
             (peak {peak:.1}%), until {}",
            t.pressure_pct,
            e.share * 100.0,
            duration_text(e.end - e.start),
            clock(e.end)
        ));
    }
    if !reasons.is_empty() {
        advice.push(upgrade(inputs.machine, host, reasons.join("; ")));
    } else if ooms.is_empty()
        && kernel_kills == 0
        && let Some(week) = inputs.week
        && let Some(a) = step_down(inputs.machine, week, t)
    {
        advice.push(a);
    }
    advice
}

/// OOM-killed containers, from the watcher's events and from `State.OOMKilled`, one per container.
fn container_ooms(inputs: &Inputs) -> BTreeMap<String, Oom> {
    let mut ooms: BTreeMap<String, Oom> = BTreeMap::new();
    let limit_of = |id: &str| {
        inputs
            .containers
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.limit)
    };
    for e in inputs.events.iter().filter(|e| e.kind == EventKind::Oom) {
        let entry = ooms.entry(e.container_id.clone()).or_insert_with(|| Oom {
            container: e.container.clone(),
            service: e.service.clone(),
            at: None,
            limit: limit_of(&e.container_id),
            events: 0,
        });
        entry.events += 1;
        entry.at = entry.at.max(Some(e.at));
    }
    for c in inputs.containers.iter().filter(|c| c.oom_killed) {
        let entry = ooms.entry(c.id.clone()).or_insert_with(|| Oom {
            container: c.name.clone(),
            service: c.service.clone(),
            at: None,
            limit: c.limit,
            events: 0,
        });
        entry.at = entry.at.max(c.finished_at);
    }
    ooms
}

fn kernel_kills_in_window(inputs: &Inputs) -> u64 {
    let start = if inputs.samples.is_full() {
        inputs.samples.oldest().and_then(|s| s.oom_kills_total)
    } else {
        inputs.oom_baseline
    };
    match (start, inputs.host.oom_kills_total) {
        (Some(start), Some(now)) => now.saturating_sub(start),
        _ => 0,
    }
}

fn raise_limit(o: &Oom, host: &HostMemory) -> Advice {
    let limit = o.limit.unwrap_or_default();
    let new_limit = (limit * 2).div_ceil(MIB) * MIB;
    Advice {
        kind: AdviceKind::RaiseLimit,
        reason: format!(
            "container {} hit its memory limit of {} and was OOM-killed (exit 137){}",
            o.container,
            human(limit),
            at(o.at)
        ),
        summary: format!(
            "Raise mem_limit of service {} from {} to {} in the compose file, then run \
             `clawops up`: the host still has {} available, so no bigger machine is needed.",
            o.service,
            human(limit),
            human(new_limit),
            human(host.available)
        ),
        from_machine_type: None,
        to_machine_type: None,
        resize_command: None,
        commands: Vec::new(),
        price_before_usd_month: None,
        price_after_usd_month: None,
        downtime: "the service's container is recreated (its cold start)".into(),
        memory_before: limit,
        memory_after: new_limit,
        service: Some(o.service.clone()),
    }
}

fn upgrade(machine: &Machine, host: &HostMemory, reason: String) -> Advice {
    let current = machine
        .on_gce
        .then(|| machine_type(&machine.machine_type))
        .flatten();
    let target = match current {
        Some((i, _)) => LADDER.get(i + 1),
        // An unlisted type: the smallest listed one with at least twice this host's RAM.
        None if machine.on_gce => LADDER.iter().find(|m| m.memory >= host.total * 2),
        None => None,
    };
    let memory_before = current.map_or(host.total, |(_, m)| m.memory);
    match target {
        Some(to) if Machine::known(&machine.name).is_some() => {
            let from = current.map(|(_, m)| m);
            let price = match from {
                Some(f) => format!(
                    " ({} → {}, ≈${:.2} → ${:.2}/month, us-central1 list price{})",
                    human(f.memory),
                    human(to.memory),
                    f.usd_month,
                    to.usd_month,
                    free_tier_note(f)
                ),
                None => format!(
                    " ({}, ≈${:.2}/month, us-central1 list price)",
                    human(to.memory),
                    to.usd_month
                ),
            };
            Advice {
                kind: AdviceKind::Upgrade,
                summary: format!(
                    "Move {} from {} to {}{price}.",
                    machine.name, machine.machine_type, to.name
                ),
                reason,
                from_machine_type: Some(machine.machine_type.clone()),
                to_machine_type: Some(to.name.into()),
                resize_command: Some(resize_command(to.name)),
                commands: resize_commands(machine, to.name),
                price_before_usd_month: from.map(|f| f.usd_month),
                price_after_usd_month: Some(to.usd_month),
                downtime: GCE_DOWNTIME.into(),
                memory_before,
                memory_after: to.memory,
                service: None,
            }
        }
        _ => {
            let memory_after = (host.total * 2).div_ceil(GIB) * GIB;
            let summary = format!(
                "Give this machine{} at least {} of RAM (it has {}).",
                gce_name(machine),
                human(memory_after),
                human(host.total)
            );
            let sizes = (memory_before, memory_after);
            unlisted(AdviceKind::Upgrade, machine, summary, reason, sizes)
        }
    }
}

/// A week with room to spare: the next smaller size would still hold the peak comfortably.
fn step_down(machine: &Machine, week: WeekSummary, t: &Thresholds) -> Option<Advice> {
    if week.oom_kills > 0 || f64::from(week.max_pressure_some_avg10) >= t.pressure_pct / 2.0 {
        return None;
    }
    let room = Room {
        week,
        low_available: t.low_available,
    };
    let reason = format!(
        "for the last 7 days ({} hours sampled) at most {} of {} was in use, with no OOM kills \
         and memory pressure at most {:.1}%",
        week.hours,
        human(week.peak_used),
        human(week.total),
        week.max_pressure_some_avg10
    );
    let current = machine
        .on_gce
        .then(|| machine_type(&machine.machine_type))
        .flatten();
    match current {
        Some((i, from)) => step_down_listed(machine, (i, from), &room, reason),
        None => step_down_unlisted(machine, &room, reason),
    }
}

/// What a smaller machine would have to hold.
struct Room {
    week: WeekSummary,
    low_available: u64,
}

impl Room {
    /// The week's peak fits in 60% of `memory` and leaves twice the low-memory threshold.
    fn fits(&self, memory: u64) -> bool {
        self.week.peak_used <= memory / 10 * 6
            && memory.saturating_sub(self.week.peak_used) >= 2 * self.low_available
    }
}

/// On a listed GCE type: the next rung down, when it fits.
fn step_down_listed(
    machine: &Machine,
    (i, from): (usize, &MachineType),
    room: &Room,
    reason: String,
) -> Option<Advice> {
    let to = LADDER[..i].last().filter(|m| room.fits(m.memory))?;
    Machine::known(&machine.name)?;
    let free = if to.name == "e2-micro" {
        "; one e2-micro per billing account is free-tier eligible in us-west1, us-central1 \
         and us-east1"
    } else {
        ""
    };
    Some(Advice {
        kind: AdviceKind::Downgrade,
        reason,
        summary: format!(
            "{} may step down from {} to {} ({} would still leave {} free at the peak; \
             ≈${:.2} → ${:.2}/month, us-central1 list price{free}).",
            machine.name,
            from.name,
            to.name,
            human(to.memory),
            human(to.memory - room.week.peak_used),
            from.usd_month,
            to.usd_month
        ),
        from_machine_type: Some(from.name.into()),
        to_machine_type: Some(to.name.into()),
        resize_command: Some(resize_command(to.name)),
        commands: resize_commands(machine, to.name),
        price_before_usd_month: Some(from.usd_month),
        price_after_usd_month: Some(to.usd_month),
        downtime: GCE_DOWNTIME.into(),
        memory_before: from.memory,
        memory_after: to.memory,
        service: None,
    })
}

/// Off GCE (or an unlisted type): the smallest power-of-two GiB size that fits, if it is at
/// most half of what the host has.
fn step_down_unlisted(machine: &Machine, room: &Room, reason: String) -> Option<Advice> {
    let total = room.week.total;
    let target = (0..8).map(|p| GIB << p).find(|&m| room.fits(m))?;
    if target > total / 2 {
        return None;
    }
    let summary = format!(
        "This machine{} may step down to {} of RAM (it has {}).",
        gce_name(machine),
        human(target),
        human(total)
    );
    let sizes = (total, target);
    Some(unlisted(
        AdviceKind::Downgrade,
        machine,
        summary,
        reason,
        sizes,
    ))
}

/// Advice for a machine without a listed type to move to: a memory size, no command or price.
fn unlisted(
    kind: AdviceKind,
    machine: &Machine,
    summary: String,
    reason: String,
    (memory_before, memory_after): (u64, u64),
) -> Advice {
    Advice {
        kind,
        summary,
        reason,
        from_machine_type: Machine::known(&machine.machine_type).map(str::to_owned),
        to_machine_type: None,
        resize_command: None,
        commands: Vec::new(),
        price_before_usd_month: None,
        price_after_usd_month: None,
        downtime: if machine.on_gce {
            GCE_DOWNTIME.into()
        } else {
            HOST_DOWNTIME.into()
        },
        memory_before,
        memory_after,
        service: None,
    }
}

fn free_tier_note(from: &MachineType) -> &'static str {
    if from.name == "e2-micro" {
        "; e2-micro is free-tier eligible, e2-small is not"
    } else {
        ""
    }
}

fn gce_name(machine: &Machine) -> String {
    match Machine::known(&machine.name) {
        Some(name) if machine.on_gce => format!(" ({name})"),
        _ => String::new(),
    }
}

/// The clawops command that resizes this VM. The agent cannot know which `--via` or `-t` the
/// operator reaches it with, so the command names only the type.
fn resize_command(to: &str) -> String {
    format!("clawops resize {to}")
}

/// stop → set-machine-type → start, with the VM's name, zone and (when known) project.
pub fn resize_commands(machine: &Machine, to: &str) -> Vec<String> {
    let mut location = format!("--zone {}", quote(&machine.zone));
    if let Some(project) = Machine::known(&machine.project) {
        location.push_str(&format!(" --project {}", quote(project)));
    }
    let name = quote(&machine.name);
    vec![
        format!("gcloud compute instances stop {name} {location}"),
        format!(
            "gcloud compute instances set-machine-type {name} --machine-type {} {location}",
            quote(to)
        ),
        format!("gcloud compute instances start {name} {location}"),
    ]
}

/// Quotes for a POSIX shell when needed (GCE names never need it; other input might).
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A time span in which a condition held, in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    pub start: i64,
    pub end: i64,
    pub share: f64,
}

/// The most recent window of `sustained_secs` in which at least 80% of the samples meet
/// `condition` (samples where it is undefined are skipped). The window must be covered by
/// samples: its span reaches the window length (less one interval) and at least half of the
/// expected samples are there, so a gap in sampling cannot fake a sustained condition.
pub fn sustained(
    samples: &Ring<Sample>,
    t: &Thresholds,
    condition: impl Fn(&Sample) -> Option<bool>,
) -> Option<Episode> {
    let points: Vec<(i64, bool)> = samples
        .iter()
        .filter_map(|s| condition(s).map(|c| (s.at, c)))
        .collect();
    let window = t.sustained_secs as i64;
    let interval = t.interval_secs.max(1) as i64;
    let needed = ((window / interval) as usize / 2).max(1);
    let mut best = None;
    let mut left = 0;
    let mut hits = 0usize;
    for right in 0..points.len() {
        hits += usize::from(points[right].1);
        while points[right].0 - points[left].0 > window {
            hits -= usize::from(points[left].1);
            left += 1;
        }
        let len = right - left + 1;
        let span = points[right].0 - points[left].0;
        let share = hits as f64 / len as f64;
        if span >= window - interval && len >= needed && share >= SUSTAINED_SHARE {
            best = Some(Episode {
                start: points[left].0,
                end: points[right].0,
                share,
            });
        }
    }
    best
}

fn window_values<'a>(
    samples: &'a Ring<Sample>,
    e: &Episode,
    value: impl Fn(&Sample) -> Option<f64> + 'a,
) -> impl Iterator<Item = f64> + 'a {
    let (start, end) = (e.start, e.end);
    samples
        .iter()
        .filter(move |s| s.at >= start && s.at <= end)
        .filter_map(value)
}

fn window_text(inputs: &Inputs) -> String {
    match (inputs.samples.oldest(), inputs.samples.newest()) {
        (Some(a), Some(b)) if b.at > a.at => duration_text(b.at - a.at),
        _ => "moments".into(),
    }
}

/// `150 MiB`, `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

fn duration_text(secs: i64) -> String {
    match secs {
        ..60 => format!("{}s", secs.max(0)),
        60..3600 => format!("{} min", secs / 60),
        _ => format!("{:.1} h", secs as f64 / 3600.0),
    }
}

fn clock(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn at(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| format!(" at {}", clock(t.timestamp())))
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "advice_tests.rs"]
mod tests;
