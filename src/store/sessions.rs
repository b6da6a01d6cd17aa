//! Kernel sessions: one row per kernel process we started for a notebook, with what is needed
//! to find it again after a server restart (PID plus its start time, connection file).

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

/// One kernel process.
#[derive(Debug, Clone)]
pub struct KernelSessionRecord {
    /// Our id for the session.
    pub id: String,
    /// Notebook path relative to the root.
    pub notebook: String,
    /// Kernelspec name.
    pub kernel_name: String,
    /// OS process id.
    pub pid: Option<u32>,
    /// Clock ticks since boot when the PID started (PID-reuse guard).
    pub pid_start_time: Option<u64>,
    /// Connection file path.
    pub connection_file: Option<String>,
    /// Kernel log path.
    pub log_file: Option<String>,
    /// `starting`, `idle`, `busy`, `dead`, `shutdown`.
    pub state: String,
    /// RFC 3339.
    pub started_at: String,
    /// Remote kernels (SPEC §10): the gateway's base URL (never its token), the server's
    /// kernel id and our WebSocket session id, to reconnect after a restart.
    pub remote: Option<RemoteIds>,
}

/// What identifies a remote kernel across server restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIds {
    /// Base URL of the Jupyter Server / Kernel Gateway.
    pub gateway_url: String,
    /// The server's kernel id.
    pub kernel_id: String,
    /// The kernel WebSocket's `session_id`.
    pub ws_session: String,
}

impl KernelSessionRecord {
    /// Inserts the session.
    pub fn insert(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO kernel_sessions (id, notebook, kernel_name, pid, pid_start_time,
                connection_file, log_file, state, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                self.id,
                self.notebook,
                self.kernel_name,
                self.pid,
                self.pid_start_time.map(|t| t as i64),
                self.connection_file,
                self.log_file,
                self.state,
                self.started_at
            ],
        )?;
        if let Some(r) = &self.remote {
            conn.execute(
                "UPDATE kernel_sessions SET gateway_url = ?2, remote_kernel_id = ?3, ws_session = ?4
                 WHERE id = ?1",
                params![self.id, r.gateway_url, r.kernel_id, r.ws_session],
            )?;
        }
        Ok(())
    }
}

/// Records the end of a session (`dead` or `shutdown`) with a reason.
pub fn end_session(
    conn: &Connection,
    id: &str,
    state: &str,
    reason: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE kernel_sessions SET state = ?2, end_reason = ?3, ended_at = ?4
         WHERE id = ?1 AND ended_at IS NULL",
        params![id, state, reason, super::now()],
    )?;
    Ok(())
}

/// The most recent session of a notebook, if any.
pub fn latest_for_notebook(
    conn: &Connection,
    notebook: &str,
) -> Result<Option<(String, String, Option<String>)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, state, end_reason FROM kernel_sessions WHERE notebook = ?1
             ORDER BY started_at DESC LIMIT 1",
            params![notebook],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// Sessions not ended yet, oldest first (candidates for reattaching after a restart).
pub fn open_sessions(conn: &Connection) -> Result<Vec<KernelSessionRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, notebook, kernel_name, pid, pid_start_time, connection_file, log_file,
                state, started_at, gateway_url, remote_kernel_id, ws_session
         FROM kernel_sessions WHERE ended_at IS NULL ORDER BY started_at, rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(KernelSessionRecord {
            id: r.get(0)?,
            notebook: r.get(1)?,
            kernel_name: r.get(2)?,
            pid: r.get(3)?,
            pid_start_time: r.get::<_, Option<i64>>(4)?.map(|t| t as u64),
            connection_file: r.get(5)?,
            log_file: r.get(6)?,
            state: r.get(7)?,
            started_at: r.get(8)?,
            remote: match (r.get(9)?, r.get(10)?, r.get(11)?) {
                (Some(gateway_url), Some(kernel_id), Some(ws_session)) => Some(RemoteIds {
                    gateway_url,
                    kernel_id,
                    ws_session,
                }),
                _ => None,
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
