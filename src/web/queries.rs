//! Read-only SQL for the web view: the timeline of executions without their outputs, and
//! per-notebook activity (queue depth, the running execution, last finish). Kept apart from
//! `store::executions` because the view needs narrow rows (no outputs, a code preview).

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::store::StoreError;

/// One execution in the timeline (no outputs).
#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    /// Execution id.
    pub execution_id: String,
    /// Root-relative notebook path.
    pub notebook: String,
    /// Cell id, absent for `execute_code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell_id: Option<String>,
    /// `pending` … `interrupted` (SPEC §3).
    pub status: String,
    /// Who asked: MCP session and client name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// RFC 3339 times.
    pub created_at: String,
    /// When it was sent to the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Prompt number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<i64>,
    /// The note (e.g. who cancelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `ename` of an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ename: Option<String>,
    /// The first 120 characters of the code.
    pub code: String,
}

/// The newest `limit` executions (of one notebook, or all), newest first.
pub fn timeline(
    conn: &Connection,
    notebook: Option<&str>,
    limit: usize,
) -> Result<Vec<TimelineRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, notebook, cell_id, status, requested_by, created_at, started_at,
                finished_at, execution_count, note,
                CASE WHEN error IS NULL THEN NULL ELSE json_extract(error, '$.ename') END,
                substr(code, 1, 120)
         FROM executions WHERE (?1 IS NULL OR notebook = ?1) ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![notebook, limit as i64], |r| {
        Ok(TimelineRow {
            execution_id: r.get(0)?,
            notebook: r.get(1)?,
            cell_id: r.get(2)?,
            status: r.get(3)?,
            requested_by: r.get(4)?,
            created_at: r.get(5)?,
            started_at: r.get(6)?,
            finished_at: r.get(7)?,
            execution_count: r.get(8)?,
            note: r.get(9)?,
            ename: r.get::<_, Option<String>>(10).unwrap_or(None),
            code: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What is going on in one notebook.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Activity {
    /// Executions waiting.
    pub queue_depth: i64,
    /// The running execution's id and cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<(String, Option<String>)>,
    /// Pending executions (id, cell) in queue order.
    pub pending: Vec<(String, Option<String>)>,
    /// When its last execution ended (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_finished_at: Option<String>,
}

/// Activity of every notebook with unfinished executions, plus the last finish of each
/// notebook in `with_last` (notebook -> activity).
pub fn activity(
    conn: &Connection,
) -> Result<std::collections::BTreeMap<String, Activity>, StoreError> {
    let mut out: std::collections::BTreeMap<String, Activity> = Default::default();
    let mut stmt = conn.prepare_cached(
        "SELECT notebook, id, cell_id, status FROM executions
         WHERE status IN ('pending', 'running') ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (nb, id, cell, status) = row?;
        let a = out.entry(nb).or_default();
        if status == "running" {
            a.running = Some((id, cell));
        } else {
            a.queue_depth += 1;
            a.pending.push((id, cell));
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT notebook, MAX(finished_at) FROM executions
         WHERE finished_at IS NOT NULL GROUP BY notebook",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    for row in rows {
        let (nb, last) = row?;
        out.entry(nb).or_default().last_finished_at = last;
    }
    Ok(out)
}
