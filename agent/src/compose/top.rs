//! Top-level named definitions (`networks:`, `volumes:`) and the errors every top-level key
//! reports: a key path without a service.
use std::{collections::BTreeMap, path::Path};

use serde_json::Value;

use super::{
    ComposeError,
    model::{ResourceDef, Vars},
    values,
};

/// Top-level `networks:` or `volumes:` (`top`), merged into `out` (a later file's keys win).
pub fn definitions(
    file: &Path,
    top: &str,
    value: &Value,
    out: &mut BTreeMap<String, ResourceDef>,
) -> Result<(), ComposeError> {
    let Value::Object(map) = value else {
        return Err(invalid(file, top.into(), "must be a mapping of names"));
    };
    for (name, spec) in map {
        let mut def = out.remove(name).unwrap_or_default();
        match spec {
            Value::Null => {}
            Value::Object(fields) => {
                for (k, v) in fields {
                    definition_field(file, &format!("{top}.{name}.{k}"), k, v, &mut def)?;
                }
            }
            _ => {
                let key = format!("{top}.{name}");
                return Err(invalid(file, key, "must be a mapping or empty"));
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
    def: &mut ResourceDef,
) -> Result<(), ComposeError> {
    let text =
        || values::scalar_string(v).ok_or_else(|| invalid(file, key.into(), "must be a string"));
    match field {
        "name" => def.name = Some(text()?),
        "driver" => def.driver = Some(text()?),
        "external" => {
            def.external =
                values::boolean(v).map_err(|e| invalid(file, key.into(), &e.to_string()))?
        }
        "driver_opts" => def.driver_opts = string_map(file, key, v)?,
        "labels" => def.labels = string_map(file, key, v)?,
        x if x.starts_with("x-") => {}
        _ => return Err(unsupported(file, key)),
    }
    Ok(())
}

/// A mapping of strings (`driver_opts`, `labels`) of a top-level definition.
fn string_map(file: &Path, key: &str, v: &Value) -> Result<Vars, ComposeError> {
    let Value::Object(m) = v else {
        return Err(invalid(file, key.into(), "must be a mapping"));
    };
    m.iter()
        .map(|(k, val)| {
            let s = values::scalar_string(val)
                .ok_or_else(|| invalid(file, format!("{key}.{k}"), "must be a string"))?;
            Ok((k.clone(), s))
        })
        .collect()
}

/// A top-level key with a bad value.
pub(super) fn invalid(file: &Path, key: String, message: &str) -> ComposeError {
    ComposeError::Invalid {
        file: file.to_owned(),
        service: None,
        key,
        message: message.to_owned(),
    }
}

/// A top-level key clawops does not implement.
pub(super) fn unsupported(file: &Path, key: &str) -> ComposeError {
    ComposeError::UnsupportedKey {
        file: file.to_owned(),
        service: None,
        key: key.to_owned(),
    }
}
