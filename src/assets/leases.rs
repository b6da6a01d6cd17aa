//! The asset index in `state.db` (schema migration 2): one `assets` row per stored file with
//! its lease, and `asset_refs` linking assets to the executions that produced them.
//!
//! Times are RFC 3339 UTC with milliseconds (`2026-11-21T00:31:30.123Z`), which sort as text.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::store::StoreError;

/// One indexed asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    /// `jupyter-mcp://assets/...`.
    pub uri: String,
    /// Root-relative path of the notebook it came from.
    pub notebook: String,
    /// Content hash.
    pub sha256: String,
    /// File extension.
    pub ext: String,
    /// Mime type of the content.
    pub mime_type: String,
    /// Size in bytes.
    pub bytes: i64,
    /// RFC 3339.
    pub created_at: String,
    /// The asset may not be collected before this time (RFC 3339).
    pub lease_until: String,
}

/// RFC 3339 with milliseconds, UTC.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a stored stamp.
pub fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn row(r: &Row<'_>) -> rusqlite::Result<AssetRow> {
    Ok(AssetRow {
        uri: r.get(0)?,
        notebook: r.get(1)?,
        sha256: r.get(2)?,
        ext: r.get(3)?,
        mime_type: r.get(4)?,
        bytes: r.get(5)?,
        created_at: r.get(6)?,
        lease_until: r.get(7)?,
    })
}

const COLUMNS: &str = "uri, notebook, sha256, ext, mime_type, bytes, created_at, lease_until";

/// Records the asset (or renews it: the lease only ever moves later) and, when given, the
/// execution that produced it. One transaction.
pub fn upsert(
    conn: &mut Connection,
    asset: &AssetRow,
    execution_id: Option<&str>,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO assets (uri, notebook, sha256, ext, mime_type, bytes, created_at, lease_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(uri) DO UPDATE SET lease_until = max(lease_until, excluded.lease_until)",
        params![
            asset.uri,
            asset.notebook,
            asset.sha256,
            asset.ext,
            asset.mime_type,
            asset.bytes,
            asset.created_at,
            asset.lease_until
        ],
    )?;
    if let Some(id) = execution_id {
        tx.execute(
            "INSERT OR IGNORE INTO asset_refs (asset_uri, execution_id) VALUES (?1, ?2)",
            params![asset.uri, id],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Moves the lease of `uri` to at least `until`. Returns false when the asset is unknown.
pub fn renew(conn: &Connection, uri: &str, until: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE assets SET lease_until = max(lease_until, ?2) WHERE uri = ?1",
        params![uri, until],
    )?;
    Ok(n > 0)
}

/// The row of `uri`.
pub fn get(conn: &Connection, uri: &str) -> Result<Option<AssetRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM assets WHERE uri = ?1"),
            params![uri],
            row,
        )
        .optional()?)
}

/// Assets of one notebook (or all), oldest first, `limit` from `offset`.
pub fn list(
    conn: &Connection,
    notebook: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<Vec<AssetRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM assets WHERE (?1 IS NULL OR notebook = ?1)
         ORDER BY created_at, uri LIMIT ?2 OFFSET ?3"
    ))?;
    let rows = stmt
        .query_map(params![notebook, limit as i64, offset as i64], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Number of assets of one notebook (or all).
pub fn count(conn: &Connection, notebook: Option<&str>) -> Result<usize, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM assets WHERE (?1 IS NULL OR notebook = ?1)",
        params![notebook],
        |r| r.get(0),
    )?;
    Ok(n as usize)
}

/// Executions recorded as having produced `uri`.
pub fn refs(conn: &Connection, uri: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT execution_id FROM asset_refs WHERE asset_uri = ?1 ORDER BY execution_id",
    )?;
    let ids = stmt
        .query_map(params![uri], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Removes the row of `uri` and its refs, but only if its lease is still before `now`
/// (it may have been renewed since it was judged). Returns whether it was removed.
pub fn remove_if_expired(conn: &mut Connection, uri: &str, now: &str) -> Result<bool, StoreError> {
    let tx = conn.transaction()?;
    let n = tx.execute(
        "DELETE FROM assets WHERE uri = ?1 AND lease_until < ?2",
        params![uri, now],
    )?;
    if n > 0 {
        tx.execute("DELETE FROM asset_refs WHERE asset_uri = ?1", params![uri])?;
    }
    tx.commit()?;
    Ok(n > 0)
}

/// Removes the row of an asset whose file is gone.
pub fn forget(conn: &mut Connection, uri: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM assets WHERE uri = ?1", params![uri])?;
    tx.execute("DELETE FROM asset_refs WHERE asset_uri = ?1", params![uri])?;
    tx.commit()?;
    Ok(())
}

/// A stored execution as garbage collection sees it.
#[derive(Debug, Clone)]
pub struct StoredExecution {
    /// Execution id.
    pub id: String,
    /// Stored status.
    pub status: String,
    /// The outputs column (a JSON array).
    pub outputs: String,
}

/// Up to `limit` stored executions after row `after_seq`, in row order, with their row
/// numbers: garbage collection reads the outputs of all executions batch by batch, one short
/// store call each, instead of all at once under the only connection.
pub fn execution_batch(
    conn: &Connection,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<(i64, StoredExecution)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, status, outputs FROM executions WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(rusqlite::params![after_seq, limit as i64], |r| {
        Ok((
            r.get(0)?,
            StoredExecution {
                id: r.get(1)?,
                status: r.get(2)?,
                outputs: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every (asset, execution) link.
pub fn all_refs(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare("SELECT asset_uri, execution_id FROM asset_refs")?;
    let refs = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn asset(uri: &str, lease: &str) -> AssetRow {
        AssetRow {
            uri: uri.into(),
            notebook: "a.ipynb".into(),
            sha256: "s".into(),
            ext: "txt".into(),
            mime_type: "text/plain".into(),
            bytes: 3,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            lease_until: lease.into(),
        }
    }

    #[test]
    fn leases_only_move_later_and_expired_rows_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state.db")).expect("open");
        store
            .call_blocking(|c| {
                upsert(c, &asset("u1", "2026-01-02T00:00:00.000Z"), Some("e1"))?;
                // A renewal to an earlier time does not shorten the lease.
                upsert(c, &asset("u1", "2026-01-01T12:00:00.000Z"), Some("e2"))?;
                assert_eq!(
                    get(c, "u1")?.map(|r| r.lease_until),
                    Some("2026-01-02T00:00:00.000Z".to_string())
                );
                assert_eq!(refs(c, "u1")?, vec!["e1".to_string(), "e2".to_string()]);
                assert!(renew(c, "u1", "2026-01-03T00:00:00.000Z")?);
                assert!(!renew(c, "nope", "2026-01-03T00:00:00.000Z")?);
                upsert(c, &asset("u2", "2026-01-01T00:00:00.000Z"), None)?;
                assert_eq!(count(c, None)?, 2);
                assert_eq!(count(c, Some("b.ipynb"))?, 0);
                assert_eq!(list(c, Some("a.ipynb"), 1, 10)?.len(), 1);
                // Not expired at this time: kept.
                assert!(!remove_if_expired(c, "u1", "2026-01-02T00:00:00.000Z")?);
                assert!(remove_if_expired(c, "u1", "2026-01-04T00:00:00.000Z")?);
                assert_eq!(get(c, "u1")?, None);
                assert!(refs(c, "u1")?.is_empty());
                forget(c, "u2")?;
                assert_eq!(count(c, None)?, 0);
                Ok(())
            })
            .expect("store ops");
    }

    #[test]
    fn stamps_sort_as_text() {
        let a = parse_stamp("2026-01-01T00:00:00.000Z").expect("a");
        let b = a + chrono::Duration::milliseconds(1500);
        assert!(stamp(a) < stamp(b));
        assert_eq!(stamp(b), "2026-01-01T00:00:01.500Z");
        assert_eq!(parse_stamp(&stamp(b)), Some(b));
    }
}
