//! The journal against real files in a tempdir: folding, torn lines, rotation, what counts as deployed.
use super::*;

fn deploy(journal: &Journal, sha: &str, outcome: Outcome) -> String {
    let op = Operation::new("update", "test");
    journal.begin(&op, None).unwrap();
    journal.phase(&op.id, "build", "done", 12, "").unwrap();
    journal
        .finish(
            &op.id,
            outcome,
            Finish {
                to_sha: Some(sha.into()),
                ..Default::default()
            },
        )
        .unwrap();
    op.id
}

#[test]
fn survives_reopen_and_folds_records() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let id = deploy(&journal, "aaa", Outcome::Succeeded);
    deploy(&journal, "bbb", Outcome::RolledBack);
    drop(journal);
    let journal = Journal::open(dir.path()).unwrap();
    let entries = journal.entries(10);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].id, id);
    assert_eq!(entries[1].phases.len(), 1);
    assert_eq!(journal.deployed().unwrap().to_sha.as_deref(), Some("aaa"));
}

#[test]
fn unfinished_operations_are_found_and_torn_lines_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let op = Operation::new("update", "test");
    journal.begin(&op, Some("aaa".into())).unwrap();
    drop(journal);
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(JOURNAL_FILE))
        .unwrap();
    f.write_all(b"{\"type\":\"end\",\"id\":").unwrap();
    drop(f);
    let journal = Journal::open(dir.path()).unwrap();
    let open = journal.unfinished();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].from_sha.as_deref(), Some("aaa"));
    // New records still land on their own line after the torn one.
    journal
        .finish(&op.id, Outcome::Interrupted, Finish::default())
        .unwrap();
    drop(journal);
    let journal = Journal::open(dir.path()).unwrap();
    assert!(journal.unfinished().is_empty());
}

/// Past its limit the journal rotates; start-up reads bounded tails; the deployed sha and
/// running operations survive any number of rotations and a restart.
#[test]
fn rotates_past_the_limit_and_keeps_the_deployed_sha() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 4096;
    let journal = Journal::open_with_limit(dir.path(), limit).unwrap();
    deploy(&journal, "aaa", Outcome::Succeeded);
    let running = Operation::new("update", "test");
    journal.begin(&running, Some("aaa".into())).unwrap();
    for _ in 0..100 {
        deploy(&journal, "bad", Outcome::Failed);
    }
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().len();
    assert!(size(JOURNAL_FILE) <= limit, "{}", size(JOURNAL_FILE));
    assert!(size(ROTATED_FILE) <= limit, "{}", size(ROTATED_FILE));
    assert_eq!(journal.deployed().unwrap().to_sha.as_deref(), Some("aaa"));
    assert!(journal.entries(1000).len() < 100);
    // Later records of an operation begun before the rotations still land.
    journal.phase(&running.id, "build", "done", 1, "").unwrap();
    drop(journal);
    let journal = Journal::open_with_limit(dir.path(), limit).unwrap();
    assert_eq!(journal.deployed().unwrap().to_sha.as_deref(), Some("aaa"));
    assert_eq!(journal.unfinished().len(), 1);

    // A journal grown far past the limit by other means: only its tail is read.
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(JOURNAL_FILE))
        .unwrap();
    f.write_all(&vec![b'x'; 10 * limit as usize]).unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);
    let journal = Journal::open_with_limit(dir.path(), limit).unwrap();
    assert_eq!(journal.deployed().unwrap().to_sha.as_deref(), Some("aaa"));
}

#[test]
fn deployed_skips_failed_and_dedups_shas() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    deploy(&journal, "aaa", Outcome::Succeeded);
    deploy(&journal, "bbb", Outcome::Succeeded);
    deploy(&journal, "bbb", Outcome::UpToDate);
    deploy(&journal, "ccc", Outcome::RolledBack);
    let shas: Vec<_> = journal
        .healthy_deploys()
        .into_iter()
        .map(|e| e.to_sha.unwrap())
        .collect();
    assert_eq!(shas, ["bbb", "aaa"]);
}
