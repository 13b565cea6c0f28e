//! The deploy journal: append-only JSON lines in the state dir, fsync'd after every record, so
//! that what happened survives crashes and restarts. An operation is a `begin` record, any number
//! of `phase` records and one `end` record, all carrying the operation id; readers fold them into
//! entries. An operation without `end` was interrupted (agent killed) and is reconciled at start.
use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lock::Operation;

pub const JOURNAL_FILE: &str = "journal.jsonl";
const LAST_LOG_LINES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal: unknown operation {0}")]
    UnknownOperation(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Succeeded,
    UpToDate,
    Failed,
    RolledBack,
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::UpToDate => "up_to_date",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// What an operation ended with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Finish {
    pub from_sha: Option<String>,
    pub to_sha: Option<String>,
    pub image: Option<String>,
    pub message: String,
    #[serde(default)]
    pub last_logs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record {
    Begin {
        id: String,
        kind: String,
        requested_by: String,
        at: DateTime<Utc>,
        #[serde(default)]
        from_sha: Option<String>,
    },
    Phase {
        id: String,
        at: DateTime<Utc>,
        phase: String,
        status: String,
        #[serde(default)]
        elapsed_ms: u64,
        #[serde(default)]
        message: String,
    },
    End {
        id: String,
        at: DateTime<Utc>,
        outcome: Outcome,
        #[serde(flatten)]
        finish: Finish,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseRecord {
    pub phase: String,
    pub status: String,
    pub elapsed_ms: u64,
    pub message: String,
}

/// One operation, folded from its records.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub id: String,
    pub kind: String,
    pub requested_by: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    pub from_sha: Option<String>,
    pub to_sha: Option<String>,
    pub image: Option<String>,
    pub message: String,
    pub phases: Vec<PhaseRecord>,
    pub last_logs: Vec<String>,
}

impl Entry {
    /// A deploy that left a healthy container running `to_sha`.
    pub fn is_healthy_deploy(&self) -> bool {
        matches!(self.outcome, Outcome::Succeeded | Outcome::UpToDate)
            && matches!(self.kind.as_str(), "update" | "up" | "rollback")
            && self.to_sha.is_some()
    }
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `state_dir` and reads what it holds. A torn last
    /// line (crash mid-write) is skipped with a warning, never fatal.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let path = state_dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut entries = Vec::new();
        let mut index = HashMap::new();
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(io)?);
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(io)?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Record>(&line) {
                    Ok(record) => apply(&mut entries, &mut index, record),
                    Err(e) => tracing::warn!(
                        journal = %path.display(),
                        line = n + 1,
                        error = %e,
                        "skipping unreadable journal line"
                    ),
                }
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        // After a torn write the file ends mid-line: start the next record on a line of its own.
        if ends_without_newline(&path).map_err(io)? {
            file.write_all(b"\n").map_err(io)?;
        }
        Ok(Self {
            path,
            inner: Mutex::new(Inner {
                file,
                entries,
                index,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn begin(&self, op: &Operation, from_sha: Option<String>) -> Result<(), JournalError> {
        self.append(Record::Begin {
            id: op.id.clone(),
            kind: op.kind.clone(),
            requested_by: op.requested_by.clone(),
            at: op.started_at,
            from_sha,
        })
    }

    pub fn phase(
        &self,
        id: &str,
        phase: &str,
        status: &str,
        elapsed_ms: u64,
        message: &str,
    ) -> Result<(), JournalError> {
        self.append(Record::Phase {
            id: id.to_owned(),
            at: Utc::now(),
            phase: phase.to_owned(),
            status: status.to_owned(),
            elapsed_ms,
            message: message.to_owned(),
        })
    }

    pub fn finish(
        &self,
        id: &str,
        outcome: Outcome,
        mut finish: Finish,
    ) -> Result<(), JournalError> {
        let excess = finish.last_logs.len().saturating_sub(LAST_LOG_LINES);
        finish.last_logs.drain(..excess);
        self.append(Record::End {
            id: id.to_owned(),
            at: Utc::now(),
            outcome,
            finish,
        })
    }

    /// Newest first.
    pub fn entries(&self, limit: usize) -> Vec<Entry> {
        let inner = self.lock();
        inner.entries.iter().rev().take(limit).cloned().collect()
    }

    pub fn entry(&self, id: &str) -> Option<Entry> {
        let inner = self.lock();
        inner.index.get(id).map(|&i| inner.entries[i].clone())
    }

    /// Operations that began but never ended: the agent died while running them.
    pub fn unfinished(&self) -> Vec<Entry> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::Running)
            .cloned()
            .collect()
    }

    /// The newest deploy that left a healthy container: what is (or should be) serving.
    pub fn deployed(&self) -> Option<Entry> {
        self.healthy_deploys().into_iter().next()
    }

    /// Healthy deploys, newest first, one per distinct sha.
    pub fn healthy_deploys(&self) -> Vec<Entry> {
        let inner = self.lock();
        let mut seen = std::collections::HashSet::new();
        inner
            .entries
            .iter()
            .rev()
            .filter(|e| e.is_healthy_deploy())
            .filter(|e| seen.insert(e.to_sha.clone()))
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, record: Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(&record).expect("journal records serialize");
        line.push(b'\n');
        let mut inner = self.lock();
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        if let Record::Phase { id, .. } | Record::End { id, .. } = &record
            && !inner.index.contains_key(id)
        {
            return Err(JournalError::UnknownOperation(id.clone()));
        }
        // One write per record: with O_APPEND a line is never interleaved with another.
        inner.file.write_all(&line).map_err(io)?;
        inner.file.sync_data().map_err(io)?;
        let Inner { entries, index, .. } = &mut *inner;
        apply(entries, index, record);
        Ok(())
    }
}

fn ends_without_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

fn apply(entries: &mut Vec<Entry>, index: &mut HashMap<String, usize>, record: Record) {
    match record {
        Record::Begin {
            id,
            kind,
            requested_by,
            at,
            from_sha,
        } => {
            index.insert(id.clone(), entries.len());
            entries.push(Entry {
                id,
                kind,
                requested_by,
                started_at: at,
                finished_at: None,
                outcome: Outcome::Running,
                from_sha,
                to_sha: None,
                image: None,
                message: String::new(),
                phases: Vec::new(),
                last_logs: Vec::new(),
            });
        }
        Record::Phase {
            id,
            phase,
            status,
            elapsed_ms,
            message,
            ..
        } => {
            if let Some(&i) = index.get(&id) {
                entries[i].phases.push(PhaseRecord {
                    phase,
                    status,
                    elapsed_ms,
                    message,
                });
            }
        }
        Record::End {
            id,
            at,
            outcome,
            finish,
        } => {
            if let Some(&i) = index.get(&id) {
                let e = &mut entries[i];
                e.finished_at = Some(at);
                e.outcome = outcome;
                if finish.from_sha.is_some() {
                    e.from_sha = finish.from_sha;
                }
                e.to_sha = finish.to_sha;
                e.image = finish.image;
                e.message = finish.message;
                e.last_logs = finish.last_logs;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
