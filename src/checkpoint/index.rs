//! The checkpoint index in `state.db` (table `checkpoints`, migration 3): which checkpoints
//! exist per notebook and when they were made, for the restore offer after a kernel death and
//! for picking the rolling automatic slot. The files are the truth; `list_checkpoints`
//! re-synchronises the index from them.

use rusqlite::{params, Connection};

use crate::store::StoreError;

/// One row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub notebook: String,
    pub name: String,
    /// Directory of the checkpoint's files.
    pub dir: String,
    pub created_at: String,
    pub bytes: u64,
}

/// Inserts or replaces a row.
pub fn upsert(conn: &Connection, row: &Row) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO checkpoints (notebook, name, dir, created_at, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(notebook, name) DO UPDATE SET
            dir = excluded.dir, created_at = excluded.created_at, bytes = excluded.bytes",
        params![
            row.notebook,
            row.name,
            row.dir,
            row.created_at,
            row.bytes as i64
        ],
    )?;
    Ok(())
}

/// Removes a row (no error when absent).
pub fn remove(conn: &Connection, notebook: &str, name: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM checkpoints WHERE notebook = ?1 AND name = ?2",
        params![notebook, name],
    )?;
    Ok(())
}

/// Rows of a notebook, newest first.
pub fn of_notebook(conn: &Connection, notebook: &str) -> Result<Vec<Row>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT notebook, name, dir, created_at, bytes FROM checkpoints
         WHERE notebook = ?1 ORDER BY created_at DESC, name",
    )?;
    let rows = stmt.query_map(params![notebook], |r| {
        Ok(Row {
            notebook: r.get(0)?,
            name: r.get(1)?,
            dir: r.get(2)?,
            created_at: r.get(3)?,
            bytes: r.get::<_, i64>(4)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces the rows of `notebook` (or of every notebook) by `found`, in one transaction.
pub fn sync(
    conn: &mut Connection,
    notebook: Option<&str>,
    found: &[Row],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM checkpoints WHERE ?1 IS NULL OR notebook = ?1",
        params![notebook],
    )?;
    for row in found {
        upsert(&tx, row)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_list_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("state.db")).unwrap();
        let row = |nb: &str, name: &str, at: &str| Row {
            notebook: nb.into(),
            name: name.into(),
            dir: "/d".into(),
            created_at: at.into(),
            bytes: 1,
        };
        store
            .call_blocking(|c| {
                upsert(c, &row("a.ipynb", "x", "2026-01-01T00:00:00.000Z"))?;
                upsert(c, &row("a.ipynb", "y", "2026-01-02T00:00:00.000Z"))?;
                upsert(c, &row("a.ipynb", "x", "2026-01-03T00:00:00.000Z"))?;
                upsert(c, &row("b.ipynb", "x", "2026-01-01T00:00:00.000Z"))?;
                let rows = of_notebook(c, "a.ipynb")?;
                assert_eq!(
                    rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                    ["x", "y"]
                );
                remove(c, "a.ipynb", "x")?;
                assert_eq!(of_notebook(c, "a.ipynb")?.len(), 1);
                sync(
                    c,
                    Some("a.ipynb"),
                    &[row("a.ipynb", "z", "2026-01-04T00:00:00.000Z")],
                )?;
                assert_eq!(of_notebook(c, "a.ipynb")?[0].name, "z");
                assert_eq!(of_notebook(c, "b.ipynb")?.len(), 1);
                sync(c, None, &[])?;
                assert!(of_notebook(c, "b.ipynb")?.is_empty());
                Ok(())
            })
            .unwrap();
    }
}
