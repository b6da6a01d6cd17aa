//! Execution rows: `pending -> running -> completed | failed | cancelled | interrupted`
//! (SPEC §5). Outputs are the cell's nbformat outputs as a JSON array.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::Value;

use super::StoreError;

/// Lifecycle state of an execution (SPEC §3 "Status meanings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Queued, not yet sent to the kernel.
    Pending,
    /// Sent to the kernel, no reply yet.
    Running,
    /// The kernel replied `ok`.
    Completed,
    /// The code raised, or the kernel died (`error` says which).
    Failed,
    /// Removed before it ran.
    Cancelled,
    /// Stopped by an interrupt or a server crash.
    Interrupted,
}

impl Status {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "running" => Status::Running,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "cancelled" => Status::Cancelled,
            "interrupted" => Status::Interrupted,
            _ => return None,
        })
    }

    /// True once nothing will change any more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Pending | Status::Running)
    }
}

/// A request to run code, as accepted from a tool call.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// Execution id (UUID).
    pub id: String,
    /// Notebook path relative to the root.
    pub notebook: String,
    /// The cell it runs (absent for `execute_code`).
    pub cell_id: Option<String>,
    /// Source sent to the kernel.
    pub code: String,
    /// `run_all_cells` batch.
    pub batch_id: Option<String>,
    /// Cancel the rest of the batch when this one fails.
    pub stop_on_error: bool,
    /// Errors here do not stop the batch (nbclient tag `raises-exception`).
    pub allow_error: bool,
    /// Who asked (MCP session and client name), for the web view's timeline.
    pub requested_by: Option<String>,
    /// Accepted directly as `running` on a live kernel (the notebook's queue was idle): one
    /// commit records both the acceptance and the start (issue 8 item 12).
    pub started: Option<StartedOn>,
}

/// Where and as what an execution accepted as `running` will be sent.
#[derive(Debug, Clone)]
pub struct StartedOn {
    /// `kernel_sessions` row id of the kernel.
    pub kernel_session: String,
    /// `msg_id` of its execute_request.
    pub msg_id: String,
}

/// A stored execution.
#[derive(Debug, Clone)]
pub struct ExecutionRecord {
    /// Insertion order (global).
    pub seq: i64,
    /// Execution id.
    pub id: String,
    /// Notebook path relative to the root.
    pub notebook: String,
    /// Cell id, if a cell.
    pub cell_id: Option<String>,
    /// Code sent.
    pub code: String,
    /// Batch id of `run_all_cells`.
    pub batch_id: Option<String>,
    /// See [`NewExecution::stop_on_error`].
    pub stop_on_error: bool,
    /// See [`NewExecution::allow_error`].
    pub allow_error: bool,
    /// Current state.
    pub status: Status,
    /// Kernel session that ran it.
    pub kernel_session: Option<String>,
    /// `msg_id` of the execute_request.
    pub msg_id: Option<String>,
    /// `execution_count` given by the kernel.
    pub execution_count: Option<i64>,
    /// nbformat outputs.
    pub outputs: Vec<Value>,
    /// `{ename, evalue, traceback}` when failed.
    pub error: Option<Value>,
    /// Human-readable remark (e.g. a fresh kernel was started).
    pub note: Option<String>,
    /// RFC 3339 times.
    pub created_at: String,
    /// When it was sent to the kernel.
    pub started_at: Option<String>,
    /// When it reached a terminal state.
    pub finished_at: Option<String>,
    /// Who asked (see [`NewExecution::requested_by`]).
    pub requested_by: Option<String>,
}

const COLUMNS: &str = "seq, id, notebook, cell_id, code, batch_id, stop_on_error, allow_error,
    status, kernel_session, msg_id, execution_count, outputs, error, note, created_at,
    started_at, finished_at, requested_by";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(ExecutionRecord, String, Option<String>)> {
    let status: String = r.get(8)?;
    // A status this version does not know (written by a newer one) is an error, never
    // silently `failed`: that would let it be settled or shown wrongly.
    let status = Status::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            8,
            rusqlite::types::Type::Text,
            format!("unknown execution status '{status}' (written by a newer jupyter-mcp?)").into(),
        )
    })?;
    Ok((
        ExecutionRecord {
            seq: r.get(0)?,
            id: r.get(1)?,
            notebook: r.get(2)?,
            cell_id: r.get(3)?,
            code: r.get(4)?,
            batch_id: r.get(5)?,
            stop_on_error: r.get(6)?,
            allow_error: r.get(7)?,
            status,
            kernel_session: r.get(9)?,
            msg_id: r.get(10)?,
            execution_count: r.get(11)?,
            outputs: Vec::new(),
            error: None,
            note: r.get(14)?,
            created_at: r.get(15)?,
            started_at: r.get(16)?,
            finished_at: r.get(17)?,
            requested_by: r.get(18)?,
        },
        r.get(12)?,
        r.get(13)?,
    ))
}

fn decode(
    (mut rec, outputs, error): (ExecutionRecord, String, Option<String>),
) -> Result<ExecutionRecord, StoreError> {
    rec.outputs = serde_json::from_str(&outputs)?;
    rec.error = error.map(|e| serde_json::from_str(&e)).transpose()?;
    Ok(rec)
}

/// Inserts executions as `pending` in one transaction (one fsync for the batch).
pub fn insert_pending(conn: &mut Connection, items: &[NewExecution]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    insert_rows(&tx, items)?;
    tx.commit()?;
    Ok(())
}

/// Inserts rows inside the caller's transaction: `pending`, or `running` (with kernel
/// session, msg_id and `started_at`) for those with [`NewExecution::started`].
pub fn insert_rows(conn: &Connection, items: &[NewExecution]) -> Result<(), StoreError> {
    {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO executions (id, notebook, cell_id, code, batch_id, stop_on_error,
                allow_error, status, created_at, requested_by, kernel_session, msg_id, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let now = super::now();
        for e in items {
            let started = e.started.as_ref();
            stmt.execute(params![
                e.id,
                e.notebook,
                e.cell_id,
                e.code,
                e.batch_id,
                e.stop_on_error,
                e.allow_error,
                if started.is_some() {
                    "running"
                } else {
                    "pending"
                },
                now,
                e.requested_by,
                started.map(|s| &s.kernel_session),
                started.map(|s| &s.msg_id),
                started.map(|_| &now),
            ])?;
        }
    }
    Ok(())
}

/// An execution accepted as `running` goes back to `pending` before anything was sent (the
/// server is shutting down and holds its queue): the next start runs it. Returns false if
/// it is no longer `running`.
pub fn unstart(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE executions SET status = 'pending', kernel_session = NULL, msg_id = NULL,
            started_at = NULL WHERE id = ?1 AND status = 'running'",
        params![id],
    )?;
    Ok(n == 1)
}

/// An execution accepted as `running` on one kernel is sent to another (the first died or
/// was replaced before it was sent). Returns the record, or `None` if it is no longer
/// `running`.
pub fn move_started(
    conn: &Connection,
    id: &str,
    kernel_session: &str,
) -> Result<Option<ExecutionRecord>, StoreError> {
    let sql = format!(
        "UPDATE executions SET kernel_session = ?2 WHERE id = ?1 AND status = 'running'
         RETURNING {COLUMNS}"
    );
    conn.query_row(&sql, params![id, kernel_session], from_row)
        .optional()?
        .map(decode)
        .transpose()
}

/// Reads one execution.
pub fn get(conn: &Connection, id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM executions WHERE id = ?1");
    conn.query_row(&sql, params![id], from_row)
        .optional()?
        .map(decode)
        .transpose()
}

/// Lists executions, newest first, optionally by notebook and status.
pub fn list(
    conn: &Connection,
    notebook: Option<&str>,
    status: Option<Status>,
    limit: usize,
) -> Result<Vec<ExecutionRecord>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM executions
         WHERE (?1 IS NULL OR notebook = ?1) AND (?2 IS NULL OR status = ?2)
         ORDER BY seq DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![notebook, status.map(Status::as_str), limit as i64],
        from_row,
    )?;
    rows.map(|r| decode(r?)).collect()
}

/// `pending -> running`, returning the updated row; `None` if it was no longer pending
/// (cancelled meanwhile). Committed with the connection's `synchronous=FULL`: the `msg_id`
/// is durable before the request is sent, so recovery can always recognise it.
pub fn mark_running(
    conn: &Connection,
    id: &str,
    kernel_session: &str,
    msg_id: &str,
) -> Result<Option<ExecutionRecord>, StoreError> {
    let sql = format!(
        "UPDATE executions SET status = 'running', kernel_session = ?2, msg_id = ?3,
            started_at = ?4 WHERE id = ?1 AND status = 'pending' RETURNING {COLUMNS}"
    );
    conn.query_row(
        &sql,
        params![id, kernel_session, msg_id, super::now()],
        from_row,
    )
    .optional()?
    .map(decode)
    .transpose()
}

/// Records the outputs received so far of a running execution.
pub fn record_progress(
    conn: &Connection,
    id: &str,
    outputs: &[Value],
    execution_count: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE executions SET outputs = ?2, execution_count = ?3 WHERE id = ?1",
        params![id, serde_json::to_string(outputs)?, execution_count],
    )?;
    Ok(())
}

/// [`record_progress`] with the outputs already encoded as a JSON array.
pub fn record_progress_json(
    conn: &Connection,
    id: &str,
    outputs_json: &str,
    execution_count: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE executions SET outputs = ?2, execution_count = ?3 WHERE id = ?1",
        params![id, outputs_json, execution_count],
    )?;
    Ok(())
}

/// Terminal update, committed without waiting for fsync (`synchronous=NORMAL` for this one
/// statement): it is durable against a crash of the server (WAL), and the next fsync'd commit
/// (any accept or start) makes it durable against power loss too. Losing it to power loss
/// leaves the row `running`, which recovery reports as `interrupted` -- the kernel died with
/// the machine -- and never runs again. Returns false if the row was already terminal.
pub fn finish(conn: &Connection, rec: &ExecutionRecord) -> Result<bool, StoreError> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = finish_row(conn, rec);
    conn.pragma_update(None, "synchronous", "FULL")?;
    result
}

fn finish_row(conn: &Connection, rec: &ExecutionRecord) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE executions SET status = ?2, outputs = ?3, execution_count = ?4, error = ?5,
            note = ?6, finished_at = ?7, started_at = COALESCE(started_at, ?8)
         WHERE id = ?1 AND status IN ('pending', 'running')",
        params![
            rec.id,
            rec.status.as_str(),
            serde_json::to_string(&rec.outputs)?,
            rec.execution_count,
            rec.error.as_ref().map(Value::to_string),
            rec.note,
            rec.finished_at,
            rec.started_at,
        ],
    )?;
    Ok(n == 1)
}

/// Cancels a pending execution; false if it was not pending.
pub fn cancel_pending(conn: &Connection, id: &str, note: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE executions SET status = 'cancelled', note = ?2, finished_at = ?3
         WHERE id = ?1 AND status = 'pending'",
        params![id, note, super::now()],
    )?;
    Ok(n == 1)
}

/// Withdraws an execution its caller was told was not accepted (the accept commit landed
/// after the caller gave up): `pending`, or `running` as accepted on an idle queue and never
/// sent (the worker never got it), becomes `cancelled`. Returns false if it was neither.
pub fn withdraw(conn: &Connection, id: &str, note: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE executions SET status = 'cancelled', note = ?2, finished_at = ?3
         WHERE id = ?1 AND status IN ('pending', 'running')",
        params![id, note, super::now()],
    )?;
    Ok(n == 1)
}

/// Cancels every pending execution of a batch; returns their ids. An IMMEDIATE transaction:
/// it takes the write lock before reading, so a writer on another connection makes it wait
/// (busy timeout) instead of failing at once with `SQLITE_BUSY` between the read and the write.
pub fn cancel_batch(
    conn: &mut Connection,
    batch: &str,
    note: &str,
) -> Result<Vec<String>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids: Vec<String> = {
        let mut stmt =
            tx.prepare("SELECT id FROM executions WHERE batch_id = ?1 AND status = 'pending'")?;
        let rows = stmt.query_map(params![batch], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    tx.execute(
        "UPDATE executions SET status = 'cancelled', note = ?2, finished_at = ?3
         WHERE batch_id = ?1 AND status = 'pending'",
        params![batch, note, super::now()],
    )?;
    tx.commit()?;
    Ok(ids)
}

/// All executions with `status`, in submission order (oldest first).
pub fn in_order(conn: &Connection, status: Status) -> Result<Vec<ExecutionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM executions WHERE status = ?1 ORDER BY seq");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![status.as_str()], from_row)?;
    rows.map(|r| decode(r?)).collect()
}

/// The executions of a `run_all_cells` batch, in order.
pub fn by_batch(conn: &Connection, batch: &str) -> Result<Vec<ExecutionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM executions WHERE batch_id = ?1 ORDER BY seq");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![batch], from_row)?;
    rows.map(|r| decode(r?)).collect()
}

/// `running -> pending` (for `--recover retry`): it will be sent again.
pub fn requeue(conn: &Connection, id: &str, note: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE executions SET status = 'pending', msg_id = NULL, started_at = NULL, note = ?2
         WHERE id = ?1 AND status = 'running'",
        params![id, note],
    )?;
    Ok(n == 1)
}

/// Number of pending executions per notebook.
pub fn pending_count(conn: &Connection, notebook: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM executions WHERE notebook = ?1 AND status = 'pending'",
        params![notebook],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("s.db")).unwrap();
        super::super::schema::prepare(&conn).unwrap();
        (dir, conn)
    }

    fn new(id: &str, batch: Option<&str>) -> NewExecution {
        NewExecution {
            started: None,
            id: id.into(),
            notebook: "a.ipynb".into(),
            cell_id: Some("c1".into()),
            code: "1+1".into(),
            batch_id: batch.map(str::to_string),
            stop_on_error: true,
            allow_error: false,
            requested_by: None,
        }
    }

    #[test]
    fn lifecycle_is_recorded_and_terminal_states_stick() {
        let (_d, mut c) = db();
        insert_pending(&mut c, &[new("e1", None)]).unwrap();
        assert_eq!(get(&c, "e1").unwrap().unwrap().status, Status::Pending);
        let running = mark_running(&c, "e1", "k1", "m1")
            .unwrap()
            .expect("was pending");
        assert_eq!(running.status, Status::Running);
        assert_eq!(running.msg_id.as_deref(), Some("m1"));
        assert!(
            mark_running(&c, "e1", "k1", "m1").unwrap().is_none(),
            "only from pending"
        );
        record_progress(
            &c,
            "e1",
            &[serde_json::json!({"output_type":"stream"})],
            Some(3),
        )
        .unwrap();
        let mut rec = get(&c, "e1").unwrap().unwrap();
        assert_eq!(rec.outputs.len(), 1);
        assert_eq!(rec.execution_count, Some(3));
        rec.status = Status::Completed;
        rec.finished_at = Some(super::super::now());
        assert!(finish(&c, &rec).unwrap());
        rec.status = Status::Failed;
        assert!(!finish(&c, &rec).unwrap(), "first terminal state wins");
        assert_eq!(get(&c, "e1").unwrap().unwrap().status, Status::Completed);
    }

    #[test]
    fn accepted_as_started_is_running_on_its_kernel_and_can_go_back_or_move() {
        let (_d, mut c) = db();
        let mut row = new("e1", None);
        row.started = Some(StartedOn {
            kernel_session: "k1".into(),
            msg_id: "m1".into(),
        });
        insert_pending(&mut c, &[row, new("e2", None)]).unwrap();
        let rec = get(&c, "e1").unwrap().unwrap();
        assert_eq!(rec.status, Status::Running);
        assert_eq!(rec.kernel_session.as_deref(), Some("k1"));
        assert_eq!(rec.msg_id.as_deref(), Some("m1"));
        assert_eq!(rec.started_at.as_deref(), Some(rec.created_at.as_str()));
        assert_eq!(get(&c, "e2").unwrap().unwrap().status, Status::Pending);
        let moved = move_started(&c, "e1", "k2")
            .unwrap()
            .expect("still running");
        assert_eq!(moved.kernel_session.as_deref(), Some("k2"));
        assert_eq!(moved.msg_id.as_deref(), Some("m1"));
        assert!(
            move_started(&c, "e2", "k2").unwrap().is_none(),
            "only running rows"
        );
        assert!(unstart(&c, "e1").unwrap());
        let back = get(&c, "e1").unwrap().unwrap();
        assert_eq!(back.status, Status::Pending);
        assert!(back.kernel_session.is_none() && back.msg_id.is_none());
        assert!(back.started_at.is_none());
        assert!(!unstart(&c, "e2").unwrap(), "only running rows");
    }

    #[test]
    fn batch_cancel_touches_only_pending_rows_of_that_batch() {
        let (_d, mut c) = db();
        insert_pending(
            &mut c,
            &[new("a", Some("b")), new("b", Some("b")), new("c", None)],
        )
        .unwrap();
        mark_running(&c, "a", "k", "m").unwrap().unwrap();
        let ids = cancel_batch(&mut c, "b", "stopped").unwrap();
        assert_eq!(ids, vec!["b".to_string()]);
        assert_eq!(get(&c, "a").unwrap().unwrap().status, Status::Running);
        assert_eq!(get(&c, "c").unwrap().unwrap().status, Status::Pending);
        assert_eq!(pending_count(&c, "a.ipynb").unwrap(), 1);
        assert!(!cancel_pending(&c, "a", "x").unwrap());
        assert_eq!(list(&c, Some("a.ipynb"), None, 10).unwrap().len(), 3);
    }

    #[test]
    fn an_unknown_status_is_an_error_not_failed() {
        let (_d, mut c) = db();
        insert_pending(&mut c, &[new("e1", None)]).unwrap();
        c.execute(
            "UPDATE executions SET status = 'paused' WHERE id = 'e1'",
            [],
        )
        .unwrap();
        let err = get(&c, "e1").unwrap_err();
        assert_eq!(
            err.kind(),
            super::super::StoreErrorKind::Incompatible,
            "{err}"
        );
        assert!(err.to_string().contains("paused"), "{err}");
    }

    static BLOCKED: std::sync::Mutex<Option<std::sync::mpsc::Sender<&'static str>>> =
        std::sync::Mutex::new(None);

    /// Busy handler of the cancelling connection: reports that it waits, then retries.
    fn report_busy(_attempt: i32) -> bool {
        if let Some(tx) = BLOCKED.lock().unwrap().as_ref() {
            let _ = tx.send("waiting for the lock");
        }
        std::thread::yield_now();
        true
    }

    /// Another connection holds a write transaction while the batch is cancelled: the cancel
    /// waits for the lock (the busy handler runs) and then cancels the batch, instead of
    /// failing with SQLITE_BUSY between its read and its write.
    #[test]
    fn cancel_batch_waits_for_another_writer_instead_of_failing() {
        let (dir, mut c) = db();
        insert_pending(&mut c, &[new("a", Some("b")), new("b", Some("b"))]).unwrap();
        let path = dir.path().join("s.db");
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
            .execute("UPDATE executions SET note = 'x' WHERE id = 'a'", [])
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        *BLOCKED.lock().unwrap() = Some(tx.clone());
        let canceller = std::thread::spawn(move || {
            c.busy_handler(Some(report_busy)).unwrap();
            let r = cancel_batch(&mut c, "b", "stopped").map_err(|e| e.to_string());
            let _ = tx.send("finished");
            r
        });
        // Either the canceller waits on the lock (fixed), or it already gave up (the bug).
        let first = rx.recv().unwrap();
        other.execute_batch("COMMIT").unwrap();
        let result = canceller.join().unwrap();
        *BLOCKED.lock().unwrap() = None;
        assert_eq!(
            first, "waiting for the lock",
            "cancel_batch did not wait: {result:?}"
        );
        let mut ids = result.expect("the batch is cancelled once the other writer commits");
        ids.sort();
        assert_eq!(ids, vec!["a".to_string(), "b".to_string()]);
        let c = Connection::open(&path).unwrap();
        assert_eq!(get(&c, "a").unwrap().unwrap().status, Status::Cancelled);
    }
}
