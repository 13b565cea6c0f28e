//! Where the agent is: a direct address, or a host to tunnel through with ssh or gcloud.
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://127.0.0.1:PORT` (an existing `ssh -L`, or on the VM itself).
    Addr(String),
    /// `ssh://[user@]host[:port]` → `ssh -W 127.0.0.1:AGENT_PORT …`
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    /// `gcloud://VM?zone=Z&project=P[&iap=true][&user=U]` →
    /// `gcloud compute ssh VM --zone Z --project P -- -W 127.0.0.1:AGENT_PORT`
    Gcloud {
        vm: String,
        zone: Option<String>,
        project: Option<String>,
        user: Option<String>,
        iap: bool,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error(
        "{0:?} is not a target: use ssh://[user@]host[:port] or gcloud://VM?zone=ZONE&project=PROJECT"
    )]
    Scheme(String),
    #[error("{url:?}: {message}")]
    Invalid { url: String, message: String },
}

impl Target {
    pub fn parse_via(via: &str) -> Result<Self, TargetError> {
        let invalid = |message: &str| TargetError::Invalid {
            url: via.to_owned(),
            message: message.to_owned(),
        };
        let url = url::Url::parse(via).map_err(|_| TargetError::Scheme(via.to_owned()))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // A host that starts with `-` would be read by ssh as an option.
        if host.starts_with('-') || url.username().starts_with('-') {
            return Err(invalid("host and user must not start with '-'"));
        }
        let user = Some(url.username().to_owned()).filter(|u| !u.is_empty());
        match url.scheme() {
            "ssh" => {
                if url.path().len() > 1 || url.query().is_some() {
                    return Err(invalid("ssh:// takes only [user@]host[:port]"));
                }
                Ok(Target::Ssh {
                    user,
                    host,
                    port: url.port(),
                })
            }
            "gcloud" => {
                let mut zone = None;
                let mut project = None;
                let mut user = user;
                let mut iap = false;
                for (k, v) in url.query_pairs() {
                    if v.starts_with('-') {
                        return Err(invalid("query values must not start with '-'"));
                    }
                    match k.as_ref() {
                        "zone" => zone = Some(v.into_owned()),
                        "project" => project = Some(v.into_owned()),
                        "user" => user = Some(v.into_owned()),
                        "iap" => iap = matches!(v.as_ref(), "true" | "1" | "yes"),
                        other => {
                            return Err(invalid(&format!(
                                "unknown parameter {other:?} (known: zone, project, user, iap)"
                            )));
                        }
                    }
                }
                Ok(Target::Gcloud {
                    vm: host,
                    zone,
                    project,
                    user,
                    iap,
                })
            }
            other => Err(TargetError::Scheme(format!("{other}://"))),
        }
    }

    /// The program and arguments that open a stdio tunnel to `127.0.0.1:agent_port` on the
    /// target; `None` for a direct address. `ssh_options` become `-o KEY=VALUE`.
    pub fn tunnel_command(
        &self,
        agent_port: u16,
        ssh_options: &[String],
    ) -> Option<(String, Vec<String>)> {
        let forward = format!("127.0.0.1:{agent_port}");
        let mut ssh_args: Vec<String> = vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=20".into(),
            "-o".into(),
            "ServerAliveInterval=30".into(),
        ];
        for opt in ssh_options {
            ssh_args.push("-o".into());
            ssh_args.push(opt.clone());
        }
        match self {
            Target::Addr(_) => None,
            Target::Ssh { user, host, port } => {
                let mut args = ssh_args;
                if let Some(port) = port {
                    args.push("-p".into());
                    args.push(port.to_string());
                }
                args.push("-W".into());
                args.push(forward);
                args.push("--".into());
                args.push(match user {
                    Some(u) => format!("{u}@{host}"),
                    None => host.clone(),
                });
                Some((program_env("CLAWOPS_SSH", "ssh"), args))
            }
            Target::Gcloud {
                vm,
                zone,
                project,
                user,
                iap,
            } => {
                let mut args = vec!["compute".into(), "ssh".into()];
                args.push(match user {
                    Some(u) => format!("{u}@{vm}"),
                    None => vm.clone(),
                });
                if let Some(zone) = zone {
                    args.push(format!("--zone={zone}"));
                }
                if let Some(project) = project {
                    args.push(format!("--project={project}"));
                }
                if *iap {
                    args.push("--tunnel-through-iap".into());
                }
                args.push("--quiet".into());
                args.push("--".into());
                args.extend(ssh_args);
                args.push("-W".into());
                args.push(forward);
                Some((program_env("CLAWOPS_GCLOUD", "gcloud"), args))
            }
        }
    }
}

fn program_env(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(a) => f.write_str(a),
            Target::Ssh { user, host, port } => {
                write!(f, "ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                write!(f, "{host}")?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
            Target::Gcloud { vm, zone, .. } => {
                write!(f, "gcloud://{vm}")?;
                if let Some(z) = zone {
                    write!(f, " (zone {z})")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_url_becomes_stdio_forward() {
        let t = Target::parse_via("ssh://me@vm.example:2222").unwrap();
        let (prog, args) = t
            .tunnel_command(18777, &["IdentityFile=/k".into()])
            .unwrap();
        assert_eq!(prog, "ssh");
        let tail: Vec<_> = args.iter().rev().take(5).rev().cloned().collect();
        assert_eq!(
            tail,
            ["2222", "-W", "127.0.0.1:18777", "--", "me@vm.example"]
        );
        assert!(args.windows(2).any(|w| w == ["-o", "IdentityFile=/k"]));
    }

    #[test]
    fn gcloud_url_becomes_compute_ssh() {
        let t = Target::parse_via("gcloud://openclaw?zone=us-central1-a&project=p1").unwrap();
        let (prog, args) = t.tunnel_command(18777, &[]).unwrap();
        assert_eq!(prog, "gcloud");
        assert_eq!(
            &args[..6],
            [
                "compute",
                "ssh",
                "openclaw",
                "--zone=us-central1-a",
                "--project=p1",
                "--quiet"
            ]
        );
        assert_eq!(&args[args.len() - 2..], ["-W", "127.0.0.1:18777"]);
    }

    #[test]
    fn rejects_option_injection_and_unknown_schemes() {
        assert!(Target::parse_via("ssh://-oProxyCommand=x").is_err());
        assert!(Target::parse_via("gcloud://vm?zone=--x").is_err());
        assert!(Target::parse_via("gcloud://vm?zonee=a").is_err());
        assert!(matches!(
            Target::parse_via("http://x"),
            Err(TargetError::Scheme(_))
        ));
        assert!(Target::parse_via("vm").is_err());
    }
}
