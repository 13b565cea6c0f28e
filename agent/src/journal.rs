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
/// Where the journal goes when it reaches its size limit (the one before is dropped).
pub const ROTATED_FILE: &str = "journal.1.jsonl";
pub const DEFAULT_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Healthy deploys restated at the top of a fresh journal, so rollback and the deployed sha
/// survive any number of rotations.
const CARRIED_DEPLOYS: usize = 10;
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
    max_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Journal {
    /// [`Journal::open_with_limit`] with the default size.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        Self::open_with_limit(state_dir, DEFAULT_MAX_BYTES)
    }

    /// Opens (creating if needed) the journal in `state_dir` and reads what it holds: the tail
    /// of the rotated file, then of the current one. A torn last line (crash mid-write) is
    /// skipped with a warning, never fatal. Past `max_bytes` the file is rotated.
    pub fn open_with_limit(state_dir: &Path, max_bytes: u64) -> Result<Self, JournalError> {
        let path = state_dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let (entries, index) =
            load(&[state_dir.join(ROTATED_FILE), path.clone()], max_bytes).map_err(io)?;
        let file = open_append(&path).map_err(io)?;
        Ok(Self {
            path,
            max_bytes: max_bytes.max(1),
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
        let size = inner.file.metadata().map_err(io)?.len();
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            self.rotate(&mut inner).map_err(io)?;
        }
        // One write per record: with O_APPEND a line is never interleaved with another.
        inner.file.write_all(&line).map_err(io)?;
        inner.file.sync_data().map_err(io)?;
        let Inner { entries, index, .. } = &mut *inner;
        apply(entries, index, record);
        Ok(())
    }
}

impl Journal {
    /// journal.jsonl becomes journal.1.jsonl; the fresh file starts with what must outlive the
    /// old one: operations still running (their later records refer to them) and the newest
    /// healthy deploys. Memory then holds only what the two files hold.
    fn rotate(&self, inner: &mut Inner) -> std::io::Result<()> {
        let rotated = self.path.with_file_name(ROTATED_FILE);
        let mut carried: Vec<&Entry> = inner
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::Running)
            .collect();
        let mut seen = std::collections::HashSet::new();
        carried.extend(
            inner
                .entries
                .iter()
                .rev()
                .filter(|e| e.is_healthy_deploy() && seen.insert(e.to_sha.clone()))
                .take(CARRIED_DEPLOYS),
        );
        carried.sort_by_key(|e| e.started_at);
        let mut text = Vec::new();
        for record in carried.into_iter().flat_map(restate) {
            serde_json::to_writer(&mut text, &record).expect("journal records serialize");
            text.push(b'\n');
        }
        std::fs::rename(&self.path, &rotated)?;
        let mut file = open_append(&self.path)?;
        file.write_all(&text)?;
        file.sync_data()?;
        inner.file = file;
        (inner.entries, inner.index) = load(&[rotated, self.path.clone()], self.max_bytes)?;
        Ok(())
    }
}

/// The records that rebuild `e` (a repeated `begin` for a known id is ignored on load, and
/// `end` is idempotent). Phases are not restated: applied again they would be duplicated.
fn restate(e: &Entry) -> Vec<Record> {
    let mut records = vec![Record::Begin {
        id: e.id.clone(),
        kind: e.kind.clone(),
        requested_by: e.requested_by.clone(),
        at: e.started_at,
        from_sha: e.from_sha.clone(),
    }];
    if let Some(at) = e.finished_at {
        records.push(Record::End {
            id: e.id.clone(),
            at,
            outcome: e.outcome,
            finish: Finish {
                from_sha: e.from_sha.clone(),
                to_sha: e.to_sha.clone(),
                image: e.image.clone(),
                message: e.message.clone(),
                last_logs: e.last_logs.clone(),
            },
        });
    }
    records
}

type Folded = (Vec<Entry>, HashMap<String, usize>);

/// Folds the records of `files`, oldest file first, reading at most the last `max_bytes` of
/// each: a journal grown by hand or by a bug must not make start-up slow or the agent large.
fn load(files: &[PathBuf], max_bytes: u64) -> std::io::Result<Folded> {
    use std::io::{Read, Seek, SeekFrom};
    let mut entries = Vec::new();
    let mut index = HashMap::new();
    for path in files {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let cut = len > max_bytes;
        if cut {
            f.seek(SeekFrom::Start(len - max_bytes))?;
        }
        let mut reader = BufReader::new(f.take(max_bytes));
        if cut {
            // Starting mid-file: the first line is a fragment.
            reader.read_until(b'\n', &mut Vec::new())?;
        }
        for (n, line) in reader.split(b'\n').enumerate() {
            let line = line?;
            if line.trim_ascii().is_empty() {
                continue;
            }
            match serde_json::from_slice::<Record>(&line) {
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
    Ok((entries, index))
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    // After a torn write the file ends mid-line: start the next record on a line of its own.
    if ends_without_newline(path)? {
        file.write_all(b"\n")?;
    }
    Ok(file)
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
            // Restated after a rotation: the entry read from the older file stays.
            if index.contains_key(&id) {
                return;
            }
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
#[path = "journal_tests.rs"]
mod tests;
