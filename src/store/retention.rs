//! Retention of execution records (issue 8 item 10): `state.db` stays bounded on a server
//! that runs for months.
//!
//! Rule (settings `--keep-executions-days`, default 30, and `--keep-executions`, default
//! 100,000): a **finished** execution (completed, failed, cancelled, interrupted) is deleted
//! when it finished more than the given days ago, or when more than the given count of
//! finished executions are newer than it. Never deleted: pending and running rows (the queue
//! and recovery need them), and executions linked (`asset_refs`) to an asset whose lease has
//! not expired (someone read or produced that asset recently). Deleting an execution also
//! deletes its `asset_refs` links; its assets then go the usual way (`prune_assets`, after
//! their lease). Deletes run in small batches, each its own short transaction, so the one
//! store connection is never held for long.

use rusqlite::{params, Connection};

use super::StoreError;

/// Rows deleted per transaction.
pub const BATCH: usize = 500;

/// The retention rule; `None` disables that part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// Delete finished executions that finished more than this many days ago.
    pub max_age_days: Option<f64>,
    /// Keep at most this many finished executions (the newest).
    pub max_count: Option<u64>,
}

/// What the condition of a deletable row is, as SQL over `executions` aliased `e`.
/// `?1` = cutoff time (RFC 3339, or NULL), `?2` = seq below which finished rows are over the
/// count (or NULL), `?3` = now (RFC 3339).
const DELETABLE: &str = "e.status IN ('completed', 'failed', 'cancelled', 'interrupted')
    AND ((?1 IS NOT NULL AND COALESCE(e.finished_at, e.created_at) < ?1)
         OR (?2 IS NOT NULL AND e.seq < ?2))
    AND NOT EXISTS (SELECT 1 FROM asset_refs r JOIN assets a ON a.uri = r.asset_uri
                    WHERE r.execution_id = e.id AND a.lease_until > ?3)";

/// Deletes at most [`BATCH`] executions that `rule` says to delete at time `now` (RFC 3339),
/// in one transaction; returns how many. Call until it returns 0 (see [`apply`]).
pub fn delete_batch(conn: &Connection, rule: &Retention, now: &str) -> Result<usize, StoreError> {
    let cutoff = rule.max_age_days.map(|days| {
        let secs = (days * 86_400.0).min(1e11) as i64;
        let at = chrono::DateTime::parse_from_rfc3339(now)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now())
            - chrono::Duration::seconds(secs);
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    });
    let tx = conn.unchecked_transaction()?;
    let below_seq: Option<i64> = match rule.max_count {
        Some(n) => tx
            .query_row(
                "SELECT seq FROM executions
                 WHERE status IN ('completed', 'failed', 'cancelled', 'interrupted')
                 ORDER BY seq DESC LIMIT 1 OFFSET ?1",
                params![n.saturating_sub(1) as i64],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?,
        None => None,
    };
    let ids: Vec<String> = {
        let sql =
            format!("SELECT e.id FROM executions e WHERE {DELETABLE} ORDER BY e.seq LIMIT {BATCH}");
        let mut stmt = tx.prepare(&sql)?;
        let rows = stmt.query_map(params![cutoff, below_seq, now], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for id in &ids {
        tx.execute("DELETE FROM asset_refs WHERE execution_id = ?1", [id])?;
        tx.execute("DELETE FROM executions WHERE id = ?1", [id])?;
    }
    tx.commit()?;
    Ok(ids.len())
}

/// Applies the rule until nothing more is deletable (batch after batch); returns the total.
pub fn apply(conn: &Connection, rule: &Retention, now: &str) -> Result<usize, StoreError> {
    if rule.max_age_days.is_none() && rule.max_count.is_none() {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let n = delete_batch(conn, rule, now)?;
        total += n;
        if n < BATCH {
            return Ok(total);
        }
    }
}

/// How often the rule is applied while the server runs (and once at start).
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Applies `rule` now and then every [`EVERY`] on the blocking pool, logging what it deleted;
/// stops when the returned handle is aborted or dropped with the runtime.
pub fn spawn(store: super::Store, rule: Retention) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            if rule.max_age_days.is_none() && rule.max_count.is_none() {
                return;
            }
            let now = super::now();
            let mut total = 0;
            // One batch per store call: other work gets the connection between batches.
            loop {
                let at = now.clone();
                match store.call(move |c| delete_batch(c, &rule, &at)).await {
                    Ok(n) => {
                        total += n;
                        if n < BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("retention: could not delete old executions: {e}");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(
                    deleted = total,
                    "retention: deleted old finished executions"
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn insert(c: &Connection, id: &str, status: &str, finished: Option<&str>) {
        c.execute(
            "INSERT INTO executions (id, notebook, code, status, outputs, created_at, finished_at)
             VALUES (?1, 'a.ipynb', 'x', ?2, '[]', '2026-01-01T00:00:00.000Z', ?3)",
            params![id, status, finished],
        )
        .unwrap();
    }

    fn ids(c: &Connection) -> Vec<String> {
        let mut s = c.prepare("SELECT id FROM executions ORDER BY seq").unwrap();
        let rows = s.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn old_and_surplus_finished_rows_go_unfinished_and_leased_stay() {
        let dir = tempfile_dir();
        let store = Store::open(&dir.join("state.db")).unwrap();
        store
            .call_blocking(|c| {
                insert(c, "old-done", "completed", Some("2026-01-01T00:00:00.000Z"));
                insert(c, "old-running", "running", None);
                insert(c, "old-pending", "pending", None);
                insert(c, "old-leased", "failed", Some("2026-01-01T00:00:00.000Z"));
                c.execute(
                    "INSERT INTO assets (uri, notebook, sha256, ext, mime_type, bytes, created_at, lease_until)
                     VALUES ('u', 'a.ipynb', 's', 'txt', 'text/plain', 1, '2026-01-01T00:00:00.000Z', '2026-12-31T00:00:00.000Z')",
                    [],
                )?;
                c.execute(
                    "INSERT INTO asset_refs (asset_uri, execution_id) VALUES ('u', 'old-leased')",
                    [],
                )?;
                for i in 0..5 {
                    insert(c, &format!("new-{i}"), "completed", Some("2026-06-01T00:00:00.000Z"));
                }
                let rule = Retention {
                    max_age_days: Some(30.0),
                    max_count: None,
                };
                assert_eq!(apply(c, &rule, "2026-06-02T00:00:00.000Z")?, 1);
                assert_eq!(
                    ids(c),
                    ["old-running", "old-pending", "old-leased", "new-0", "new-1", "new-2", "new-3", "new-4"]
                );
                let rule = Retention {
                    max_age_days: None,
                    max_count: Some(2),
                };
                assert_eq!(apply(c, &rule, "2026-06-02T00:00:00.000Z")?, 3);
                assert_eq!(ids(c), ["old-running", "old-pending", "old-leased", "new-3", "new-4"]);
                // Once its asset's lease has expired, the leased row goes too (with its link).
                assert_eq!(apply(c, &rule, "2027-01-02T00:00:00.000Z")?, 1);
                let links: i64 = c.query_row("SELECT COUNT(*) FROM asset_refs", [], |r| r.get(0))?;
                assert_eq!(links, 0);
                assert_eq!(ids(c), ["old-running", "old-pending", "new-3", "new-4"]);
                Ok(())
            })
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn many_rows_go_in_batches() {
        let dir = tempfile_dir();
        let store = Store::open(&dir.join("state.db")).unwrap();
        store
            .call_blocking(|c| {
                for i in 0..(BATCH * 2 + 7) {
                    insert(
                        c,
                        &format!("e{i}"),
                        "completed",
                        Some("2026-01-01T00:00:00.000Z"),
                    );
                }
                let rule = Retention {
                    max_age_days: None,
                    max_count: Some(10),
                };
                assert_eq!(delete_batch(c, &rule, "2026-06-02T00:00:00.000Z")?, BATCH);
                assert_eq!(apply(c, &rule, "2026-06-02T00:00:00.000Z")?, BATCH + 7 - 10);
                assert_eq!(ids(c).len(), 10);
                Ok(())
            })
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "jmcp-retention-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
