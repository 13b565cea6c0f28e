//! The advisor's rules on synthetic inputs (the real-engine cases are in agent/tests/memory.rs).
use super::*;
use crate::memory::headroom::WeekSummary;

fn gce(machine_type: &str, project: &str) -> Machine {
    Machine {
        on_gce: true,
        name: "openclaw-vm".into(),
        zone: "us-central1-a".into(),
        machine_type: machine_type.into(),
        project: project.into(),
    }
}

fn host(total: u64, available: u64, oom: u64) -> HostMemory {
    HostMemory {
        total,
        available,
        used: total - available,
        swap_total: 0,
        swap_used: 0,
        pressure: None,
        oom_kills_total: Some(oom),
        oom_kills_since_start: 0,
    }
}

const T: Thresholds = Thresholds {
    low_available: 150 * MIB,
    pressure_pct: 10.0,
    sustained_secs: 300,
    interval_secs: 10,
};

fn samples(n: i64, available: u64, pressure: f32) -> Ring<Sample> {
    let mut r = Ring::new(8640);
    for i in 0..n {
        r.push(Sample {
            at: 1_700_000_000 + i * 10,
            available,
            container_usage: Some(400 * MIB),
            pressure_some_avg10: Some(pressure),
            oom_kills_total: Some(3),
        });
    }
    r
}

fn inputs<'a>(
    machine: &'a Machine,
    host: &'a HostMemory,
    containers: &'a [ContainerMemory],
    events: &'a [MemoryEvent],
    ring: &'a Ring<Sample>,
) -> Inputs<'a> {
    Inputs {
        machine,
        host,
        containers,
        events,
        samples: ring,
        oom_baseline: Some(3),
        week: None,
        thresholds: T,
    }
}

#[test]
fn healthy_machine_gets_no_advice() {
    let (m, h, r) = (
        gce("e2-small", "p"),
        host(2 * GIB, GIB, 3),
        samples(100, GIB, 0.0),
    );
    assert!(advise(&inputs(&m, &h, &[], &[], &r)).is_empty());
}

#[test]
fn kernel_oom_kill_on_e2_micro_means_e2_small() {
    let (m, h, r) = (
        gce("e2-micro", "my-proj"),
        host(GIB, 300 * MIB, 4),
        samples(10, 300 * MIB, 0.0),
    );
    let a = advise(&inputs(&m, &h, &[], &[], &r));
    assert_eq!(a.len(), 1, "{a:?}");
    let a = &a[0];
    assert_eq!(a.kind, AdviceKind::Upgrade);
    assert_eq!(a.to_machine_type.as_deref(), Some("e2-small"));
    assert!(a.reason.contains("OOM-killed 1 process "), "{}", a.reason);
    assert_eq!(a.resize_command.as_deref(), Some("clawops resize e2-small"));
    assert_eq!(
        a.commands,
        [
            "gcloud compute instances stop openclaw-vm --zone us-central1-a --project my-proj",
            "gcloud compute instances set-machine-type openclaw-vm --machine-type e2-small --zone us-central1-a --project my-proj",
            "gcloud compute instances start openclaw-vm --zone us-central1-a --project my-proj",
        ]
    );
    assert_eq!(a.price_before_usd_month, Some(6.11));
    assert_eq!(a.price_after_usd_month, Some(12.23));
    assert!(a.downtime.contains("stop and start"));
    assert!(a.summary.contains("free-tier"), "{}", a.summary);
}

#[test]
fn sustained_low_memory_on_e2_small_means_e2_medium_without_project_flag() {
    let (m, h, r) = (
        gce("e2-small", "unknown"),
        host(2 * GIB, 100 * MIB, 3),
        samples(40, 100 * MIB, 0.0),
    );
    let a = advise(&inputs(&m, &h, &[], &[], &r));
    assert_eq!(a[0].to_machine_type.as_deref(), Some("e2-medium"));
    assert!(
        a[0].reason.contains("under 150 MiB in 100% of the samples"),
        "{}",
        a[0].reason
    );
    assert!(a[0].commands.iter().all(|c| !c.contains("--project")));
    assert_eq!(
        (a[0].price_before_usd_month, a[0].price_after_usd_month),
        (Some(12.23), Some(24.46))
    );
}

#[test]
fn a_short_dip_is_not_sustained() {
    let mut r = samples(40, GIB, 0.0);
    for i in 0..5 {
        r.push(Sample {
            at: 1_700_000_400 + i * 10,
            available: 50 * MIB,
            container_usage: None,
            pressure_some_avg10: Some(0.0),
            oom_kills_total: Some(3),
        });
    }
    let (m, h) = (gce("e2-micro", "p"), host(GIB, 50 * MIB, 3));
    assert!(advise(&inputs(&m, &h, &[], &[], &r)).is_empty());
}

#[test]
fn sustained_pressure_is_a_reason() {
    let (m, h, r) = (
        gce("e2-micro", "p"),
        host(GIB, 400 * MIB, 3),
        samples(40, 400 * MIB, 25.0),
    );
    let a = advise(&inputs(&m, &h, &[], &[], &r));
    assert!(a[0].reason.contains("PSI some avg10"), "{}", a[0].reason);
    assert!(a[0].reason.contains("peak 25.0%"), "{}", a[0].reason);
}

#[test]
fn off_gce_advice_speaks_gib() {
    let m = Machine::unknown();
    let (h, r) = (host(GIB, 300 * MIB, 5), samples(10, 300 * MIB, 0.0));
    let a = advise(&inputs(&m, &h, &[], &[], &r));
    assert_eq!(a[0].kind, AdviceKind::Upgrade);
    assert!(a[0].commands.is_empty());
    assert_eq!(a[0].to_machine_type, None);
    assert_eq!(a[0].memory_after, 2 * GIB);
    assert!(
        a[0].summary.contains("at least 2.0 GiB of RAM"),
        "{}",
        a[0].summary
    );
}

fn oom_container(limit: Option<u64>) -> ContainerMemory {
    ContainerMemory {
        name: "p-gw-1".into(),
        id: "abc".into(),
        service: "gw".into(),
        state: "exited".into(),
        running: false,
        pid: 0,
        usage: None,
        limit,
        effective_limit: limit.unwrap_or(GIB),
        source: None,
        oom_killed: true,
        exit_code: 137,
        restart_count: 0,
        finished_at: DateTime::from_timestamp(1_700_000_100, 0),
    }
}

#[test]
fn container_at_its_own_small_limit_gets_raise_limit() {
    let (m, h, r) = (
        gce("e2-medium", "p"),
        host(4 * GIB, 3 * GIB, 4),
        samples(10, 3 * GIB, 0.0),
    );
    let c = [oom_container(Some(32 * MIB))];
    let a = advise(&inputs(&m, &h, &c, &[], &r));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].kind, AdviceKind::RaiseLimit);
    assert_eq!(a[0].service.as_deref(), Some("gw"));
    assert_eq!(a[0].memory_after, 64 * MIB);
    assert!(a[0].summary.contains("from 32 MiB to 64 MiB"));
}

#[test]
fn container_oom_without_room_to_raise_means_upgrade() {
    let (m, h, r) = (
        gce("e2-micro", "p"),
        host(GIB, 200 * MIB, 4),
        samples(10, 200 * MIB, 0.0),
    );
    let c = [oom_container(Some(600 * MIB))];
    let a = advise(&inputs(&m, &h, &c, &[], &r));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].kind, AdviceKind::Upgrade);
    assert!(
        a[0].reason.contains("p-gw-1 was OOM-killed"),
        "{}",
        a[0].reason
    );
}

fn week(total: u64, peak_used: u64) -> WeekSummary {
    WeekSummary {
        hours: 168,
        total,
        peak_used,
        max_pressure_some_avg10: 0.2,
        oom_kills: 0,
    }
}

#[test]
fn a_week_of_headroom_may_step_down() {
    let (m, h, r) = (
        gce("e2-medium", "p"),
        host(4 * GIB, 3 * GIB, 3),
        samples(10, 3 * GIB, 0.0),
    );
    let mut i = inputs(&m, &h, &[], &[], &r);
    i.week = Some(week(4 * GIB, 900 * MIB));
    let a = advise(&i);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].kind, AdviceKind::Downgrade);
    assert_eq!(a[0].to_machine_type.as_deref(), Some("e2-small"));
    assert!(a[0].commands[1].contains("--machine-type e2-small"));
    assert!(a[0].reason.contains("7 days"));
    // Too close to the smaller size: stay.
    i.week = Some(week(4 * GIB, 1500 * MIB));
    assert!(advise(&i).is_empty());
    // e2-micro is the bottom of the ladder.
    let micro = gce("e2-micro", "p");
    i.machine = &micro;
    i.week = Some(week(GIB, 100 * MIB));
    assert!(advise(&i).is_empty());
}

#[test]
fn off_gce_step_down_in_gib() {
    let m = Machine::unknown();
    let (h, r) = (host(16 * GIB, 15 * GIB, 3), samples(10, 15 * GIB, 0.0));
    let mut i = inputs(&m, &h, &[], &[], &r);
    i.week = Some(week(16 * GIB, GIB));
    let a = advise(&i);
    assert_eq!(a[0].kind, AdviceKind::Downgrade);
    assert_eq!(a[0].memory_after, 2 * GIB);
    assert!(a[0].commands.is_empty());
}

#[test]
fn quoting_only_when_needed() {
    assert_eq!(quote("openclaw-vm"), "openclaw-vm");
    assert_eq!(quote("a b"), "'a b'");
    assert_eq!(quote("it's"), r"'it'\''s'");
}
