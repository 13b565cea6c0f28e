//! Does the binary run? `<bin> --version` (or the configured probe argv) through the exec API,
//! as an argument vector, never a shell, with a timeout. The engine's and the loader's own
//! words tell why a binary cannot start: `exec format error` is another CPU architecture,
//! `error while loading shared libraries` a missing library.
use std::time::{Duration, Instant};

use super::{VerifyError, resolve::short};
use crate::{config::VerifyConfig, docker::Engine};

/// Output kept per stream; a version line is at the start.
const MAX_OUTPUT: usize = 64 * 1024;
const MAX_VERSION_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeVerdict {
    /// It ran. `version` is the first line it printed, when the probe succeeded.
    Ran,
    WrongArch,
    Broken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    pub verdict: ProbeVerdict,
    pub version: Option<String>,
    pub detail: Option<String>,
}

/// Runs `argv` in the running `container` and classifies the result. `configured`: the argv
/// comes from `[verify.probes]`, so a non-zero exit is a failure rather than an unsupported
/// `--version`.
pub async fn probe(
    docker: &Engine,
    container: &str,
    argv: &[String],
    configured: bool,
    timeout: Duration,
) -> Result<ProbeOutcome, VerifyError> {
    let exec_err = |source| VerifyError::Exec {
        container: short(container).to_owned(),
        source,
    };
    let display = argv.join(" ");
    match docker
        .exec(container, None, argv, MAX_OUTPUT, timeout)
        .await
    {
        Ok(None) => Ok(ProbeOutcome {
            verdict: ProbeVerdict::Broken,
            version: None,
            detail: Some(format!(
                "`{display}` did not finish within {} ms (it may still be running in the \
                 container); if the binary is fine but slow or interactive, configure \
                 [verify.probes] with an argv that returns quickly",
                timeout.as_millis()
            )),
        }),
        Err(source) => Err(exec_err(source)),
        Ok(Some(out)) => Ok(classify(
            out.exit_code,
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
            configured,
            &display,
        )),
    }
}

/// `<command> --version`, or the configured argv with its command replaced by `command` (the
/// name, or a path to pin one file). The flag says whether the argv is configured.
pub fn argv_for(name: &str, command: &str, config: &VerifyConfig) -> (Vec<String>, bool) {
    match config.probes.get(name).filter(|a| !a.is_empty()) {
        Some(argv) => {
            let mut argv = argv.clone();
            if argv[0] == name {
                argv[0] = command.to_owned();
            }
            (argv, true)
        }
        None => (vec![command.to_owned(), "--version".to_owned()], false),
    }
}

pub async fn run(
    docker: &Engine,
    container: &str,
    name: &str,
    (argv, configured): &(Vec<String>, bool),
    timeout: Duration,
) -> ProbeOutcome {
    let t = Instant::now();
    let outcome = probe(docker, container, argv, *configured, timeout).await;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, name, "verify: probed");
    outcome.unwrap_or_else(|e| ProbeOutcome {
        verdict: ProbeVerdict::Broken,
        version: None,
        detail: Some(e.to_string()),
    })
}

/// Reads the outcome of one probe. Pure, so each case is tested without an engine.
pub fn classify(
    exit: Option<i64>,
    stdout: &str,
    stderr: &str,
    configured: bool,
    display: &str,
) -> ProbeOutcome {
    let all = format!("{stdout}\n{stderr}");
    let line_with = |needle: &str| {
        all.lines()
            .find(|l| l.contains(needle))
            .map(|l| l.trim().to_owned())
            .unwrap_or_default()
    };
    let broken = |detail: String| ProbeOutcome {
        verdict: ProbeVerdict::Broken,
        version: None,
        detail: Some(detail),
    };
    if all.contains("exec format error") {
        return ProbeOutcome {
            verdict: ProbeVerdict::WrongArch,
            version: None,
            detail: Some(format!(
                "wrong CPU architecture for this VM ({})",
                line_with("exec format error")
            )),
        };
    }
    if all.contains("error while loading shared libraries") {
        return broken(line_with("error while loading shared libraries"));
    }
    let first = first_line(stdout).or_else(|| first_line(stderr));
    let code = exit.unwrap_or(-1);
    if code == 0 {
        return ProbeOutcome {
            verdict: ProbeVerdict::Ran,
            version: first,
            detail: None,
        };
    }
    let lower = all.to_lowercase();
    if (code == 126 || code == 127) && lower.contains("no such file or directory") {
        return broken(format!(
            "cannot start: the file exists, so its ELF loader or #! interpreter is missing \
             in the image ({})",
            line_with("o such file")
        ));
    }
    if code == 126 || lower.contains("permission denied") {
        return broken(format!(
            "permission denied: the container's user may not execute it ({})",
            first.unwrap_or_default()
        ));
    }
    if (129..=192).contains(&code) {
        let signal = code - 128;
        let hint = match signal {
            4 => ": illegal instruction, built for a newer CPU than this VM's?",
            9 => ": killed, out of memory?",
            11 => ": segmentation fault",
            _ => "",
        };
        return broken(format!("`{display}` crashed with signal {signal}{hint}"));
    }
    let said = first.map(|l| format!(": {l}")).unwrap_or_default();
    match (configured, exit) {
        (true, _) | (false, None) => broken(format!("`{display}` exited with {code}{said}")),
        (false, Some(_)) => ProbeOutcome {
            verdict: ProbeVerdict::Ran,
            version: None,
            detail: Some(format!(
                "runs, but `{display}` exited with {code}{said}; set [verify.probes] for this \
                 binary to an argv that prints its version"
            )),
        },
    }
}

fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(MAX_VERSION_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_first_line() {
        let o = classify(Some(0), "\ngog 1.4.2\nmore\n", "", false, "gog --version");
        assert_eq!(o.verdict, ProbeVerdict::Ran);
        assert_eq!(o.version.as_deref(), Some("gog 1.4.2"));
        let o = classify(Some(0), "", "v2\n", false, "x --version");
        assert_eq!(o.version.as_deref(), Some("v2"));
    }

    #[test]
    fn wrong_arch_and_missing_library() {
        let o = classify(
            Some(1),
            "",
            "exec /usr/bin/gog: exec format error\n",
            false,
            "gog --version",
        );
        assert_eq!(o.verdict, ProbeVerdict::WrongArch);
        assert!(o.detail.unwrap().contains("wrong CPU architecture"));
        let o = classify(
            Some(127),
            "",
            "gog: error while loading shared libraries: libssl.so.3: cannot open shared object file: No such file or directory\n",
            false,
            "gog --version",
        );
        assert_eq!(o.verdict, ProbeVerdict::Broken);
        assert!(
            o.detail
                .unwrap()
                .starts_with("gog: error while loading shared libraries: libssl.so.3")
        );
    }

    #[test]
    fn engine_errors() {
        let o = classify(
            Some(126),
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"/bin/x\": permission denied: unknown\r\n",
            "",
            false,
            "x --version",
        );
        assert_eq!(o.verdict, ProbeVerdict::Broken);
        assert!(o.detail.unwrap().starts_with("permission denied"));
        let o = classify(
            Some(127),
            "exec /usr/bin/x: no such file or directory\n",
            "",
            false,
            "x --version",
        );
        assert!(o.detail.unwrap().contains("interpreter is missing"));
        let o = classify(Some(139), "", "", false, "x --version");
        assert!(o.detail.unwrap().contains("signal 11"));
    }

    #[test]
    fn unsupported_version_flag_still_runs() {
        let o = classify(
            Some(1),
            "",
            "ls: unrecognized option '--version'\n",
            false,
            "ls --version",
        );
        assert_eq!(o.verdict, ProbeVerdict::Ran);
        assert_eq!(o.version, None);
        assert!(o.detail.unwrap().contains("[verify.probes]"));
        let o = classify(Some(2), "", "bad\n", true, "gog version");
        assert_eq!(o.verdict, ProbeVerdict::Broken);
    }
}
