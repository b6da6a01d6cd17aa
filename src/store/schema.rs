//! Schema and connection settings. `user_version` tracks the schema version; migrations are
//! applied in order inside one transaction.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: executions and kernel sessions.
    "CREATE TABLE executions (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        notebook        TEXT NOT NULL,
        cell_id         TEXT,
        code            TEXT NOT NULL,
        batch_id        TEXT,
        stop_on_error   INTEGER NOT NULL DEFAULT 1,
        allow_error     INTEGER NOT NULL DEFAULT 0,
        status          TEXT NOT NULL,
        kernel_session  TEXT,
        msg_id          TEXT,
        execution_count INTEGER,
        outputs         TEXT NOT NULL DEFAULT '[]',
        error           TEXT,
        note            TEXT,
        created_at      TEXT NOT NULL,
        started_at      TEXT,
        finished_at     TEXT
    );
    CREATE INDEX executions_by_notebook ON executions(notebook, status, seq);
    CREATE INDEX executions_by_status ON executions(status, seq);
    CREATE INDEX executions_by_msg ON executions(msg_id);
    CREATE TABLE kernel_sessions (
        id              TEXT PRIMARY KEY,
        notebook        TEXT NOT NULL,
        kernel_name     TEXT NOT NULL,
        pid             INTEGER,
        pid_start_time  INTEGER,
        connection_file TEXT,
        log_file        TEXT,
        state           TEXT NOT NULL,
        started_at      TEXT NOT NULL,
        ended_at        TEXT,
        end_reason      TEXT
    );
    CREATE INDEX kernel_sessions_by_notebook ON kernel_sessions(notebook, started_at);",
    // 2: asset leases (owned by the assets module; SPEC §4).
    "CREATE TABLE assets (
        uri         TEXT PRIMARY KEY,
        notebook    TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        ext         TEXT NOT NULL,
        mime_type   TEXT NOT NULL,
        bytes       INTEGER NOT NULL,
        created_at  TEXT NOT NULL,
        lease_until TEXT NOT NULL
    );
    CREATE INDEX assets_by_notebook ON assets(notebook);
    CREATE TABLE asset_refs (
        asset_uri    TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        PRIMARY KEY (asset_uri, execution_id)
    );",
    // 3: checkpoint index (owned by the checkpoint module; SPEC §6).
    "CREATE TABLE checkpoints (
        notebook   TEXT NOT NULL,
        name       TEXT NOT NULL,
        dir        TEXT NOT NULL,
        created_at TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        PRIMARY KEY (notebook, name)
    );",
    // 4: remote kernels (SPEC §10): where a kernel session's kernel runs, to reconnect to it.
    "ALTER TABLE kernel_sessions ADD COLUMN gateway_url TEXT;
    ALTER TABLE kernel_sessions ADD COLUMN remote_kernel_id TEXT;
    ALTER TABLE kernel_sessions ADD COLUMN ws_session TEXT;",
    // 5 (web view, issue 13): who asked for an execution (MCP session / clientInfo name, or
    // "web view"), shown in the timeline.
    "ALTER TABLE executions ADD COLUMN requested_by TEXT;",
];

/// WAL + FULL sync, foreign keys, busy timeout; then migrations up to the current version.
pub fn prepare(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let supported = MIGRATIONS.len() as i64;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        // IMMEDIATE: the version is read again under the write lock, so two processes opening
        // the same new file cannot both apply a migration.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let applied = (|| -> Result<bool, StoreError> {
            let now: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if now > i as i64 {
                return Ok(false);
            }
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", (i + 1) as i64)?;
            Ok(true)
        })();
        match applied {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_an_error_not_a_silent_downgrade() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("s.db")).unwrap();
        prepare(&conn).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let err = prepare(&conn).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
