//! `networks`: the top-level definitions (named, `external`, driver and its options, labels)
//! and a service's list or mapping of networks with `aliases`.
use std::collections::BTreeMap;

use serde_json::Value;

use super::{ComposeError, model::ServiceNetwork, parse::Loc, values};

/// A service's `networks:`: a list of names, or a mapping of names to `{aliases}` (or null).
pub fn service_networks(
    loc: &Loc<'_>,
    v: &Value,
) -> Result<BTreeMap<String, ServiceNetwork>, ComposeError> {
    let mut out = BTreeMap::new();
    match v {
        Value::Array(items) => {
            for item in items {
                let name = values::scalar_string(item).ok_or_else(|| {
                    loc.invalid("networks", format!("{item} is not a network name"))
                })?;
                out.insert(name, ServiceNetwork::default());
            }
        }
        Value::Object(map) => {
            for (name, spec) in map {
                out.insert(name.clone(), service_network(loc, name, spec)?);
            }
        }
        _ => return Err(loc.invalid("networks", "must be a list or a mapping of networks")),
    }
    Ok(out)
}

fn service_network(
    loc: &Loc<'_>,
    name: &str,
    spec: &Value,
) -> Result<ServiceNetwork, ComposeError> {
    let mut net = ServiceNetwork::default();
    let fields = match spec {
        Value::Null => return Ok(net),
        Value::Object(fields) => fields,
        _ => return Err(loc.invalid(&format!("networks.{name}"), "must be a mapping or empty")),
    };
    for (k, v) in fields {
        let key = format!("networks.{name}.{k}");
        match k.as_str() {
            "aliases" => {
                let Value::Array(items) = v else {
                    return Err(loc.invalid(&key, "must be a list of names"));
                };
                for item in items {
                    let alias = values::scalar_string(item)
                        .ok_or_else(|| loc.invalid(&key, format!("{item} is not a name")))?;
                    if !net.aliases.contains(&alias) {
                        net.aliases.push(alias);
                    }
                }
            }
            x if x.starts_with("x-") => {}
            _ => return Err(loc.unsupported(&key)),
        }
    }
    Ok(net)
}
