//! `deploy.resources` (limits: cpus, memory, pids; reservations: memory) and `pull_policy`.
//! Only what a single non-swarm engine does is accepted; other `deploy` keys are refused by name.
use serde_json::Value;

use super::{ComposeError, model::PullPolicy, parse::Loc, values};

/// `deploy.resources.limits`, applied over `mem_limit`/`cpus` when the service is finalized.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
}

/// What `deploy:` sets.
#[derive(Debug, Clone, Default)]
pub struct Deploy {
    pub limits: Limits,
    pub pids: Option<i64>,
    pub mem_reservation: Option<i64>,
    pub warnings: Vec<String>,
}

pub fn deploy(loc: &Loc<'_>, v: &Value) -> Result<Deploy, ComposeError> {
    let mut d = Deploy::default();
    for (k, val) in super::parse::object(loc, "deploy", v)? {
        match k.as_str() {
            "resources" => resources(loc, val, &mut d)?,
            x if x.starts_with("x-") => {}
            _ => return Err(loc.unsupported(&format!("deploy.{k}"))),
        }
    }
    Ok(d)
}

fn resources(loc: &Loc<'_>, v: &Value, d: &mut Deploy) -> Result<(), ComposeError> {
    for (k, val) in super::parse::object(loc, "deploy.resources", v)? {
        match k.as_str() {
            "limits" => limits(loc, val, d)?,
            "reservations" => reservations(loc, val, d)?,
            _ => return Err(loc.unsupported(&format!("deploy.resources.{k}"))),
        }
    }
    Ok(())
}

fn limits(loc: &Loc<'_>, v: &Value, d: &mut Deploy) -> Result<(), ComposeError> {
    for (k, val) in super::parse::object(loc, "deploy.resources.limits", v)? {
        let key = format!("deploy.resources.limits.{k}");
        let invalid = |e: values::ValueError| loc.invalid(&key, e.to_string());
        match k.as_str() {
            "cpus" => d.limits.cpus = Some(values::float(val).map_err(invalid)?),
            "memory" => d.limits.memory = Some(values::bytes(val).map_err(invalid)?),
            "pids" => d.pids = Some(values::integer(val).map_err(invalid)?),
            _ => return Err(loc.unsupported(&key)),
        }
    }
    Ok(())
}

fn reservations(loc: &Loc<'_>, v: &Value, d: &mut Deploy) -> Result<(), ComposeError> {
    for (k, val) in super::parse::object(loc, "deploy.resources.reservations", v)? {
        let key = format!("deploy.resources.reservations.{k}");
        let invalid = |e: values::ValueError| loc.invalid(&key, e.to_string());
        match k.as_str() {
            "memory" => d.mem_reservation = Some(values::bytes(val).map_err(invalid)?),
            "cpus" => {
                values::float(val).map_err(invalid)?;
                d.warnings.push(format!(
                    "service {}: `{key}` has no effect on a single engine (docker compose ignores it too)",
                    loc.service
                ));
            }
            _ => return Err(loc.unsupported(&key)),
        }
    }
    Ok(())
}

pub fn pull_policy(loc: &Loc<'_>, s: &str) -> Result<PullPolicy, ComposeError> {
    Ok(match s {
        "always" => PullPolicy::Always,
        "never" => PullPolicy::Never,
        "missing" | "if_not_present" => PullPolicy::Missing,
        "build" => PullPolicy::Build,
        other => {
            return Err(loc.invalid(
                "pull_policy",
                format!("{other:?}: use always, never, missing, if_not_present or build"),
            ));
        }
    })
}

/// `limits` over `mem_limit`/`cpus`; compose refuses two different values for one setting.
/// `invalid` makes the error for a key.
pub fn apply_limits(
    limits: &Limits,
    mem_limit: &mut Option<i64>,
    cpus: &mut Option<f64>,
    invalid: &dyn Fn(&str, String) -> ComposeError,
) -> Result<(), ComposeError> {
    if let Some(m) = limits.memory {
        if mem_limit.is_some_and(|old| old != m) {
            return Err(invalid(
                "deploy.resources.limits.memory",
                "differs from `mem_limit`: set one of them".into(),
            ));
        }
        *mem_limit = Some(m);
    }
    if let Some(c) = limits.cpus {
        if cpus.is_some_and(|old| old != c) {
            return Err(invalid(
                "deploy.resources.limits.cpus",
                "differs from `cpus`: set one of them".into(),
            ));
        }
        *cpus = Some(c);
    }
    Ok(())
}
