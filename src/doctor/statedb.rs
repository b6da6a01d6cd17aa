//! Pre-flight checks of `DATA_DIR/state.db`: integrity (`PRAGMA quick_check`, read-only, so a
//! damaged file is never changed or replaced) and the kernels a previous run left running.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// What `PRAGMA quick_check` found.
#[derive(Debug)]
pub enum Integrity {
    /// No `state.db` yet (the first start creates it).
    Absent,
    /// `quick_check` said `ok`.
    Ok,
    /// Damaged or not a database: the problems SQLite reported (first few lines).
    Corrupt(String),
    /// Could not be opened or read for another reason.
    Unreadable(String),
}

/// A kernel a previous run recorded as running (`kernel_sessions` without `ended_at`).
#[derive(Debug, Clone)]
pub struct Leftover {
    /// Root-relative notebook path (`""` for a warm-pool kernel).
    pub notebook: String,
    /// Kernelspec name.
    pub kernel_name: String,
    /// Process id, if recorded.
    pub pid: Option<u32>,
    /// Whether that process still runs (PID and start time match).
    pub alive: bool,
}

/// Opens `db` read-only (never creates it) and runs `PRAGMA quick_check`.
pub fn integrity(db: &Path) -> Integrity {
    if !db.exists() {
        return Integrity::Absent;
    }
    let conn = match open_read_only(db) {
        Ok(c) => c,
        Err(e) => return classify(e),
    };
    let rows = conn.prepare("PRAGMA quick_check(20)").and_then(|mut st| {
        let mut rows = Vec::new();
        for row in st.query_map([], |r| r.get::<_, String>(0))? {
            rows.push(row?);
        }
        Ok(rows)
    });
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Integrity::Ok,
        Ok(rows) => Integrity::Corrupt(rows.join("; ")),
        Err(e) => classify(e),
    }
}

fn classify(e: rusqlite::Error) -> Integrity {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match e.sqlite_error_code() {
        Some(DatabaseCorrupt) | Some(NotADatabase) => Integrity::Corrupt(e.to_string()),
        _ => Integrity::Unreadable(e.to_string()),
    }
}

fn open_read_only(db: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    Ok(conn)
}

/// What to do about a damaged `state.db` (nothing is changed by us).
pub fn recovery_advice(db: &Path) -> String {
    let d = db.display();
    format!(
        "nothing was changed. Stop every jupyter-mcp using this data dir, keep a copy \
         (cp {d} {d}.bak), then salvage what SQLite can read: `sqlite3 {d} .recover | sqlite3 \
         {d}.recovered && mv {d}.recovered {d}` (Debian: apt-get install sqlite3); or move it \
         aside (mv {d} {d}.corrupt; the -wal and -shm files too) to start with an empty queue: \
         notebooks, checkpoints and assets are not in it"
    )
}

/// Kernels recorded as running by earlier runs, with whether each is still alive.
pub fn leftovers(db: &Path) -> rusqlite::Result<Vec<Leftover>> {
    if !db.exists() {
        return Ok(Vec::new());
    }
    let conn = open_read_only(db)?;
    let mut st = conn.prepare(
        "SELECT notebook, kernel_name, pid, pid_start_time FROM kernel_sessions \
         WHERE ended_at IS NULL ORDER BY started_at, rowid",
    )?;
    let rows = st.query_map([], |r| {
        let pid: Option<i64> = r.get(2)?;
        let start: Option<i64> = r.get(3)?;
        let pid = pid.and_then(|p| u32::try_from(p).ok());
        Ok(Leftover {
            notebook: r.get(0)?,
            kernel_name: r.get(1)?,
            pid,
            alive: pid.is_some_and(|p| {
                jmcp_kernel::process::is_alive(p, start.and_then(|s| u64::try_from(s).ok()))
            }),
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbage_file_is_corrupt_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let junk = vec![0x5au8; 8192];
        std::fs::write(&db, &junk).unwrap();
        assert!(matches!(integrity(&db), Integrity::Corrupt(_)));
        assert_eq!(std::fs::read(&db).unwrap(), junk);
        assert!(recovery_advice(&db).contains(".recover"));
    }

    #[test]
    fn an_absent_file_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        assert!(matches!(integrity(&db), Integrity::Absent));
        assert!(!db.exists());
        assert!(leftovers(&db).unwrap().is_empty());
    }

    #[test]
    fn a_store_database_passes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        drop(crate::store::Store::open(&db).unwrap());
        assert!(matches!(integrity(&db), Integrity::Ok));
        assert!(leftovers(&db).unwrap().is_empty());
    }
}
