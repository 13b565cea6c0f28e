//! `networks`: the top-level definitions (named, `external`, driver and its options, labels)
//! and a service's list or mapping of networks with `aliases`.
use std::{collections::BTreeMap, path::Path};

use serde_json::Value;

use super::{
    ComposeError,
    model::{NetworkDef, ServiceNetwork},
    parse::Loc,
    values,
};

/// Top-level `networks:`, merged into `out` (a later file's keys win).
pub fn definitions(
    file: &Path,
    value: &Value,
    out: &mut BTreeMap<String, NetworkDef>,
) -> Result<(), ComposeError> {
    let Value::Object(map) = value else {
        return Err(top_invalid(
            file,
            "networks".into(),
            "must be a mapping of network names",
        ));
    };
    for (name, spec) in map {
        let mut def = out.remove(name).unwrap_or_default();
        match spec {
            Value::Null => {}
            Value::Object(fields) => {
                for (k, v) in fields {
                    definition_field(file, &format!("networks.{name}.{k}"), k, v, &mut def)?;
                }
            }
            _ => {
                return Err(top_invalid(
                    file,
                    format!("networks.{name}"),
                    "must be a mapping or empty",
                ));
            }
        }
        out.insert(name.clone(), def);
    }
    Ok(())
}

fn definition_field(
    file: &Path,
    key: &str,
    field: &str,
    v: &Value,
    def: &mut NetworkDef,
) -> Result<(), ComposeError> {
    let text = || {
        values::scalar_string(v).ok_or_else(|| top_invalid(file, key.into(), "must be a string"))
    };
    match field {
        "name" => def.name = Some(text()?),
        "driver" => def.driver = Some(text()?),
        "external" => {
            def.external =
                values::boolean(v).map_err(|e| top_invalid(file, key.into(), &e.to_string()))?
        }
        "driver_opts" => def.driver_opts = string_map(file, key, v)?,
        "labels" => def.labels = string_map(file, key, v)?,
        x if x.starts_with("x-") => {}
        _ => {
            return Err(ComposeError::UnsupportedKey {
                file: file.to_owned(),
                service: None,
                key: key.to_owned(),
            });
        }
    }
    Ok(())
}

/// A mapping of strings (`driver_opts`, `labels`) of a top-level definition.
pub(super) fn string_map(
    file: &Path,
    key: &str,
    v: &Value,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let Value::Object(m) = v else {
        return Err(top_invalid(file, key.into(), "must be a mapping"));
    };
    m.iter()
        .map(|(k, val)| {
            let s = values::scalar_string(val)
                .ok_or_else(|| top_invalid(file, format!("{key}.{k}"), "must be a string"))?;
            Ok((k.clone(), s))
        })
        .collect()
}

pub(super) fn top_invalid(file: &Path, key: String, message: &str) -> ComposeError {
    ComposeError::Invalid {
        file: file.to_owned(),
        service: None,
        key,
        message: message.to_owned(),
    }
}

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
