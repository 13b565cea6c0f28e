//! What `startup-script.sh probe` says about the VM, what is refused on that ground, and the
//! settings passed to the script, each checked here as the script checks it again.
use super::{Arch, InstallError};

/// What `startup-script.sh probe` reported about the VM.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probe {
    pub user: String,
    pub uid: String,
    pub arch: String,
    pub os_id: String,
    pub os_like: String,
    pub os_name: String,
    pub systemd: bool,
    /// `root`, `yes` (passwordless sudo) or `no`.
    pub sudo: String,
    pub agent_sha256: Option<String>,
    pub agent_version: Option<String>,
    pub agent_active: String,
}

impl Probe {
    pub fn parse(lines: &[String]) -> Result<Self, InstallError> {
        let mut p = Probe::default();
        let mut seen = false;
        for line in lines {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_owned();
            let some = |v: String| Some(v).filter(|v| !v.is_empty());
            match key {
                "probe" => seen = true,
                "user" => p.user = value,
                "uid" => p.uid = value,
                "arch" => p.arch = value,
                "os_id" => p.os_id = value,
                "os_like" => p.os_like = value,
                "os_name" => p.os_name = value,
                "systemd" => p.systemd = value == "yes",
                "sudo" => p.sudo = value,
                "agent_sha256" => p.agent_sha256 = some(value),
                "agent_version" => p.agent_version = some(value),
                "agent_active" => p.agent_active = value,
                _ => {}
            }
        }
        if !seen {
            return Err(InstallError::Failed(
                "the VM did not answer the probe (is bash installed there?)".into(),
            ));
        }
        Ok(p)
    }

    /// Refuses machines the agent cannot run on, before anything is written there.
    pub fn check(&self, via: &str) -> Result<Arch, InstallError> {
        let refuse = |m: String| {
            Err(InstallError::Refused(format!(
                "{via}: {m}; nothing was changed"
            )))
        };
        let debian_like = matches!(self.os_id.as_str(), "debian" | "ubuntu")
            || self.os_like.split_whitespace().any(|w| w == "debian");
        if !debian_like {
            return refuse(format!(
                "it runs {}, and clawops installs on Debian or Ubuntu (apt and systemd)",
                self.os_description()
            ));
        }
        if !self.systemd {
            return refuse("it does not run systemd, which the agent's unit needs".into());
        }
        if self.sudo == "no" {
            return refuse(format!(
                "{} has no passwordless sudo there (`sudo -n true` failed); connect as a user \
                 with sudo, or as root",
                self.user
            ));
        }
        match Arch::from_uname(&self.arch) {
            Some(arch) => Ok(arch),
            None => refuse(format!(
                "its CPU is {}; the agent is built for x86_64 and aarch64",
                self.arch
            )),
        }
    }

    pub fn os_description(&self) -> String {
        if self.os_name.is_empty() {
            format!("'{}'", self.os_id)
        } else {
            self.os_name.clone()
        }
    }

    pub(super) fn needs_sudo(&self) -> bool {
        self.sudo != "root"
    }
}

/// What the VM's checkout and agent.toml are to be, as `install`'s flags give them.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    pub owner: Option<String>,
    pub repo_path: Option<String>,
    pub repo_url: Option<String>,
    pub branch: Option<String>,
    pub service: Option<String>,
    pub listen_port: Option<u16>,
}

impl Settings {
    /// The script's arguments, each value checked as the script checks it (it checks again).
    pub(super) fn script_args(&self, probe: &Probe) -> Result<Vec<String>, InstallError> {
        let owner = match &self.owner {
            Some(o) => o.clone(),
            None if probe.sudo == "root" => {
                return Err(InstallError::Usage(
                    "connected as root: pass --owner USER, the account that owns the OpenClaw \
                     checkout on the VM"
                        .into(),
                ));
            }
            None => probe.user.clone(),
        };
        let mut args = Vec::new();
        let mut push = |flag: &str, value: &str, ok: bool, what: &str| {
            if ok {
                args.extend([flag.to_owned(), value.to_owned()]);
                Ok(())
            } else {
                Err(InstallError::Usage(format!(
                    "{flag} {value:?}: expected {what}"
                )))
            }
        };
        push(
            "--repo-owner",
            &owner,
            is_user_name(&owner),
            "a Linux user name",
        )?;
        if let Some(p) = &self.repo_path {
            push(
                "--repo-path",
                p,
                is_plain_path(p),
                "an absolute path of [A-Za-z0-9._/-]",
            )?;
        }
        if let Some(u) = &self.repo_url {
            let ok = !u.is_empty() && !u.starts_with('-') && !u.chars().any(char::is_whitespace);
            push("--repo-url", u, ok, "a git URL without spaces")?;
        }
        if let Some(b) = &self.branch {
            push("--repo-branch", b, is_branch(b), "a branch name")?;
        }
        if let Some(s) = &self.service {
            push("--service", s, is_service(s), "a compose service name")?;
        }
        if let Some(port) = self.listen_port {
            push(
                "--listen-port",
                &port.to_string(),
                port > 0,
                "a port number",
            )?;
        }
        Ok(args)
    }
}

fn is_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

fn is_plain_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
}

fn is_branch(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && !s.contains("..")
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
}

fn is_service(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && !s.contains("..")
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(text: &str) -> Probe {
        let lines: Vec<String> = text.lines().map(String::from).collect();
        Probe::parse(&lines).unwrap()
    }

    const DEBIAN: &str = "probe=1\nuser=alice\nuid=1000\narch=x86_64\nos_id=debian\nos_like=\n\
                          os_name=Debian GNU/Linux 12 (bookworm)\nsystemd=yes\nsudo=yes\n\
                          agent_active=inactive\n";

    #[test]
    fn the_probe_decides_what_is_refused() {
        let p = probe(DEBIAN);
        assert_eq!(p.check("vm").unwrap(), Arch::X86_64);
        let refused = |text: &str| match probe(text).check("vm") {
            Err(InstallError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let m = refused(&DEBIAN.replace("systemd=yes", "systemd=no"));
        assert!(
            m.contains("systemd") && m.ends_with("nothing was changed"),
            "{m}"
        );
        let m = refused(
            &DEBIAN
                .replace("os_id=debian", "os_id=fedora")
                .replace("Debian GNU/Linux 12 (bookworm)", "Fedora Linux 40"),
        );
        assert!(
            m.contains("Fedora Linux 40") && m.contains("Debian or Ubuntu"),
            "{m}"
        );
        let m = refused(&DEBIAN.replace("sudo=yes", "sudo=no"));
        assert!(m.contains("alice has no passwordless sudo"), "{m}");
        let m = refused(&DEBIAN.replace("arch=x86_64", "arch=riscv64"));
        assert!(m.contains("riscv64"), "{m}");
        let mint = DEBIAN
            .replace("os_id=debian", "os_id=linuxmint")
            .replace("os_like=", "os_like=ubuntu debian");
        assert!(probe(&mint).check("vm").is_ok());
        assert!(Probe::parse(&["hello".to_string()]).is_err());
    }

    #[test]
    fn settings_become_checked_script_arguments() {
        let p = probe(DEBIAN);
        let args = Settings::default().script_args(&p).unwrap();
        assert_eq!(args, ["--repo-owner", "alice"]);
        let s = Settings {
            owner: Some("bob".into()),
            repo_path: Some("/srv/openclaw".into()),
            repo_url: Some("https://github.com/openclaw/openclaw.git".into()),
            branch: Some("release/1.x".into()),
            service: Some("gw".into()),
            listen_port: Some(18999),
        };
        assert_eq!(
            s.script_args(&p).unwrap().join(" "),
            "--repo-owner bob --repo-path /srv/openclaw --repo-url \
             https://github.com/openclaw/openclaw.git --repo-branch release/1.x --service gw \
             --listen-port 18999"
        );
        for bad in [
            Settings {
                owner: Some("Bob Smith".into()),
                ..Default::default()
            },
            Settings {
                repo_path: Some("/a/../etc".into()),
                ..Default::default()
            },
            Settings {
                repo_url: Some("--upload-pack=x".into()),
                ..Default::default()
            },
            Settings {
                branch: Some("-x".into()),
                ..Default::default()
            },
            Settings {
                service: Some("a;b".into()),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(bad.script_args(&p), Err(InstallError::Usage(_))),
                "{bad:?}"
            );
        }
        let root = probe(&DEBIAN.replace("sudo=yes", "sudo=root"));
        assert!(
            matches!(Settings::default().script_args(&root), Err(InstallError::Usage(m)) if m.contains("--owner"))
        );
    }
}
