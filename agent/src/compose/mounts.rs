//! Service `volumes` (short `SRC:DST[:OPTS]` and long syntax) and `ports` (short and long).
use serde_json::{Map, Value};

use super::{
    ComposeError,
    model::{Mount, MountKind, Port},
    parse::{Loc, object},
    values,
};

pub(super) fn mount(loc: &Loc<'_>, v: &Value) -> Result<Mount, ComposeError> {
    match v {
        Value::String(spec) => mount_short(loc, spec),
        Value::Object(m) => mount_long(loc, m),
        _ => Err(loc.invalid("volumes", "entries must be strings or mappings")),
    }
}

fn mount_short(loc: &Loc<'_>, spec: &str) -> Result<Mount, ComposeError> {
    let bad = |m: String| loc.invalid("volumes", format!("{spec:?}: {m}"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, o] => (Some(*s), *t, Some(*o)),
        _ => return Err(bad("use SOURCE:TARGET[:OPTIONS]".into())),
    };
    if !target.starts_with('/') {
        return Err(bad(format!(
            "the container path {target:?} must be absolute"
        )));
    }
    let mut m = Mount {
        kind: MountKind::Anonymous,
        target: target.to_owned(),
        read_only: false,
        options: Vec::new(),
        create_host_path: true,
    };
    if let Some(s) = source {
        if s.is_empty() {
            return Err(bad("the source is empty (is a variable unset?)".into()));
        }
        m.kind = if values::is_host_path(s) {
            MountKind::Bind(loc.path(s))
        } else {
            MountKind::Volume(s.to_owned())
        };
    }
    for o in opts.into_iter().flat_map(|o| o.split(',')) {
        match values::mount_option(o).map_err(|e| bad(e.to_string()))? {
            Some(ro) => m.read_only = ro,
            None => m.options.push(o.to_owned()),
        }
    }
    Ok(m)
}

fn mount_long(loc: &Loc<'_>, map: &Map<String, Value>) -> Result<Mount, ComposeError> {
    let mut kind = None;
    let mut source = None;
    let mut m = Mount {
        kind: MountKind::Anonymous,
        target: String::new(),
        read_only: false,
        options: Vec::new(),
        create_host_path: true,
    };
    for (k, v) in map {
        let key = format!("volumes.{k}");
        let text = || values::scalar_string(v).ok_or_else(|| loc.invalid(&key, "must be a string"));
        match k.as_str() {
            "type" => kind = Some(text()?),
            "source" => source = Some(text()?),
            "target" => m.target = text()?,
            "read_only" => m.read_only = values::boolean(v).map_err(|e| loc.invalid(&key, e))?,
            "bind" => {
                for (bk, bv) in object(loc, &key, v)? {
                    let bkey = format!("{key}.{bk}");
                    match bk.as_str() {
                        "create_host_path" => {
                            m.create_host_path =
                                values::boolean(bv).map_err(|e| loc.invalid(&bkey, e))?
                        }
                        "propagation" | "selinux" => {
                            let o = values::scalar_string(bv)
                                .ok_or_else(|| loc.invalid(&bkey, "must be a string"))?;
                            values::mount_option(&o).map_err(|e| loc.invalid(&bkey, e))?;
                            m.options.push(o);
                        }
                        _ => return Err(loc.unsupported(&bkey)),
                    }
                }
            }
            "volume" => {
                for (vk, vv) in object(loc, &key, v)? {
                    let vkey = format!("{key}.{vk}");
                    match vk.as_str() {
                        "nocopy" => {
                            if values::boolean(vv).map_err(|e| loc.invalid(&vkey, e))? {
                                m.options.push("nocopy".into());
                            }
                        }
                        _ => return Err(loc.unsupported(&vkey)),
                    }
                }
            }
            "consistency" => {}
            _ => return Err(loc.unsupported(&key)),
        }
    }
    if !m.target.starts_with('/') {
        return Err(loc.invalid(
            "volumes.target",
            format!("{:?} must be an absolute container path", m.target),
        ));
    }
    m.kind = match (kind.as_deref(), source) {
        (Some("bind"), Some(s)) if !s.is_empty() => MountKind::Bind(loc.path(&s)),
        (Some("bind"), _) => {
            return Err(loc.invalid(
                "volumes.source",
                "a bind mount needs a source path (is a variable unset?)",
            ));
        }
        (Some("volume"), Some(s)) if !s.is_empty() => MountKind::Volume(s),
        (Some("volume"), _) => MountKind::Anonymous,
        (Some("tmpfs"), _) => MountKind::Tmpfs,
        (other, _) => {
            return Err(loc.invalid(
                "volumes.type",
                format!("{other:?}: use bind, volume or tmpfs"),
            ));
        }
    };
    Ok(m)
}

pub(super) fn port(loc: &Loc<'_>, v: &Value) -> Result<Vec<Port>, ComposeError> {
    let invalid = |m: values::ValueError| loc.invalid("ports", m);
    match v {
        Value::Object(map) => {
            let mut target = None;
            let mut published = None;
            let mut ip = String::new();
            let mut proto = "tcp".to_owned();
            for (k, val) in map {
                let key = format!("ports.{k}");
                let text = values::scalar_string(val)
                    .ok_or_else(|| loc.invalid(&key, "must be a string or number"))?;
                match k.as_str() {
                    "target" => target = Some(text),
                    "published" => published = Some(text),
                    "host_ip" => ip = values::host_ip(&text, &text).map_err(invalid)?,
                    "protocol" => proto = values::protocol(&text, &text).map_err(invalid)?,
                    "mode" if text == "host" || text == "ingress" => {}
                    "name" | "app_protocol" => {}
                    _ => return Err(loc.unsupported(&key)),
                }
            }
            let target =
                target.ok_or_else(|| loc.invalid("ports", "a port mapping needs a target"))?;
            values::pair_ports(ip, published.as_deref(), &target, proto, &target).map_err(invalid)
        }
        other => {
            let spec = values::scalar_string(other)
                .ok_or_else(|| loc.invalid("ports", format!("{other} is not a port mapping")))?;
            values::port_short(&spec).map_err(invalid)
        }
    }
}
