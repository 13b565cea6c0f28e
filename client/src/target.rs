//! Where the agent is: a direct address, or a host to tunnel through with ssh or gcloud.
use std::fmt;

use crate::gce::GceInstance;

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
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Domain(name)) if plain(name) => name.to_owned(),
            Some(url::Host::Domain(_)) => {
                return Err(invalid(
                    "the host may hold only letters, digits, '.', '_' and '-' (IPv6 in brackets), \
                     and not start with '-'",
                ));
            }
            None => return Err(invalid("no host")),
        };
        let user = Some(url.username().to_owned()).filter(|u| !u.is_empty());
        if user.as_deref().is_some_and(|u| !plain(u)) {
            return Err(invalid(
                "the user may hold only letters, digits, '.', '_' and '-', and not start with '-'",
            ));
        }
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
                    if k != "iap" && !plain(&v) {
                        return Err(invalid(&format!(
                            "{k}={v:?}: values may hold only letters, digits, '.', '_' and '-', \
                             and not start with '-'"
                        )));
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
        self.ssh_command(&SshAction::Stdio(forward), ssh_options)
    }

    /// The program and arguments that run `command` on the target (as the SSH user) and exit;
    /// `None` for a direct address. `command` reaches the remote shell as one string, so the
    /// caller must build it from fixed words and validated values only.
    pub fn remote_command(
        &self,
        command: &str,
        ssh_options: &[String],
    ) -> Option<(String, Vec<String>)> {
        self.ssh_command(&SshAction::Run(command.to_owned()), ssh_options)
    }

    /// The program and arguments that listen on `127.0.0.1:local_port` here and forward each
    /// connection to `127.0.0.1:remote_port` on the target, with no remote command (`-N`),
    /// until interrupted; `None` for a direct address.
    pub fn local_forward_command(
        &self,
        local_port: u16,
        remote_port: u16,
        ssh_options: &[String],
    ) -> Option<(String, Vec<String>)> {
        let spec = format!("127.0.0.1:{local_port}:127.0.0.1:{remote_port}");
        self.ssh_command(&SshAction::LocalForward(spec), ssh_options)
    }

    /// Whether this target goes through ssh or gcloud (so it can run commands and forward
    /// ports), as opposed to a direct address.
    pub fn is_tunnel(&self) -> bool {
        !matches!(self, Target::Addr(_))
    }

    /// The ssh/gcloud argv of every action, built in one place so they share options and checks.
    fn ssh_command(
        &self,
        action: &SshAction,
        ssh_options: &[String],
    ) -> Option<(String, Vec<String>)> {
        let mut ssh_args = ssh_base_args(ssh_options);
        match self {
            Target::Addr(_) => None,
            Target::Ssh { user, host, port } => {
                if let Some(port) = port {
                    ssh_args.push("-p".into());
                    ssh_args.push(port.to_string());
                }
                ssh_args.extend(action.flags());
                ssh_args.push("--".into());
                ssh_args.push(user_at(user.as_deref(), host));
                if let SshAction::Run(command) = action {
                    ssh_args.push(command.clone());
                }
                Some((program_env("CLAWOPS_SSH", "ssh"), ssh_args))
            }
            Target::Gcloud {
                vm,
                zone,
                project,
                user,
                iap,
            } => {
                let mut args = vec!["compute".into(), "ssh".into(), user_at(user.as_deref(), vm)];
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
                // gcloud's own flag: it puts the command after the host, wherever it places
                // the ssh flags given after `--`.
                if let SshAction::Run(command) = action {
                    args.push(format!("--command={command}"));
                }
                args.push("--".into());
                args.extend(ssh_args);
                args.extend(action.flags());
                Some((gcloud_program(), args))
            }
        }
    }

    /// The VM behind a `gcloud://` target (zone and project as the URL gives them); `None` for
    /// other targets.
    pub fn gce_instance(&self) -> Option<GceInstance> {
        match self {
            Target::Gcloud {
                vm, zone, project, ..
            } => Some(GceInstance {
                vm: vm.clone(),
                zone: zone.clone(),
                project: project.clone(),
            }),
            _ => None,
        }
    }
}

/// The common ssh options: never prompt, give up on a dead host, notice a dead connection.
fn ssh_base_args(ssh_options: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "ConnectTimeout=20".into(),
        "-o".into(),
        "ServerAliveInterval=30".into(),
    ];
    for opt in ssh_options {
        args.push("-o".into());
        args.push(opt.clone());
    }
    args
}

fn user_at(user: Option<&str>, host: &str) -> String {
    match user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_owned(),
    }
}

pub(crate) fn gcloud_program() -> String {
    program_env("CLAWOPS_GCLOUD", "gcloud")
}

/// ssh and gcloud get hosts, users, zones and projects as arguments (and gcloud builds a remote
/// command line with some of them): a narrow character set keeps options and shell syntax out.
fn plain(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Target {
    /// A warning for `--addr http://` to a host other than this machine: the token and every
    /// call would cross the network in clear text.
    pub fn cleartext_warning(&self) -> Option<String> {
        let Target::Addr(addr) = self else {
            return None;
        };
        let url = url::Url::parse(addr).ok()?;
        let loopback = match url.host()? {
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
            url::Host::Domain(name) => name == "localhost",
        };
        (url.scheme() == "http" && !loopback).then(|| {
            format!(
                "warning: {addr} is plain http to another machine: the token and every call \
                 cross the network unencrypted. Reach the agent through its SSH tunnel \
                 (--via ssh://… or -t NAME) or `clawops tunnel`"
            )
        })
    }
}

/// What an ssh connection is for.
enum SshAction {
    /// `-W HOST:PORT`: stdin/stdout become the TCP connection.
    Stdio(String),
    /// Run a command and exit.
    Run(String),
    /// `-N -L LOCAL:REMOTE`: a listening port here.
    LocalForward(String),
}

impl SshAction {
    /// The ssh flags that select the action.
    fn flags(&self) -> Vec<String> {
        match self {
            SshAction::Stdio(forward) => vec!["-W".into(), forward.clone()],
            SshAction::Run(_) => vec![],
            // Without ExitOnForwardFailure a busy local port is only a warning, and ssh would
            // stay up forwarding nothing.
            SshAction::LocalForward(spec) => vec![
                "-o".into(),
                "ExitOnForwardFailure=yes".into(),
                "-N".into(),
                "-L".into(),
                spec.clone(),
            ],
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

    #[test]
    fn hosts_users_zones_and_projects_are_plain_words() {
        for bad in [
            "ssh://me@-oProxyCommand=x",
            "ssh://-me@vm",
            "ssh://m%20e@vm",
            "ssh://me;id@vm",
            "gcloud://vm?zone=us-central1-a;id&project=p",
            "gcloud://vm?zone=z&project=$(id)",
            "gcloud://vm?zone=z&user=-x",
        ] {
            assert!(Target::parse_via(bad).is_err(), "{bad}");
        }
        for good in [
            "ssh://me@vm.example.com:2222",
            "ssh://[::1]:22",
            "ssh://127.0.0.1",
            "gcloud://openclaw-gateway?zone=us-central1-a&project=my_proj.x&iap=true",
        ] {
            assert!(Target::parse_via(good).is_ok(), "{good}");
        }
        assert_eq!(
            Target::parse_via("ssh://me@[::1]:22").unwrap(),
            Target::Ssh {
                user: Some("me".into()),
                host: "::1".into(),
                port: Some(22)
            }
        );
    }

    #[test]
    fn plain_http_to_another_machine_is_warned_about() {
        let warns = |a: &str| Target::Addr(a.into()).cleartext_warning().is_some();
        assert!(warns("http://10.0.0.5:18777"));
        assert!(warns("http://vm.example.com:18777"));
        assert!(!warns("http://127.0.0.1:18777"));
        assert!(!warns("http://[::1]:18777"));
        assert!(!warns("http://localhost:18777"));
        assert!(!warns("https://vm.example.com:18777"));
    }

    #[test]
    fn remote_commands_and_forwards_share_the_options() {
        let t = Target::parse_via("ssh://me@vm.example:2222").unwrap();
        let opts = ["IdentityFile=/k".to_string()];
        let (prog, args) = t
            .remote_command("sudo -n cat /etc/clawops/token", &opts)
            .unwrap();
        assert_eq!(prog, "ssh");
        assert!(args.windows(2).any(|w| w == ["-o", "IdentityFile=/k"]));
        assert!(!args.iter().any(|a| a == "-W"));
        let tail = [
            "-p",
            "2222",
            "--",
            "me@vm.example",
            "sudo -n cat /etc/clawops/token",
        ];
        assert_eq!(&args[args.len() - 5..], tail);

        let (_, args) = t.local_forward_command(8000, 18789, &opts).unwrap();
        assert!(args.windows(2).any(|w| w == ["-o", "IdentityFile=/k"]));
        let tail = [
            "ExitOnForwardFailure=yes",
            "-N",
            "-L",
            "127.0.0.1:8000:127.0.0.1:18789",
            "--",
            "me@vm.example",
        ];
        assert_eq!(&args[args.len() - 6..], tail);

        let g = Target::parse_via("gcloud://gw?zone=z1&project=p1").unwrap();
        let (prog, args) = g.remote_command("cat /x", &[]).unwrap();
        assert_eq!(prog, "gcloud");
        assert_eq!(
            &args[..7],
            [
                "compute",
                "ssh",
                "gw",
                "--zone=z1",
                "--project=p1",
                "--quiet",
                "--command=cat /x"
            ]
        );
        assert_eq!(args[7], "--");
        let (_, args) = g.local_forward_command(1, 2, &[]).unwrap();
        assert_eq!(
            &args[args.len() - 3..],
            ["-N", "-L", "127.0.0.1:1:127.0.0.1:2"]
        );
        assert!(
            Target::Addr("http://x".into())
                .remote_command("x", &[])
                .is_none()
        );
    }
}
