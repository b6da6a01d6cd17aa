//! Group commit for accepting executions: concurrent requests queue their rows; one writer
//! thread takes everything queued, writes it in ONE transaction (one fsync with
//! `synchronous=FULL`) and then answers every request. Under load many requests share an
//! fsync; alone, a request costs one commit as before. A request is answered only after its
//! rows are durable.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::executions::{insert_rows, NewExecution};
use super::{schema, StoreError};

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 512;

/// Handle to the writer thread.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<(Vec<NewExecution>, Reply)>,
    commits: Arc<AtomicU64>,
}

impl GroupCommitter {
    /// Opens a second connection to the database and starts the writer thread.
    pub fn start(path: &Path) -> Result<GroupCommitter, StoreError> {
        let conn = Connection::open(path)?;
        schema::prepare(&conn)?;
        let (tx, rx) = mpsc::channel::<(Vec<NewExecution>, Reply)>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name("jmcp-group-commit".into())
            .spawn(move || writer(conn, rx, counter))
            .map_err(|e| StoreError::Task(format!("cannot start the commit thread: {e}")))?;
        Ok(GroupCommitter { tx, commits })
    }

    /// Inserts `rows` as pending; resolves once they are committed.
    pub async fn insert(&self, rows: Vec<NewExecution>) -> Result<(), StoreError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((rows, reply))
            .map_err(|_| StoreError::Task("the commit thread stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Task("the commit thread stopped".into()))?
    }

    /// Transactions committed so far (for tests and figures).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

fn writer(
    mut conn: Connection,
    rx: mpsc::Receiver<(Vec<NewExecution>, Reply)>,
    commits: Arc<AtomicU64>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let result = (|| -> Result<(), StoreError> {
            let tx = conn.transaction()?;
            for (rows, _) in &batch {
                insert_rows(&tx, rows)?;
            }
            tx.commit()?;
            Ok(())
        })();
        commits.fetch_add(1, Ordering::Relaxed);
        for (_, reply) in batch {
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(e.to_shared()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> NewExecution {
        NewExecution {
            started: None,
            id: format!("e{i}"),
            notebook: "n.ipynb".into(),
            cell_id: None,
            code: "1".into(),
            batch_id: None,
            stop_on_error: true,
            allow_error: false,
            requested_by: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_commits_and_all_rows_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let gc = GroupCommitter::start(&path).unwrap();
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let gc = gc.clone();
                tokio::spawn(async move { gc.insert(vec![row(i)]).await })
            })
            .collect();
        for h in handles {
            h.await.unwrap().unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM executions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200, "every acknowledged row is in the database");
        assert!(
            gc.commits() < 200,
            "requests shared commits: {} commits",
            gc.commits()
        );
    }

    #[tokio::test]
    async fn a_failed_batch_is_reported_to_its_requests() {
        let dir = tempfile::tempdir().unwrap();
        let gc = GroupCommitter::start(&dir.path().join("s.db")).unwrap();
        gc.insert(vec![row(1)]).await.unwrap();
        let err = gc.insert(vec![row(1)]).await.unwrap_err();
        assert_eq!(
            err.kind(),
            super::super::StoreErrorKind::Constraint,
            "{err}"
        );
        assert!(err.to_string().contains("UNIQUE"), "{err}");
    }
}
