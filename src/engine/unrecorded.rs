//! Terminal states the store could not record. When a store call fails (disk full, I/O error,
//! a lock held too long), the execution still ends in memory -- waiters get its terminal
//! status and a note naming the store problem -- and the write is kept here and retried: before
//! each job of any notebook's worker, and every [`RETRY_EVERY`] by a retry task while anything
//! is left. Nothing is lost while the process lives; if it dies first, the row is still
//! `pending` or `running` and recovery settles it as after any crash (never run twice).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::Engine;
use crate::store::{self, ExecutionRecord, Status, StoreError};

/// How often the retry task tries again while writes are outstanding.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// A write the store refused.
#[derive(Debug, Clone)]
enum Op {
    /// `finish(record)`.
    Finish(Box<ExecutionRecord>),
    /// `cancel_batch(batch, note)`.
    CancelBatch { batch: String, note: String },
}

/// Outstanding writes, in the order they failed.
#[derive(Default)]
pub struct Unrecorded {
    ops: Mutex<Vec<Op>>,
    /// Batches stopped in memory whose cancel is not recorded yet: their executions are not
    /// run even if the store lets the worker start them.
    stopped_batches: Mutex<HashSet<String>>,
    retrying: AtomicBool,
}

impl Unrecorded {
    /// The terminal record of an execution whose end is not in the store yet.
    pub fn lookup(&self, id: &str) -> Option<ExecutionRecord> {
        let ops = self.ops.lock().ok()?;
        ops.iter().rev().find_map(|op| match op {
            Op::Finish(r) if r.id == id => Some((**r).clone()),
            _ => None,
        })
    }

    /// True when `batch` was stopped in memory and its cancel is still unrecorded.
    pub fn batch_stopped(&self, batch: &str) -> bool {
        self.stopped_batches
            .lock()
            .map(|s| s.contains(batch))
            .unwrap_or(false)
    }

    /// Number of writes still outstanding.
    pub fn len(&self) -> usize {
        self.ops.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// True when nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, op: Op) {
        if let Op::CancelBatch { batch, .. } = &op {
            if let Ok(mut s) = self.stopped_batches.lock() {
                s.insert(batch.clone());
            }
        }
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }
}

/// The note added to an execution whose end the store refused.
fn store_note(e: &StoreError) -> String {
    format!(
        "the state database could not record this result ({e}); the server keeps it in memory \
         and records it as soon as the database accepts writes again"
    )
}

/// Records `done` (a terminal state) and publishes it to waiters. If the store fails, the
/// execution still ends in memory with a note naming the problem, and the write is retried
/// later. Returns false only when another path had already ended the row.
pub(super) async fn record_final(engine: &Engine, mut done: ExecutionRecord) -> bool {
    let stored = done.clone();
    match engine
        .store()
        .call(move |c| store::executions::finish(c, &stored))
        .await
    {
        Ok(true) => {
            engine.live().finish(&done);
            true
        }
        Ok(false) => {
            // Someone else ended it first; waiters read the stored state.
            engine.live().set_status(&done.id, done.status);
            false
        }
        Err(e) => {
            tracing::error!(execution = %done.id, "could not record the end of the execution: {e}");
            let note = store_note(&e);
            done.note = Some(match done.note.take() {
                Some(prev) => format!("{prev}\n{note}"),
                None => note,
            });
            engine.unrecorded().push(Op::Finish(Box::new(done.clone())));
            engine.live().finish(&done);
            spawn_retry(engine);
            true
        }
    }
}

/// Ends an execution that never reached a kernel (or whose worker failed), in memory at
/// least: `status` with `{ename, evalue: message}` as its error.
pub(super) async fn settle(
    engine: &Engine,
    id: &str,
    status: Status,
    ename: &str,
    message: &str,
) -> Option<ExecutionRecord> {
    let owned = id.to_string();
    let rec = match engine
        .store()
        .call(move |c| store::executions::get(c, &owned))
        .await
    {
        Ok(Some(rec)) if rec.status.is_terminal() => {
            engine.live().set_status(id, rec.status);
            return None;
        }
        Ok(Some(rec)) => rec,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(execution = %id, "could not read the execution to end it: {e}");
            match engine.unrecorded().lookup(id) {
                Some(done) => {
                    engine.live().finish(&done);
                    return None;
                }
                None => placeholder(id),
            }
        }
    };
    let mut done = rec;
    done.status = status;
    done.error = Some(json!({"ename": ename, "evalue": message, "traceback": []}));
    done.note = Some(message.to_string());
    done.finished_at = Some(store::now());
    record_final(engine, done.clone()).await.then_some(done)
}

/// The record of an execution of this process built from memory, when its row cannot be
/// read (`e`): status, outputs so far, a note naming the store problem.
pub(super) fn from_memory(
    id: &str,
    live: &super::live::LiveExecution,
    e: &StoreError,
) -> ExecutionRecord {
    if let Some(done) = live.final_record.lock().ok().and_then(|f| f.clone()) {
        return done;
    }
    let mut rec = placeholder(id);
    rec.notebook = live.notebook.clone();
    rec.cell_id = live.cell_id.clone();
    rec.status = *live.status.borrow();
    if let Ok(p) = live.partial.lock() {
        rec.outputs = p.0.as_ref().clone();
        rec.execution_count = p.1;
    }
    rec.note = Some(format!(
        "answered from memory: the state database is not answering ({e}); the execution goes on"
    ));
    rec
}

/// A record for an execution whose row cannot be read (the store failed twice in a row).
fn placeholder(id: &str) -> ExecutionRecord {
    ExecutionRecord {
        seq: 0,
        id: id.to_string(),
        notebook: String::new(),
        cell_id: None,
        code: String::new(),
        batch_id: None,
        stop_on_error: false,
        allow_error: false,
        status: Status::Pending,
        kernel_session: None,
        msg_id: None,
        execution_count: None,
        outputs: Vec::new(),
        error: None,
        note: None,
        created_at: store::now(),
        started_at: None,
        finished_at: None,
        requested_by: None,
    }
}

/// Cancels the pending rest of a `run_all_cells` batch; if the store fails, the batch is
/// stopped in memory (its executions will not run) and the cancel is retried later.
pub(super) async fn cancel_batch(engine: &Engine, batch: String, note: String) {
    let (b, n) = (batch.clone(), note.clone());
    match engine
        .store()
        .call(move |c| store::executions::cancel_batch(c, &b, &n))
        .await
    {
        Ok(ids) => {
            for id in ids {
                engine.live().set_status(&id, Status::Cancelled);
            }
        }
        Err(e) => {
            tracing::error!(batch = %batch, "could not cancel the rest of the batch: {e}");
            engine.unrecorded().push(Op::CancelBatch { batch, note });
            spawn_retry(engine);
        }
    }
}

/// Tries every outstanding write once, in order; keeps those that fail again. Returns the
/// number still outstanding.
pub(super) async fn flush(engine: &Engine) -> usize {
    let ops: Vec<Op> = match engine.unrecorded().ops.lock() {
        Ok(mut ops) if !ops.is_empty() => std::mem::take(&mut *ops),
        _ => return 0,
    };
    let mut left = Vec::new();
    for op in ops {
        let attempt = op.clone();
        let r = engine
            .store()
            .call(move |c| match &attempt {
                Op::Finish(rec) => store::executions::finish(c, rec).map(|_| Vec::new()),
                Op::CancelBatch { batch, note } => store::executions::cancel_batch(c, batch, note),
            })
            .await;
        match (r, &op) {
            (Ok(ids), Op::CancelBatch { batch, .. }) => {
                for id in ids {
                    engine.live().set_status(&id, Status::Cancelled);
                }
                if let Ok(mut s) = engine.unrecorded().stopped_batches.lock() {
                    s.remove(batch);
                }
            }
            (Ok(_), Op::Finish(rec)) => {
                tracing::info!(execution = %rec.id, "recorded the end of the execution after a database failure");
            }
            (Err(e), _) => {
                tracing::debug!("database still refuses a write: {e}");
                left.push(op);
            }
        }
    }
    let n = left.len();
    if let Ok(mut ops) = engine.unrecorded().ops.lock() {
        // Writes that failed meanwhile go after the ones retried now.
        left.append(&mut ops);
        *ops = left;
        ops.len()
    } else {
        n
    }
}

/// Starts the retry task unless one runs; it ends once nothing is outstanding.
fn spawn_retry(engine: &Engine) {
    if engine.unrecorded().retrying.swap(true, Ordering::SeqCst) {
        return;
    }
    let engine = engine.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RETRY_EVERY).await;
            if flush(&engine).await == 0 {
                engine.unrecorded().retrying.store(false, Ordering::SeqCst);
                // A write that failed between the flush and the flag reset restarts it.
                if engine.unrecorded().is_empty()
                    || engine.unrecorded().retrying.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        }
    });
}
