//! MemoryStats: the memory report as proto messages.
use clawops_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use crate::{
    context::AgentContext,
    memory::{self, AdviceKind},
};

/// More than a day at one sample per second; beyond this the answer only gets bigger.
const MAX_SAMPLES_CAP: usize = 100_000;

pub async fn memory_stats(
    ctx: &AgentContext,
    req: Request<pb::MemoryRequest>,
) -> Result<Response<pb::MemoryReport>, Status> {
    let req = req.into_inner();
    let opts = memory::ReportOptions {
        samples: req.history,
        max_samples: (req.max_samples as usize).min(MAX_SAMPLES_CAP),
    };
    let report = memory::report(&ctx.memory, &ctx.project_engine(), opts).await?;
    Ok(Response::new(to_proto(report)))
}

pub fn to_proto(r: memory::MemoryReport) -> pb::MemoryReport {
    pb::MemoryReport {
        at: Some(timestamp(r.at)),
        host: Some(host(&r.host)),
        containers: r.containers.iter().map(container).collect(),
        agent_rss_bytes: r.agent_rss.unwrap_or(0),
        machine: Some(pb::Machine {
            on_gce: r.machine.on_gce,
            name: r.machine.name,
            zone: r.machine.zone,
            machine_type: r.machine.machine_type,
            project: r.machine.project,
        }),
        advice: r.advice.into_iter().map(advice).collect(),
        history: Some(history(r.history)),
        events: r.events.iter().map(event).collect(),
        docker_error: r.docker_error.unwrap_or_default(),
        events_watcher_connected: r.watcher_connected,
        sampling_since: Some(timestamp(r.sampling_since)),
    }
}

fn host(h: &memory::HostMemory) -> pb::HostMemory {
    let pressure = h.pressure.map_or_else(pb::Pressure::default, |p| {
        let full = p.full.unwrap_or_default();
        pb::Pressure {
            available: true,
            some_avg10: p.some.avg10,
            some_avg60: p.some.avg60,
            some_avg300: p.some.avg300,
            full_avg10: full.avg10,
            full_avg60: full.avg60,
            full_avg300: full.avg300,
            full_available: p.full.is_some(),
        }
    });
    pb::HostMemory {
        total_bytes: h.total,
        available_bytes: h.available,
        used_bytes: h.used,
        swap_total_bytes: h.swap_total,
        swap_used_bytes: h.swap_used,
        pressure: Some(pressure),
        oom_kills_total: h.oom_kills_total.unwrap_or(0),
        oom_kills_since_start: h.oom_kills_since_start,
        oom_kills_available: h.oom_kills_total.is_some(),
    }
}

fn container(c: &memory::ContainerMemory) -> pb::ContainerMemory {
    pb::ContainerMemory {
        name: c.name.clone(),
        id: c.id.clone(),
        service: c.service.clone(),
        running: c.running,
        usage_bytes: c.usage.unwrap_or(0),
        limit_bytes: c.effective_limit,
        percent: c.percent().unwrap_or(0.0),
        oom_killed: c.oom_killed,
        exit_code: c.exit_code,
        restart_count: c.restart_count,
        limited: c.limit.is_some(),
        state: c.state.clone(),
        source: c.source.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        finished_at: c.finished_at.map(timestamp),
    }
}

fn event(e: &memory::MemoryEvent) -> pb::MemoryEvent {
    pb::MemoryEvent {
        at: Some(timestamp(e.at)),
        kind: e.kind.as_str().to_owned(),
        container: e.container.clone(),
        exit_code: e.exit_code.unwrap_or(0),
        service: e.service.clone(),
        container_id: e.container_id.clone(),
    }
}

fn summary(s: Option<memory::Summary>) -> Option<pb::Summary> {
    s.map(|s| pb::Summary {
        min: s.min,
        avg: s.avg,
        max: s.max,
        p95: s.p95,
    })
}

fn history(h: memory::History) -> pb::MemoryHistory {
    pb::MemoryHistory {
        interval_seconds: h.interval_secs.min(u32::MAX as u64) as u32,
        samples: h
            .samples
            .iter()
            .map(|s| pb::MemorySample {
                at: Some(pb_time(s.at)),
                available_bytes: s.available,
                container_usage_bytes: s.container_usage.unwrap_or(0),
                pressure_some_avg10: s.pressure_some_avg10.map_or(0.0, f64::from),
            })
            .collect(),
        available: summary(h.available),
        container_usage: summary(h.container_usage),
        oom_events: h.oom_events,
        kernel_oom_kills: h.kernel_oom_kills,
        span_seconds: h.span_secs,
    }
}

fn pb_time(unix: i64) -> clawops_proto::Timestamp {
    clawops_proto::Timestamp {
        seconds: unix,
        nanos: 0,
    }
}

fn advice(a: memory::Advice) -> pb::Advice {
    let kind = match a.kind {
        AdviceKind::Upgrade => pb::AdviceKind::Upgrade,
        AdviceKind::Downgrade => pb::AdviceKind::Downgrade,
        AdviceKind::RaiseLimit => pb::AdviceKind::RaiseLimit,
    };
    pb::Advice {
        kind: kind as i32,
        reason: a.reason,
        from_machine_type: a.from_machine_type.unwrap_or_default(),
        to_machine_type: a.to_machine_type.unwrap_or_default(),
        commands: a.commands,
        resize_command: a.resize_command.unwrap_or_default(),
        price_before_usd_month: a.price_before_usd_month.unwrap_or(0.0),
        price_after_usd_month: a.price_after_usd_month.unwrap_or(0.0),
        downtime: a.downtime,
        summary: a.summary,
        memory_before_bytes: a.memory_before,
        memory_after_bytes: a.memory_after,
        service: a.service.unwrap_or_default(),
    }
}
