//! Parsers for compose's scalar formats: durations, byte sizes, port specs, volume specs, and
//! lenient conversions of interpolated strings (`"0.5"`, `"true"`) to typed values. Each returns
//! a message that the loader prefixes with the file, service and key.
use std::{net::IpAddr, time::Duration};

use serde_json::Value;

use super::model::Port;

/// Why a value is not of its key's format; the loader prefixes the file, service and key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error(
        "{0:?} is not a duration: use a number with a unit (ns, us, ms, s, m, h), e.g. 30s or 1m30s"
    )]
    Duration(String),
    #[error("{0:?} is not a size: use e.g. 512m, 1g or a number of bytes")]
    Size(String),
    #[error("{0} is negative")]
    Negative(i64),
    /// `value` is shown as written (strings quoted), `what` says what it should be.
    #[error("{value} is not {what}")]
    NotA { value: String, what: &'static str },
    #[error("{whole:?} is not a valid port mapping: {part:?} is not a port number (1-65535)")]
    PortNumber { whole: String, part: String },
    #[error("{whole:?}: port range {range} is reversed")]
    PortRangeReversed { whole: String, range: String },
    #[error("{whole:?}: the published range and the container range differ in length")]
    PortRangeLength { whole: String },
    #[error("{whole:?}: unknown protocol {protocol:?} (use tcp, udp or sctp)")]
    Protocol { whole: String, protocol: String },
    #[error("{whole:?}: {ip:?} is not an IP address (e.g. 127.0.0.1:18789:18789)")]
    HostIp { whole: String, ip: String },
    #[error("{whole:?}: unclosed [ in the host address")]
    UnclosedBracket { whole: String },
    #[error(
        "{whole:?} is not a valid port mapping: use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
    )]
    PortSyntax { whole: String },
    #[error("unknown mount option {0:?} (use ro, rw, z, Z, nocopy or a propagation mode)")]
    MountOption(String),
}

fn not_a(value: impl std::fmt::Display, what: &'static str) -> ValueError {
    ValueError::NotA {
        value: value.to_string(),
        what,
    }
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// Go's `time.ParseDuration` format, which compose uses: `1m30s`, `10s`, `500ms`, `1.5h`.
pub fn duration(s: &str) -> Result<Duration, ValueError> {
    let bad = || ValueError::Duration(s.to_owned());
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * factor;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// docker's `RAMInBytes`: `512m`, `1g`, `1.5GB`, `1024` (binary multiples).
pub fn bytes(v: &Value) -> Result<i64, ValueError> {
    if let Some(n) = v.as_i64() {
        return if n >= 0 {
            Ok(n)
        } else {
            Err(ValueError::Negative(n))
        };
    }
    let s = scalar_string(v).ok_or_else(|| not_a(v, "a size"))?;
    let t = s.trim();
    let bad = || ValueError::Size(s.clone());
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..num_len].parse().map_err(|_| bad())?;
    let unit = t[num_len..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix('b')
        .map(|u| u.strip_suffix('i').unwrap_or(u))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let total = n * mult;
    if !total.is_finite() || total >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(total as i64)
}

/// A string, number or boolean as text (numbers and booleans come from unquoted YAML).
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// compose-go's lenient boolean: after interpolation, `"true"`, `"yes"`, `"on"`, `"1"` …
pub fn boolean(v: &Value) -> Result<bool, ValueError> {
    const WHAT: &str = "a boolean: use true or false";
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" | "1" => Ok(true),
            "false" | "no" | "n" | "off" | "0" => Ok(false),
            _ => Err(not_a(quoted(s), WHAT)),
        },
        other => Err(not_a(other, WHAT)),
    }
}

pub fn integer(v: &Value) -> Result<i64, ValueError> {
    const WHAT: &str = "an integer";
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| not_a(n, WHAT)),
        Value::String(s) => s.trim().parse().map_err(|_| not_a(quoted(s), WHAT)),
        other => Err(not_a(other, WHAT)),
    }
}

pub fn float(v: &Value) -> Result<f64, ValueError> {
    const WHAT: &str = "a number";
    let f = match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| not_a(n, WHAT))?,
        Value::String(s) => s.trim().parse().map_err(|_| not_a(quoted(s), WHAT))?,
        other => return Err(not_a(other, WHAT)),
    };
    if f.is_finite() && f >= 0.0 {
        Ok(f)
    } else {
        Err(not_a(f, "a non-negative number"))
    }
}

fn port_number(s: &str, whole: &str) -> Result<u16, ValueError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ValueError::PortNumber {
            whole: whole.to_owned(),
            part: s.to_owned(),
        }),
    }
}

/// `a` or `a-b`, inclusive.
fn port_range(s: &str, whole: &str) -> Result<Vec<u16>, ValueError> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port_number(a, whole)?, port_number(b, whole)?);
            if a > b {
                return Err(ValueError::PortRangeReversed {
                    whole: whole.to_owned(),
                    range: s.to_owned(),
                });
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![port_number(s, whole)?]),
    }
}

pub fn protocol(p: &str, whole: &str) -> Result<String, ValueError> {
    match p {
        "tcp" | "udp" | "sctp" => Ok(p.to_owned()),
        _ => Err(ValueError::Protocol {
            whole: whole.to_owned(),
            protocol: p.to_owned(),
        }),
    }
}

pub fn host_ip(ip: &str, whole: &str) -> Result<String, ValueError> {
    let bare = ip.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|_| bare.to_owned())
        .map_err(|_| ValueError::HostIp {
            whole: whole.to_owned(),
            ip: ip.to_owned(),
        })
}

/// Pairs published ports with targets; `published` may be empty (ephemeral).
pub fn pair_ports(
    host_ip: String,
    published: Option<&str>,
    target: &str,
    proto: String,
    whole: &str,
) -> Result<Vec<Port>, ValueError> {
    let targets = port_range(target, whole)?;
    let hosts: Vec<Option<u16>> = match published.filter(|p| !p.is_empty()) {
        None => vec![None; targets.len()],
        Some(p) => port_range(p, whole)?.into_iter().map(Some).collect(),
    };
    if hosts.len() != targets.len() {
        return Err(ValueError::PortRangeLength {
            whole: whole.to_owned(),
        });
    }
    Ok(hosts
        .into_iter()
        .zip(targets)
        .map(|(published, target)| Port {
            host_ip: host_ip.clone(),
            published,
            target,
            protocol: proto.clone(),
        })
        .collect())
}

/// Short syntax: `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`, ranges allowed,
/// IPv6 host addresses in brackets.
pub fn port_short(whole: &str) -> Result<Vec<Port>, ValueError> {
    let (spec, proto) = match whole.rsplit_once('/') {
        Some((s, p)) => (s, protocol(p, whole)?),
        None => (whole, "tcp".to_owned()),
    };
    let (ip, rest) = if let Some(after) = spec.strip_prefix('[') {
        let (ip, rest) = after
            .split_once("]:")
            .ok_or_else(|| ValueError::UnclosedBracket {
                whole: whole.to_owned(),
            })?;
        (host_ip(ip, whole)?, rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), spec),
            3 => {
                let ip = host_ip(parts[0], whole)?;
                (ip, &spec[parts[0].len() + 1..])
            }
            _ => {
                return Err(ValueError::PortSyntax {
                    whole: whole.to_owned(),
                });
            }
        }
    };
    let (published, target) = match rest.rsplit_once(':') {
        Some((p, t)) => (Some(p), t),
        None => (None, rest),
    };
    pair_ports(ip, published, target, proto, whole)
}

/// Bind-mount and volume options accepted after the second colon.
pub fn mount_option(opt: &str) -> Result<Option<bool>, ValueError> {
    match opt {
        "ro" => Ok(Some(true)),
        "rw" => Ok(Some(false)),
        "z" | "Z" | "nocopy" | "shared" | "slave" | "private" | "rshared" | "rslave"
        | "rprivate" | "consistent" | "cached" | "delegated" => Ok(None),
        _ => Err(ValueError::MountOption(opt.to_owned())),
    }
}

/// Whether a short-syntax volume source is a host path (else a named volume), as compose decides.
pub fn is_host_path(source: &str) -> bool {
    source.starts_with('/') || source.starts_with('.') || source.starts_with('~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_go() {
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("0").unwrap(), Duration::ZERO);
        for bad in ["10", "", "s", "10x", "1m-3s", "1e3s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_follow_docker() {
        assert_eq!(bytes(&Value::from("512m")).unwrap(), 512 << 20);
        assert_eq!(bytes(&Value::from("1g")).unwrap(), 1 << 30);
        assert_eq!(bytes(&Value::from("1GB")).unwrap(), 1 << 30);
        assert_eq!(bytes(&Value::from("2KiB")).unwrap(), 2048);
        assert_eq!(bytes(&Value::from(1024)).unwrap(), 1024);
        assert!(bytes(&Value::from("lots")).is_err());
    }

    #[test]
    fn ports_short_syntax() {
        let p = port_short("127.0.0.1:18789:18789").unwrap();
        assert_eq!(p[0].host_ip, "127.0.0.1");
        assert_eq!(p[0].published, Some(18789));
        let p = port_short("8080-8081:80-81/udp").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].published, Some(8081));
        assert_eq!(p[1].protocol, "udp");
        let p = port_short("80").unwrap();
        assert_eq!(p[0].published, None);
        let p = port_short("127.0.0.1::80").unwrap();
        assert_eq!(p[0].published, None);
        let p = port_short("[::1]:8080:80").unwrap();
        assert_eq!(p[0].host_ip, "::1");
        for bad in [
            "",
            "abc",
            "1:2:3:4",
            "70000:80",
            "80/xyz",
            "300.1.1.1:80:80",
            "81-80:1-2",
        ] {
            assert!(port_short(bad).is_err(), "{bad}");
        }
    }
}
