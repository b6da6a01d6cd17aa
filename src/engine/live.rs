//! In-memory state of executions that are not finished yet: their status as a `watch` channel
//! (waiters are signalled, never poll) and the outputs received so far.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::watch;

use crate::store::{ExecutionRecord, Status};

/// One unfinished execution.
pub struct LiveExecution {
    /// Current status; terminal once the row is final in the store.
    pub status: watch::Sender<Status>,
    /// Outputs so far (nbformat, as `finish()` would give them now) and execution_count.
    pub partial: Mutex<(Vec<Value>, Option<i64>)>,
    /// Prompt of an unanswered `input()` call, if any.
    pub input_prompt: Mutex<Option<String>>,
    /// The stored final record, set just before the terminal status is published, so that
    /// waiters need not read it back from the store.
    pub final_record: Mutex<Option<ExecutionRecord>>,
}

/// Registry of live executions by id.
#[derive(Default)]
pub struct LiveRegistry {
    map: Mutex<HashMap<String, Arc<LiveExecution>>>,
}

impl LiveRegistry {
    /// Registers a new pending execution.
    pub fn insert(&self, id: &str) -> Arc<LiveExecution> {
        let (tx, _) = watch::channel(Status::Pending);
        let live = Arc::new(LiveExecution {
            status: tx,
            partial: Mutex::new((Vec::new(), None)),
            input_prompt: Mutex::new(None),
            final_record: Mutex::new(None),
        });
        if let Ok(mut m) = self.map.lock() {
            m.insert(id.to_string(), live.clone());
        }
        live
    }

    /// The live entry, if the execution is unfinished in this process.
    pub fn get(&self, id: &str) -> Option<Arc<LiveExecution>> {
        self.map.lock().ok().and_then(|m| m.get(id).cloned())
    }

    /// Publishes a terminal state together with the record as stored.
    pub fn finish(&self, rec: &ExecutionRecord) {
        if let Some(live) = self.get(&rec.id) {
            if let Ok(mut f) = live.final_record.lock() {
                *f = Some(rec.clone());
            }
        }
        self.set_status(&rec.id, rec.status);
    }

    /// Publishes a status; terminal statuses remove the entry (after the store was updated).
    pub fn set_status(&self, id: &str, status: Status) {
        let live = if status.is_terminal() {
            self.map.lock().ok().and_then(|mut m| m.remove(id))
        } else {
            self.get(id)
        };
        if let Some(live) = live {
            live.status.send_replace(status);
        }
    }
}
