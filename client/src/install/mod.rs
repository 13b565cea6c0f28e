//! `clawops install`: puts the agent on a VM through the SSH connection the CLI already uses.
//!
//! The VM side is deploy/startup-script.sh, the same script GCE runs at boot with its settings in
//! instance metadata; here it gets them as arguments. Three remote commands: `probe` (what the
//! machine is, whether the agent is there already), an upload of the script, the unit and the
//! agent (when it differs from the installed one) into a private temporary directory, and the
//! script's `install` run with sudo, whose log is shown as it comes.
mod agent;
mod probe;

use std::time::Duration;

pub use agent::{AgentSource, Arch, ElfError, LocalAgent};
pub use probe::{Probe, Settings};

use crate::{
    Target,
    remote::{RemoteCommand, RemoteError, RemoteOutput, Stream},
};

/// The provisioning script and the unit it installs, as this version of clawops ships them.
pub const PROVISION_SCRIPT: &str = include_str!("../../../deploy/startup-script.sh");
pub const AGENT_UNIT: &str = include_str!("../../../deploy/clawops-agent.service");

const PROBE_TIMEOUT: Duration = Duration::from_secs(120);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// A first install may add Docker from its apt repository.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The machine is not one the agent can be installed on; nothing was written.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl From<InstallError> for crate::ClientError {
    fn from(e: InstallError) -> Self {
        match e {
            InstallError::Usage(m) => crate::ClientError::Usage(m),
            InstallError::Remote(e) => e.into(),
            InstallError::Refused(m) | InstallError::Failed(m) => crate::ClientError::Failed(m),
        }
    }
}
/// The remote side of one install: the target and its ssh options.
pub struct Installer<'a> {
    pub target: &'a Target,
    pub ssh_options: &'a [String],
}

/// How the provisioning run ended.
#[derive(Debug)]
pub struct Provisioned {
    /// The script's log, in order.
    pub log: Vec<String>,
    /// False when the run changed nothing on the VM.
    pub changed: bool,
    /// Whether this run sent the agent binary.
    pub uploaded_agent: bool,
    /// The sha256 of the agent that should now run there.
    pub agent_sha256: Option<String>,
}

impl Installer<'_> {
    pub async fn probe(&self) -> Result<Probe, InstallError> {
        let output = self
            .command(
                "bash -s -- probe".into(),
                Some(PROVISION_SCRIPT.as_bytes().to_vec()),
                PROBE_TIMEOUT,
                "probing the VM",
            )
            .run(&mut |_, _| {})
            .await?;
        if !output.success() {
            return Err(InstallError::Failed(format!(
                "probing {} failed: {}",
                self.target,
                output.last_error_line()
            )));
        }
        Probe::parse(&output.stdout)
    }

    /// Uploads, runs the script with sudo, and removes the upload, whatever the outcome.
    /// `on_line` sees the script's log as it comes.
    pub async fn provision(
        &self,
        probe: &Probe,
        arch: Arch,
        source: &AgentSource,
        settings: &Settings,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Provisioned, InstallError> {
        let mut args = settings.script_args(probe)?;
        let (upload_agent, agent_sha256) = match source {
            AgentSource::Local(agent) => {
                if agent.arch != arch {
                    return Err(InstallError::Refused(format!(
                        "{} is built for {}, but {} is {arch}; nothing was sent. Pass the {arch} \
                         build ({})",
                        agent.path.display(),
                        agent.arch,
                        self.target,
                        arch.asset()
                    )));
                }
                let same = probe.agent_sha256.as_deref() == Some(agent.sha256.as_str());
                args.extend(["--agent-sha256".into(), agent.sha256.clone()]);
                ((!same).then_some(agent), agent.sha256.clone())
            }
            other => {
                let (url, sha256) = other.download_for(arch)?.expect("a download source");
                args.extend([
                    "--agent-url".into(),
                    url,
                    "--agent-sha256".into(),
                    sha256.clone(),
                ]);
                (None, sha256)
            }
        };
        let dir = self.upload(upload_agent).await?;
        if upload_agent.is_some() {
            args.extend(["--agent-file".into(), format!("{dir}/clawops-agent")]);
        }
        args.extend([
            "--agent-unit".into(),
            format!("{dir}/clawops-agent.service"),
        ]);
        let output = self.run_script(probe, &dir, &args, on_line).await?;
        let log: Vec<String> = output
            .stdout
            .iter()
            .chain(&output.stderr)
            .cloned()
            .collect();
        if !output.success() {
            return Err(InstallError::Failed(failure_summary(
                &self.target.to_string(),
                &output,
            )));
        }
        Ok(Provisioned {
            changed: !output
                .stdout
                .iter()
                .any(|l| l.starts_with("clawops-startup: done: nothing changed")),
            log,
            uploaded_agent: upload_agent.is_some(),
            agent_sha256: Some(agent_sha256),
        })
    }

    /// Sends the script, the unit and maybe the agent into a new private directory on the VM
    /// and returns its path.
    async fn upload(&self, agent: Option<&LocalAgent>) -> Result<String, InstallError> {
        let archive = upload_archive(agent)
            .map_err(|e| InstallError::Failed(format!("cannot pack the upload: {e}")))?;
        // Fixed words only. A failed extraction (a full disk) removes what it wrote.
        let command = "umask 077 && d=$(mktemp -d /tmp/clawops-install.XXXXXXXX) && \
                       if tar --no-same-owner -x -f - -C \"$d\"; then echo \"$d\"; \
                       else rm -rf \"$d\"; exit 1; fi";
        let output = self
            .command(command.into(), Some(archive), UPLOAD_TIMEOUT, "uploading")
            .run(&mut |_, _| {})
            .await?;
        let dir = output.stdout.last().cloned().unwrap_or_default();
        if !output.success() || !is_upload_dir(&dir) {
            return Err(InstallError::Failed(format!(
                "uploading to {} failed: {}; the installed agent is untouched",
                self.target,
                output.last_error_line()
            )));
        }
        Ok(dir)
    }

    async fn run_script(
        &self,
        probe: &Probe,
        dir: &str,
        args: &[String],
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<RemoteOutput, InstallError> {
        let mut words = vec![];
        if probe.needs_sudo() {
            words.extend(["sudo", "-n"].map(String::from));
        }
        words.extend([
            "bash".into(),
            format!("{dir}/startup-script.sh"),
            "install".into(),
        ]);
        for arg in args {
            let quoted = shlex::try_quote(arg)
                .map_err(|_| InstallError::Usage(format!("{arg:?} cannot be passed to a shell")))?;
            words.push(quoted.into_owned());
        }
        let command = format!("{}; rc=$?; rm -rf {dir}; exit $rc", words.join(" "));
        Ok(self
            .command(command, None, PROVISION_TIMEOUT, "provisioning")
            .run(&mut |_, line| on_line(line))
            .await?)
    }

    fn command(
        &self,
        command: String,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        what: &'static str,
    ) -> RemoteCommand<'_> {
        RemoteCommand {
            target: self.target,
            ssh_options: self.ssh_options,
            command,
            stdin,
            timeout,
            what,
        }
    }
}

fn is_upload_dir(dir: &str) -> bool {
    dir.strip_prefix("/tmp/clawops-install.")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The script's problems (its "  - …" lines after "finished with N problem(s)"), else its last
/// error line.
fn failure_summary(via: &str, output: &RemoteOutput) -> String {
    let problems: Vec<&str> = output
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("clawops-startup:   - "))
        .collect();
    let what = if problems.is_empty() {
        let err = output
            .stderr
            .iter()
            .rev()
            .find(|l| l.contains("ERROR") || l.contains("sudo"))
            .cloned()
            .unwrap_or_else(|| output.last_error_line());
        err.trim_start_matches("clawops-startup: ").to_owned()
    } else {
        problems.join("; ")
    };
    format!("installing on {via} failed: {what}")
}

fn upload_archive(agent: Option<&LocalAgent>) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data)
    };
    add("startup-script.sh", 0o600, PROVISION_SCRIPT.as_bytes())?;
    add("clawops-agent.service", 0o600, AGENT_UNIT.as_bytes())?;
    if let Some(agent) = agent {
        add("clawops-agent", 0o700, &agent.bytes)?;
    }
    tar.into_inner()
}

/// The lines of the script's log worth showing as they come (all of them, without the prefix).
pub fn log_line(stream: Stream, line: &str) -> String {
    let text = line.strip_prefix("clawops-startup: ").unwrap_or(line);
    match stream {
        Stream::Stdout => text.to_owned(),
        Stream::Stderr => format!("! {text}"),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_dirs_are_only_what_mktemp_makes() {
        assert!(is_upload_dir("/tmp/clawops-install.AbC123xy"));
        for bad in [
            "",
            "/tmp/clawops-install.",
            "/tmp/clawops-install.a b",
            "/tmp/x; rm -rf /",
            "/etc",
        ] {
            assert!(!is_upload_dir(bad), "{bad}");
        }
    }

    #[test]
    fn the_archive_holds_the_script_unit_and_agent() {
        let agent = LocalAgent {
            path: "a".into(),
            bytes: agent::tests::elf(62),
            sha256: String::new(),
            arch: Arch::X86_64,
        };
        let bytes = upload_archive(Some(&agent)).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "startup-script.sh",
                "clawops-agent.service",
                "clawops-agent"
            ]
        );
    }
}
