//! What VerifyBinaries answers per binary, and how the image lookup, the container lookup, the
//! probe and the runtime drift combine into one status.
use super::{
    probe::{ProbeOutcome, ProbeVerdict},
    resolve::{Content, Found, Lookup},
    runtime::Drift,
    skills::SkillProblem,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryStatus {
    Ok,
    Missing,
    NotExecutable,
    WrongArch,
    /// Found, but it cannot start or the probe failed.
    Broken,
    /// In the running container, not in the image.
    RuntimeOnly,
    /// In the image; nothing was run (no running container).
    NotRun,
}

impl BinaryStatus {
    /// Whether a skill can count on it after the next restart.
    pub fn usable(self) -> bool {
        matches!(self, BinaryStatus::Ok | BinaryStatus::NotRun)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BinaryReport {
    pub name: String,
    pub status: BinaryStatus,
    /// Where PATH lookup finds it (in the image, or in the container when only there).
    pub path: String,
    /// Where `path`'s symlinks lead, when it is one.
    pub link_target: String,
    pub size: u64,
    pub mode: u32,
    pub version: String,
    pub detail: String,
    pub required_by: Vec<String>,
    pub required: bool,
    /// Where the running container resolves the name, when that differs from `path`.
    pub container_path: String,
    /// Set when the probe's result was reused from an earlier call: how old it is.
    pub probe_reused: Option<std::time::Duration>,
    /// Which image layer set holds it (`[build] overlay` or the base); `None` when the image
    /// does not.
    pub provided_by: Option<ProvidedBy>,
}

/// Where an image's binary comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvidedBy {
    /// The image built from the repository (or pulled), under any overlay.
    Base,
    /// The `[build] overlay` layer on top of it.
    Overlay,
}

impl ProvidedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ProvidedBy::Base => "base",
            ProvidedBy::Overlay => "overlay",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub state: String,
    /// When this run of the container started (docker's `State.StartedAt`): probe results are
    /// only reused within one run.
    pub started_at: String,
    /// Destinations of its volumes and bind mounts.
    pub mounts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The image as named by the container config or the request.
    pub image: String,
    pub image_id: String,
    pub container: Option<ContainerInfo>,
    pub engine_arch: String,
    pub search_path: Vec<String>,
    pub binaries: Vec<BinaryReport>,
    pub skill_problems: Vec<SkillProblem>,
    pub notes: Vec<String>,
    /// Every required binary is usable.
    pub ok: bool,
    pub duration_ms: u64,
}

/// What the image alone says about one name.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSide {
    pub lookup: Lookup,
    pub content: Option<Content>,
    /// A static finding that settles the status (wrong architecture, missing interpreter).
    pub problem: Option<(BinaryStatus, String)>,
}

/// Why nothing was run, when nothing was.
#[derive(Debug, Clone, PartialEq)]
pub enum NotRunReason {
    NoContainer,
    Stopped(String),
    /// The caller asked for lookups only.
    Skipped,
}

/// What the container side and the probe saw of one name, beside the image.
pub struct Seen<'a> {
    pub container: Option<&'a Lookup>,
    /// Ran the binary the image resolves (or, for a runtime-only one, the container's).
    pub probe: Option<&'a ProbeOutcome>,
    pub drift: &'a Drift,
    pub not_run: Option<&'a NotRunReason>,
    pub search_path: &'a [String],
}

/// Combines everything known about one name.
pub fn decide(name: &str, image: &ImageSide, seen: &Seen<'_>) -> BinaryReport {
    let mut r = BinaryReport {
        name: name.to_owned(),
        status: BinaryStatus::Missing,
        path: String::new(),
        link_target: String::new(),
        size: 0,
        mode: 0,
        version: String::new(),
        detail: String::new(),
        required_by: Vec::new(),
        required: false,
        container_path: String::new(),
        probe_reused: None,
        provided_by: None,
    };
    let details = match &image.lookup {
        Lookup::Found(f) => in_image(&mut r, f, image, seen),
        Lookup::NotExecutable(f) => {
            fill(&mut r, f);
            r.status = BinaryStatus::NotExecutable;
            let mut details = vec![format!(
                "{} has mode {:04o} in the image: not executable; `RUN chmod 0755 {}` in the \
                 Dockerfile",
                f.target,
                f.mode & 0o7777,
                f.target
            )];
            if let Drift::RuntimeOnly { detail, .. } = seen.drift {
                details.push(detail.clone());
            }
            details
        }
        Lookup::Missing { notes } => not_in_image(&mut r, notes, seen),
    };
    r.detail = details.join("; ");
    r
}

/// Found in the image: the static problem or the probe decides, drift adds to the detail.
fn in_image(r: &mut BinaryReport, f: &Found, image: &ImageSide, seen: &Seen<'_>) -> Vec<String> {
    let mut details = Vec::new();
    fill(r, f);
    let (status, detail) = match &image.problem {
        Some((status, detail)) => (*status, Some(detail.clone())),
        None => from_probe(seen.probe, image.content.as_ref(), seen.not_run),
    };
    r.status = status;
    details.extend(detail);
    if let Some(p) = seen.probe.filter(|_| image.problem.is_none()) {
        r.version = p.version.clone().unwrap_or_default();
    }
    match seen.drift {
        Drift::Diverged {
            container_path,
            detail,
        } => {
            r.container_path = container_path.clone();
            details.push(detail.clone());
        }
        Drift::DeletedAtRuntime { path } => {
            details.push(format!(
                "{path} was deleted from the running container; a restart brings it back"
            ));
        }
        _ => {}
    }
    details
}

/// Not in the image: installed at runtime, on a mount, or missing.
fn not_in_image(r: &mut BinaryReport, notes: &[String], seen: &Seen<'_>) -> Vec<String> {
    let mut details = Vec::new();
    let (container, probe) = (seen.container, seen.probe);
    match seen.drift {
        Drift::RuntimeOnly { detail, .. } => {
            if let Some(c) = container.and_then(Lookup::found) {
                fill(r, c);
            }
            r.status = BinaryStatus::RuntimeOnly;
            details.push(detail.clone());
            if let Some(p) = probe {
                r.version = p.version.clone().unwrap_or_default();
                if p.verdict != ProbeVerdict::Ran {
                    details.extend(p.detail.clone());
                }
            }
        }
        Drift::FromMount { path, mount } => {
            if let Some(c) = container.and_then(Lookup::found) {
                fill(r, c);
            }
            let (status, detail) = from_probe(probe, None, seen.not_run);
            r.status = status;
            r.version = probe.and_then(|p| p.version.clone()).unwrap_or_default();
            details.push(format!(
                "not in the image: {path} is on the mount {mount}, which survives restarts \
                 but not a new VM; install it in the Dockerfile to be safe"
            ));
            details.extend(detail);
        }
        _ => {
            r.status = BinaryStatus::Missing;
            details.push(format!(
                "not on PATH in the image (searched {}): install it in the Dockerfile",
                seen.search_path.join(":")
            ));
            details.extend(notes.iter().cloned());
            if let Some(Lookup::Missing { notes }) = container {
                details.extend(
                    notes
                        .iter()
                        .map(|n| format!("in the running container: {n}")),
                );
            }
        }
    }
    details
}

/// Which layer of an overlaid image holds the file the image resolves: the base when the base
/// resolves the name to the same file (path, size, mode, mtime), else the overlay. Without an
/// overlay (`base` is `None`) everything in the image is the base's; nothing when the image
/// does not have it.
pub fn provided_by(image: &Lookup, base: Option<&Lookup>) -> Option<ProvidedBy> {
    let Lookup::Found(found) = image else {
        return None;
    };
    match base {
        None => Some(ProvidedBy::Base),
        Some(Lookup::Found(b)) if b == found => Some(ProvidedBy::Base),
        Some(_) => Some(ProvidedBy::Overlay),
    }
}

fn fill(r: &mut BinaryReport, f: &Found) {
    r.path = f.path.clone();
    if f.target != f.path {
        r.link_target = f.target.clone();
    }
    r.size = f.size;
    r.mode = f.mode;
}

fn from_probe(
    probe: Option<&ProbeOutcome>,
    content: Option<&Content>,
    not_run: Option<&NotRunReason>,
) -> (BinaryStatus, Option<String>) {
    let Some(p) = probe else {
        let why = match not_run {
            Some(NotRunReason::Stopped(name)) => {
                format!("in the image; not run: container {name} is not running")
            }
            Some(NotRunReason::NoContainer) => {
                "in the image; not run: no container was checked".to_owned()
            }
            Some(NotRunReason::Skipped) => "in the image; not run (--no-run)".to_owned(),
            None => "in the image; not run".to_owned(),
        };
        return (BinaryStatus::NotRun, Some(why));
    };
    match p.verdict {
        ProbeVerdict::Ran => (BinaryStatus::Ok, p.detail.clone()),
        // The kernel says the same for a file that is neither ELF nor `#!` script.
        ProbeVerdict::WrongArch if matches!(content, Some(Content::Other)) => (
            BinaryStatus::Broken,
            Some(
                "neither an ELF binary nor a #! script: the kernel refuses to run it \
                 (exec format error)"
                    .to_owned(),
            ),
        ),
        ProbeVerdict::WrongArch => (BinaryStatus::WrongArch, p.detail.clone()),
        ProbeVerdict::Broken => (BinaryStatus::Broken, p.detail.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(path: &str) -> Found {
        Found {
            path: path.into(),
            target: "/bin/busybox".into(),
            size: 5,
            mode: 0o100755,
            mtime: None,
        }
    }

    fn seen<'a>(
        probe: Option<&'a ProbeOutcome>,
        not_run: Option<&'a NotRunReason>,
        search_path: &'a [String],
    ) -> Seen<'a> {
        Seen {
            container: None,
            probe,
            drift: &Drift::None,
            not_run,
            search_path,
        }
    }

    fn image(lookup: Lookup) -> ImageSide {
        ImageSide {
            lookup,
            content: Some(Content::Elf { machine: 62 }),
            problem: None,
        }
    }

    #[test]
    fn ok_with_version_and_link() {
        let probe = ProbeOutcome {
            verdict: ProbeVerdict::Ran,
            version: Some("BusyBox v1.35".into()),
            detail: None,
        };
        let i = image(Lookup::Found(found("/bin/sh")));
        let r = decide("sh", &i, &seen(Some(&probe), None, &[]));
        assert_eq!(r.status, BinaryStatus::Ok);
        assert_eq!(r.version, "BusyBox v1.35");
        assert_eq!(r.link_target, "/bin/busybox");
    }

    #[test]
    fn stopped_container_is_not_run() {
        let i = image(Lookup::Found(found("/bin/sh")));
        let stopped = NotRunReason::Stopped("app-gw-1".into());
        let r = decide("sh", &i, &seen(None, Some(&stopped), &[]));
        assert_eq!(r.status, BinaryStatus::NotRun);
        assert!(r.detail.contains("app-gw-1 is not running"), "{}", r.detail);
        assert!(r.status.usable());
    }

    #[test]
    fn missing_names_the_search_path() {
        let i = image(Lookup::Missing { notes: vec![] });
        let path = ["/usr/bin".to_owned(), "/bin".to_owned()];
        let r = decide("wacli", &i, &seen(None, None, &path));
        assert_eq!(r.status, BinaryStatus::Missing);
        assert!(r.detail.contains("/usr/bin:/bin"));
    }

    #[test]
    fn static_problem_wins_over_probe() {
        let mut i = image(Lookup::Found(found("/bin/x")));
        i.problem = Some((BinaryStatus::WrongArch, "wrong CPU architecture".into()));
        let r = decide("x", &i, &seen(None, None, &[]));
        assert_eq!(r.status, BinaryStatus::WrongArch);
    }

    #[test]
    fn provided_by_compares_with_the_base() {
        let gog = Lookup::Found(found("/usr/local/bin/gog"));
        let sh = Lookup::Found(found("/bin/sh"));
        let missing = Lookup::Missing { notes: vec![] };
        assert_eq!(provided_by(&sh, None), Some(ProvidedBy::Base));
        assert_eq!(provided_by(&sh, Some(&sh)), Some(ProvidedBy::Base));
        assert_eq!(provided_by(&gog, Some(&missing)), Some(ProvidedBy::Overlay));
        let mut replaced = found("/usr/local/bin/gog");
        replaced.size = 99;
        assert_eq!(
            provided_by(&gog, Some(&Lookup::Found(replaced))),
            Some(ProvidedBy::Overlay),
            "the overlay replaced the base's file"
        );
        assert_eq!(provided_by(&missing, Some(&missing)), None);
    }
}
