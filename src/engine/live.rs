//! In-memory state of executions that are not finished yet: their status as a `watch` channel
//! (waiters are signalled, never poll) and the outputs received so far.
//!
//! Every status change of an execution in this process passes through here, so this is
//! where `execution` events (SPEC §7) are published and the execution metrics recorded:
//! `executions_total{status}`, `execution_duration_seconds`, `execution_queue_depth`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::watch;

use crate::events::{Event, EventHub};
use crate::store::{ExecutionRecord, Status};

/// One unfinished execution.
pub struct LiveExecution {
    /// Its notebook (root-relative), for events.
    pub notebook: String,
    /// Its cell, if any, for events.
    pub cell_id: Option<String>,
    /// When it became `running` in this process (for `execution_duration_seconds`).
    pub running_since: Mutex<Option<Instant>>,
    /// Current status; terminal once the row is final in the store.
    pub status: watch::Sender<Status>,
    /// Outputs so far (nbformat, as `finish()` would give them now) and execution_count.
    pub partial: Mutex<(Arc<Vec<Value>>, Option<i64>)>,
    /// Prompt of an unanswered `input()` call, if any.
    pub input_prompt: Mutex<Option<String>>,
    /// The stored final record, set just before the terminal status is published, so that
    /// waiters need not read it back from the store.
    pub final_record: Mutex<Option<ExecutionRecord>>,
}

/// Registry of live executions by id.
pub struct LiveRegistry {
    map: Mutex<HashMap<String, Arc<LiveExecution>>>,
    events: EventHub,
    /// Executions `pending` in this registry (the engine's queue depth).
    pending: AtomicI64,
}

impl LiveRegistry {
    /// An empty registry publishing to `events`.
    pub fn new(events: EventHub) -> LiveRegistry {
        LiveRegistry {
            map: Mutex::new(HashMap::new()),
            events,
            pending: AtomicI64::new(0),
        }
    }

    /// Executions pending in this engine (accepted, not yet running nor ended).
    pub fn queue_depth(&self) -> usize {
        self.pending.load(Ordering::Relaxed).max(0) as usize
    }

    /// Executions of `notebook` pending in this registry (for answers from memory).
    pub fn pending_of(&self, notebook: &str) -> usize {
        self.map
            .lock()
            .map(|m| {
                m.values()
                    .filter(|l| l.notebook == notebook && *l.status.borrow() == Status::Pending)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Registers a new pending execution of `notebook` (and `cell_id`).
    pub fn insert(&self, id: &str, notebook: &str, cell_id: Option<&str>) -> Arc<LiveExecution> {
        let (tx, _) = watch::channel(Status::Pending);
        self.pending.fetch_add(1, Ordering::Relaxed);
        crate::metrics::execution().queue_depth.inc();
        self.events
            .publish_with(|| Event::execution(id, notebook, cell_id, Status::Pending, None));
        let live = Arc::new(LiveExecution {
            notebook: notebook.to_string(),
            cell_id: cell_id.map(str::to_string),
            running_since: Mutex::new(None),
            status: tx,
            partial: Mutex::new((Arc::new(Vec::new()), None)),
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
        let Some(live) = live else { return };
        let before = live.status.send_replace(status);
        if before == status {
            return;
        }
        if before == Status::Pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            crate::metrics::execution().queue_depth.dec();
        }
        let m = crate::metrics::execution();
        if status == Status::Running {
            if let Ok(mut r) = live.running_since.lock() {
                *r = Some(Instant::now());
            }
        } else if status.is_terminal() {
            if let Some(c) = m.total_of(status) {
                c.inc();
            }
            let since = live.running_since.lock().ok().and_then(|r| *r);
            if let Some(t) = since {
                m.duration_seconds.observe(t.elapsed().as_secs_f64());
            }
        }
        self.events.publish_with(|| {
            let count = live
                .final_record
                .lock()
                .ok()
                .and_then(|f| f.as_ref().and_then(|r| r.execution_count))
                .or_else(|| live.partial.lock().ok().and_then(|p| p.1));
            Event::execution(id, &live.notebook, live.cell_id.as_deref(), status, count)
        });
    }
}
