//! The single-flight lock: at most one mutating operation (build, up, update, rollback) runs at
//! a time. The guard is owned by the task doing the work, not by the RPC, so a client that
//! disconnects does not release the lock while the operation is still changing things.
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// The operation that holds (or asked for) the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: String,
    pub kind: String,
    pub requested_by: String,
    pub started_at: DateTime<Utc>,
}

impl Operation {
    pub fn new(kind: &str, requested_by: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            kind: kind.to_owned(),
            requested_by: if requested_by.is_empty() {
                "unknown".into()
            } else {
                requested_by.to_owned()
            },
            started_at: Utc::now(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another operation is running: {} {} (requested by {}, started {}); wait for it or check `clawops status`",
        .0.kind, .0.id, .0.requested_by, .0.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    Busy(Operation),
}

#[derive(Debug, Clone, Default)]
pub struct OperationLock {
    holder: Arc<Mutex<Option<Operation>>>,
}

impl OperationLock {
    /// Takes the lock for `op`, or says who holds it.
    pub fn try_acquire(&self, op: Operation) -> Result<LockGuard, LockError> {
        let mut holder = self.holder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(current) = holder.as_ref() {
            return Err(LockError::Busy(current.clone()));
        }
        *holder = Some(op.clone());
        Ok(LockGuard {
            holder: self.holder.clone(),
            op,
        })
    }

    pub fn holder(&self) -> Option<Operation> {
        self.holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Releases the lock when dropped.
#[derive(Debug)]
pub struct LockGuard {
    holder: Arc<Mutex<Option<Operation>>>,
    op: Operation,
}

impl LockGuard {
    pub fn operation(&self) -> &Operation {
        &self.op
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut holder = self.holder.lock().unwrap_or_else(|e| e.into_inner());
        if holder.as_ref().map(|h| &h.id) == Some(&self.op.id) {
            *holder = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_caller_learns_the_holder_and_lock_frees_on_drop() {
        let lock = OperationLock::default();
        let guard = lock.try_acquire(Operation::new("update", "ci")).unwrap();
        let err = lock.try_acquire(Operation::new("build", "me")).unwrap_err();
        let LockError::Busy(holder) = &err;
        assert_eq!(holder.kind, "update");
        assert!(err.to_string().contains(&guard.operation().id));
        drop(guard);
        assert!(lock.holder().is_none());
        lock.try_acquire(Operation::new("build", "me")).unwrap();
    }
}
