//! The swap's failure matrix against a scripted engine: which calls it makes, what it reports,
//! and that the previous container always ends up back under its name when it can.
use std::{collections::HashMap, sync::Mutex};

use super::*;
use crate::{compose::ContainerSpec, journal::Journal};

const OLD: &str = "0123456789abcdef";
const NEW: &str = "fedcba9876543210";
const NAME: &str = "demo-gateway-1";

/// Records each call; fails the ones named in `fail` (e.g. `"start new"`).
struct Fake {
    old: Option<ProjectContainer>,
    fail: Vec<&'static str>,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn new(fail: &[&'static str]) -> Self {
        Self {
            old: Some(ProjectContainer {
                id: OLD.into(),
                name: NAME.into(),
                service: "gateway".into(),
                state: "running".into(),
                image: "openclaw:old".into(),
                labels: HashMap::new(),
            }),
            fail: fail.to_vec(),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn first_deploy(fail: &[&'static str]) -> Self {
        Self {
            old: None,
            ..Self::new(fail)
        }
    }

    fn call(&self, what: String) -> Result<(), DockerError> {
        let failing = self.fail.contains(&what.as_str());
        self.calls.lock().unwrap().push(what);
        if failing {
            Err(DockerError::fake(500, "scripted failure"))
        } else {
            Ok(())
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// The calls every swap with a previous container starts with.
const SET_ASIDE: &[&str] = &["prepare", "rename old aside", "create"];
/// The calls that put the previous container back once the new one is gone.
const PUT_BACK: &[&str] = &["remove new", "rename old back", "start old"];

/// `old` or `new` for a container id, so the call log reads as a story.
fn who(id: &str) -> &'static str {
    match id {
        OLD => "old",
        NEW => "new",
        _ => "?",
    }
}

impl SwapEngine for Fake {
    async fn prepare(
        &self,
        image: &str,
    ) -> Result<(ContainerSpec, Option<ProjectContainer>), UpError> {
        self.call("prepare".into())?;
        let spec = ContainerSpec {
            service: "gateway".into(),
            name: NAME.into(),
            image: image.into(),
            config_hash: "hash".into(),
            body: Default::default(),
            networks: Vec::new(),
        };
        Ok((spec, self.old.clone()))
    }

    async fn create(&self, _spec: &ContainerSpec) -> Result<String, DockerError> {
        self.call("create".into()).map(|()| NEW.into())
    }

    async fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        let to = if name == NAME { "back" } else { "aside" };
        self.call(format!("rename {} {to}", who(id)))
    }

    async fn stop(&self, id: &str) -> Result<(), DockerError> {
        self.call(format!("stop {}", who(id)))
    }

    async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.call(format!("start {}", who(id)))
    }

    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        self.call(format!("remove {}", who(id)))
    }

    async fn ready(&self, id: &str, _sink: &EventSink) -> Result<(), ReadinessError> {
        self.call(format!("ready {}", who(id)))
            .map_err(|_| ReadinessError::Timeout {
                service: "gateway".into(),
                timeout: Duration::from_secs(1),
                pending: "GET / → 2xx".into(),
                last_logs: if id == NEW {
                    vec!["new one crashed".into()]
                } else {
                    Vec::new()
                },
            })
    }

    async fn last_logs(&self, id: &str) -> Vec<String> {
        vec![format!("last words of {}", who(id))]
    }
}

struct Run {
    result: Result<Swapped, SwapFailed>,
    /// The journal's phases of the operation: (phase, status, message).
    phases: Vec<(String, String, String)>,
    /// The warnings sent to the caller.
    warnings: Vec<String>,
}

async fn run(fake: &Fake) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let op = crate::lock::Operation::new("update", "test");
    journal.begin(&op, None).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = EventSink::new(tx);
    let report = Reporter::new(&sink, &journal, &op.id, "gateway");
    let result = swap(fake, "openclaw:new", &report).await;
    let mut warnings = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let crate::events::Event::Warning(w) = e {
            warnings.push(w);
        }
    }
    let phases = journal.entry(&op.id).unwrap().phases;
    let phases = phases
        .into_iter()
        .map(|p| (p.phase, p.status, p.message))
        .collect();
    Run {
        result,
        phases,
        warnings,
    }
}

#[tokio::test]
async fn a_ready_new_container_replaces_the_old_one() {
    let fake = Fake::new(&[]);
    let run = run(&fake).await;
    assert_eq!(run.result.unwrap().container, NEW);
    assert!(
        run.phases
            .contains(&(PHASE_KEPT.into(), "done".into(), OLD.into()))
    );
    assert_eq!(
        fake.calls(),
        [
            SET_ASIDE,
            &["stop old", "start new", "ready new", "remove old"]
        ]
        .concat()
    );
}

#[tokio::test]
async fn a_first_deploy_has_nothing_to_stop_or_put_back() {
    let fake = Fake::first_deploy(&["ready new"]);
    let failed = run(&fake).await.result.unwrap_err();
    assert!(!failed.stopped_old);
    assert!(failed.restored.is_ok());
    assert_eq!(
        fake.calls(),
        ["prepare", "create", "start new", "ready new", "remove new"]
    );
}

#[tokio::test]
async fn preparing_fails_before_anything_is_touched() {
    let fake = Fake::new(&["prepare"]);
    let failed = run(&fake).await.result.unwrap_err();
    assert!(matches!(failed.reason, SwapError::Prepare(_)));
    assert!(!failed.stopped_old);
    assert_eq!(fake.calls(), ["prepare"]);
}

#[tokio::test]
async fn create_fails_the_old_one_gets_its_name_back_and_never_stopped() {
    let fake = Fake::new(&["create"]);
    let failed = run(&fake).await.result.unwrap_err();
    assert!(
        matches!(failed.reason, SwapError::Docker(_)),
        "{}",
        failed.reason
    );
    assert!(!failed.stopped_old);
    assert_eq!(failed.downtime, Duration::ZERO);
    assert_eq!(fake.calls(), [SET_ASIDE, &["rename old back"]].concat());
}

#[tokio::test]
async fn stop_fails_the_new_one_goes_and_the_old_one_is_started_again() {
    let fake = Fake::new(&["stop old"]);
    let failed = run(&fake).await.result.unwrap_err();
    assert!(!failed.stopped_old);
    assert!(failed.restored.is_ok());
    assert_eq!(fake.calls(), [SET_ASIDE, &["stop old"], PUT_BACK].concat());
}

#[tokio::test]
async fn start_fails_the_old_one_is_put_back_with_the_new_ones_logs() {
    let fake = Fake::new(&["start new"]);
    let failed = run(&fake).await.result.unwrap_err();
    assert!(matches!(failed.reason, SwapError::Docker(_)));
    assert!(failed.stopped_old);
    assert!(failed.restored.is_ok());
    assert_eq!(failed.last_logs, ["last words of new"]);
    assert_eq!(
        fake.calls(),
        [
            SET_ASIDE,
            &["stop old", "start new"],
            PUT_BACK,
            &["ready old"]
        ]
        .concat()
    );
}

#[tokio::test]
async fn readiness_fails_the_old_one_is_put_back_and_journaled() {
    let fake = Fake::new(&["ready new"]);
    let run = run(&fake).await;
    let failed = run.result.unwrap_err();
    assert!(matches!(failed.reason, SwapError::Readiness(_)));
    assert!(failed.stopped_old && failed.restored.is_ok());
    // The readiness error's own logs are kept; no second fetch.
    assert_eq!(failed.last_logs, ["new one crashed"]);
    assert_eq!(
        fake.calls()[5..],
        [&["ready new"], PUT_BACK, &["ready old"]].concat()
    );
    let journaled: Vec<(&str, &str)> = run
        .phases
        .iter()
        .map(|(p, s, _)| (p.as_str(), s.as_str()))
        .collect();
    assert!(journaled.ends_with(&[
        ("readiness", "failed"),
        ("rollback", "started"),
        ("rollback", "done")
    ]));
}

#[tokio::test]
async fn restore_fails_when_the_old_one_cannot_start_again() {
    let fake = Fake::new(&["ready new", "start old"]);
    let failed = run(&fake).await.result.unwrap_err();
    assert!(failed.stopped_old);
    assert!(matches!(failed.restored, Err(RestoreError::Docker(_))));
    assert_eq!(fake.calls().last().unwrap(), "start old");
}

#[tokio::test]
async fn restore_fails_when_the_old_one_does_not_become_ready() {
    let fake = Fake::new(&["ready new", "ready old"]);
    let failed = run(&fake).await.result.unwrap_err();
    let why = failed.restored.unwrap_err();
    assert!(matches!(why, RestoreError::NotReady(_)));
    assert!(
        why.to_string()
            .starts_with("the previous container did not become ready again")
    );
}

#[tokio::test]
async fn a_leftover_old_container_is_only_warned_about() {
    let fake = Fake::new(&["remove old"]);
    let run = run(&fake).await;
    assert!(run.result.is_ok());
    assert!(
        run.warnings
            .iter()
            .any(|w| w.contains("could not be removed")),
        "{:?}",
        run.warnings
    );
}
