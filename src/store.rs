//! The durable store: `DATA_DIR/state.db`, SQLite in WAL mode with `synchronous=FULL`, so a
//! committed row survives a crash or power loss (SPEC §5). Every execution gets its row before
//! the kernel sees it; its state transitions and outputs are recorded here.
//!
//! Methods are blocking; async callers use [`Store::call`], which runs them on the blocking pool.

mod errors;
pub mod executions;
mod group_commit;
pub mod retention;
mod schema;
pub mod sessions;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub use errors::StoreErrorKind;
pub use executions::{ExecutionRecord, NewExecution, StartedOn, Status};
pub use group_commit::GroupCommitter;
pub use sessions::{KernelSessionRecord, RemoteIds};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed; [`StoreError::kind`] says how.
    #[error("state database error ({kind}): {source}; {advice}", kind = StoreErrorKind::of(.0), source = .0, advice = StoreErrorKind::of(.0).advice())]
    Sqlite(#[from] rusqlite::Error),
    /// SQLite failed on another thread (the accept writer); the kind is kept.
    #[error("state database error ({kind}): {message}; {}", .kind.advice())]
    Failed {
        /// What kind of failure.
        kind: StoreErrorKind,
        /// SQLite's message.
        message: String,
    },
    /// The database's schema is newer than this version understands.
    #[error("state database schema version {found} is newer than this jupyter-mcp supports ({supported}): use the newer jupyter-mcp that wrote it, or a fresh --data-dir")]
    SchemaTooNew {
        /// `user_version` found in the file.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// A stored JSON column could not be read.
    #[error("state database holds unreadable JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking task panicked or was cancelled.
    #[error("state database task failed: {0}")]
    Task(String),
    /// The data dir did not answer within `--storage-timeout`, or its breaker is open
    /// (SPEC §8); the call was abandoned.
    #[error(transparent)]
    Unavailable(#[from] crate::storage::StorageUnavailable),
    /// The data directory could not be prepared.
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// The kind of failure, for deciding whether to retry, and for messages.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Sqlite(e) => StoreErrorKind::of(e),
            StoreError::Failed { kind, .. } => *kind,
            StoreError::SchemaTooNew { .. } | StoreError::Json(_) => StoreErrorKind::Incompatible,
            StoreError::DataDir { .. } | StoreError::Unavailable(_) => StoreErrorKind::Io,
            StoreError::Task(_) => StoreErrorKind::Other,
        }
    }

    /// A copy that can be sent to several waiters (rusqlite errors are not `Clone`).
    pub fn to_shared(&self) -> StoreError {
        StoreError::Failed {
            kind: self.kind(),
            message: match self {
                StoreError::Sqlite(e) => e.to_string(),
                StoreError::Failed { message, .. } => message.clone(),
                other => other.to_string(),
            },
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    accept: GroupCommitter,
    /// `state.db`.
    path: std::path::PathBuf,
    /// Bounds every call (SPEC §8); None: unbounded (unit tests).
    storage: Option<Arc<crate::storage::Storage>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies the schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        schema::prepare(&conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            accept: GroupCommitter::start(path)?,
            path: path.to_path_buf(),
            storage: None,
        })
    }

    /// Bounds every later call by `storage` (its data-dir breaker and `--storage-timeout`).
    pub fn with_storage(mut self, storage: Arc<crate::storage::Storage>) -> Store {
        self.storage = Some(storage);
        self
    }

    /// Accepts executions durably (group commit: concurrent callers share transactions).
    /// Bounded (SPEC §8): fails at once while the data-dir breaker is open, and after
    /// `--storage-timeout` when the commit does not return. Rows of an abandoned request
    /// that the database commits later are cancelled then (with a note), so an execution the
    /// caller was told failed never runs.
    pub async fn accept(&self, rows: Vec<NewExecution>) -> Result<(), StoreError> {
        let Some(storage) = &self.storage else {
            return self.accept.insert(rows).await;
        };
        storage
            .check(crate::storage::Place::DataDir)
            .map_err(|mut e| {
                e.what = "accepting the execution into the state database".into();
                e
            })?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let committer = self.accept.clone();
        let mut insert = Box::pin(async move { committer.insert(rows).await });
        match tokio::time::timeout(storage.timeout, &mut insert).await {
            Ok(r) => r,
            Err(_) => {
                let store = self.clone();
                tokio::spawn(async move {
                    if insert.await.is_ok() {
                        // The rows landed after all: withdraw them (never run a row whose
                        // caller was told it was not accepted), retrying while the database
                        // does not answer; a row still there at the next start is settled
                        // by recovery like any other.
                        let note = "not accepted: the state database did not answer in time, and the caller was told so";
                        for attempt in 0..600u32 {
                            let ids = ids.clone();
                            let r = store
                                .call(move |c| {
                                    for id in &ids {
                                        executions::withdraw(c, id, note)?;
                                    }
                                    Ok(())
                                })
                                .await;
                            match r {
                                Ok(()) => break,
                                Err(e) if attempt == 0 || attempt % 60 == 59 => tracing::warn!(
                                    "could not withdraw executions committed after their caller gave up (retrying): {e}"
                                ),
                                Err(_) => {}
                            }
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                });
                Err(crate::storage::StorageUnavailable {
                    path: self.path.clone(),
                    what: "accepting the execution into the state database".into(),
                    detail: format!(
                        "did not answer within {} s (the execution was not accepted)",
                        storage.timeout.as_secs_f64()
                    ),
                }
                .into())
            }
        }
    }

    /// Runs `f` with the connection on the blocking thread pool, bounded by
    /// `--storage-timeout` when the store has a storage health (see [`Store::with_storage`]).
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        if let Some(storage) = &self.storage {
            return storage
                .run(
                    crate::storage::Place::DataDir,
                    &self.path,
                    "the state database",
                    move || {
                        let mut guard = conn
                            .lock()
                            .map_err(|_| StoreError::Task("database mutex poisoned".into()))?;
                        f(&mut guard)
                    },
                )
                .await?;
        }
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("database mutex poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` with the connection on the current thread (for blocking contexts and tests).
    pub fn call_blocking<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Task("database mutex poisoned".into()))?;
        f(&mut guard)
    }
}

/// Current UTC time as RFC 3339 with milliseconds (the format of every timestamp we store).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
