//! Checkpoints (SPEC §6, "Friday-Monday"): save a notebook kernel's variables to disk, prove on
//! load that the file is the one this server wrote, and bring the packages back.
//!
//! - Save: the kernel serializes each variable with dill into a temp file in
//!   `DATA_DIR/checkpoints/<notebook-hash>/` (`python.rs`); the server streams the file through
//!   HMAC-SHA256 and SHA-256 in constant memory, writes the signed metadata and renames both
//!   into place so that a crash leaves the old checkpoint or the new one (`files.rs`).
//! - Load: the server verifies the metadata signature, the identity and the data HMAC over the
//!   whole file (constant-time comparisons) before the kernel reads a byte; the kernel then
//!   reads the file into memory and refuses it unless its SHA-256 is the verified one (closing
//!   the window between the server's check and the kernel's read), compares packages, installs
//!   missing exact versions with the kernel's own pip when asked, and restores the variables.
//! - Remote kernels (`--gateway-url`): the same files, moved over the messaging protocol as
//!   comm messages with binary buffers (`wire.rs`).
//! - Key: `key.rs`. Names and file names: `name.rs`. Index in `state.db`: `index.rs`.
//!   Automatic checkpoints: `auto.rs`.
//!
//! Everything here talks to the kernel through [`Engine::run_internal`] (not recorded, not in
//! the notebook). Per checkpoint, one save/load/delete runs at a time (a per-file async lock).

pub mod auto;
mod files;
mod index;
mod key;
mod load;
mod name;
mod python;
mod save;
mod sign;
mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;
use serde_json::Value;

use crate::engine::{Engine, EngineError};
use crate::metrics;

pub use files::{Metadata, Package, SavedVariable, SkippedVariable};
pub use key::{KeySource, SecretKey, KEY_FILE, SECRET_ENV};
pub use load::load;
pub use name::{validate_name, CheckpointPaths, MAX_NAME_CHARS};
pub use save::save;

/// Errors of checkpoint operations; each says what happened and what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The name cannot be used.
    #[error("invalid checkpoint name {name:?}: {reason}. Use a short label such as \"before-tuning\" (1-128 characters, no '/', '\\', '..' or control characters)")]
    InvalidName { name: String, reason: &'static str },
    /// No such checkpoint.
    #[error("notebook '{notebook}' has no checkpoint named '{name}': call list_checkpoints to see the saved ones")]
    NotFound { notebook: String, name: String },
    /// Verification failed (counted in `security_signature_failures_total`).
    #[error("checkpoint '{name}' of '{notebook}' was refused: {what}. Nothing was loaded into the kernel. Use another checkpoint (list_checkpoints) or save a new one")]
    Integrity {
        notebook: String,
        name: String,
        what: String,
    },
    /// The signing key is unusable.
    #[error("checkpoints are unavailable: {message}")]
    Key { message: String },
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The notebook path, kernel or store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The kernel could not run the checkpoint code.
    #[error("{0}")]
    Kernel(String),
    /// No variable could be saved; the previous checkpoint of that name is unchanged.
    #[error("{0}")]
    NothingSaved(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::store::StoreError> for CheckpointError {
    fn from(e: crate::store::StoreError) -> Self {
        CheckpointError::Engine(e.into())
    }
}

type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// What `save` did.
#[derive(Debug, Clone)]
pub struct SaveReport {
    pub notebook: String,
    pub name: String,
    /// The data file.
    pub path: PathBuf,
    /// The metadata file.
    pub metadata_path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub created_at: String,
    pub python_version: String,
    /// Number of distributions in the package snapshot.
    pub packages: usize,
    pub saved: Vec<SavedVariable>,
    pub skipped: Vec<SkippedVariable>,
    /// Kernel time (dill, write, fsync).
    pub kernel_seconds: f64,
    /// Server time hashing (HMAC + SHA-256).
    pub hash_seconds: f64,
    /// Server time in total (hash, fsyncs, renames, metadata).
    pub server_seconds: f64,
}

/// A restored variable.
#[derive(Debug, Clone, Deserialize)]
pub struct RestoredVariable {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A package of the snapshot that the kernel lacks.
#[derive(Debug, Clone)]
pub struct MissingPackage {
    pub name: String,
    pub version: String,
    /// Saved variables whose pickles refer to it.
    pub needed_by: Vec<String>,
    /// Installed by this load (`auto_install`).
    pub installed: bool,
    /// Why it was not installed.
    pub error: Option<String>,
}

/// A package installed in another version than at save time.
#[derive(Debug, Clone)]
pub struct VersionMismatch {
    pub name: String,
    pub saved: String,
    pub installed: String,
}

/// What `load` did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub notebook: String,
    pub name: String,
    pub created_at: String,
    pub bytes: u64,
    pub restored: Vec<RestoredVariable>,
    pub skipped: Vec<SkippedVariable>,
    /// Packages needed by saved variables that were missing (installed or not).
    pub missing_packages: Vec<MissingPackage>,
    /// Other packages of the snapshot the kernel lacks (not needed by any saved variable).
    pub other_missing_packages: Vec<Package>,
    pub version_mismatches: Vec<VersionMismatch>,
    /// Variables not restored because a package they need is missing.
    pub missing_package_variables: Vec<String>,
    pub python_version_saved: String,
    pub python_version_kernel: String,
    pub notes: Vec<String>,
    /// Server verification (metadata + streaming HMAC over the data).
    pub verify_seconds: f64,
    /// Kernel restore (read, SHA-256, dill); for a remote kernel, after the upload.
    pub kernel_seconds: f64,
}

/// A checkpoint on disk.
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    pub name: String,
    pub notebook: String,
    pub created_at: String,
    pub bytes: u64,
    pub python_version: String,
    pub variables: Vec<String>,
    /// The metadata signature holds for this server's key (the data is checked on load).
    pub verified: bool,
}

/// Per-data-dir state: the key (loaded on first use) and per-checkpoint locks.
struct Service {
    root: PathBuf,
    data_dir: PathBuf,
    key: Mutex<Option<Arc<SecretKey>>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Notebook -> id of the last execution covered by an automatic checkpoint.
    auto_marks: Mutex<HashMap<String, String>>,
}

fn service(engine: &Engine) -> Arc<Service> {
    static SERVICES: OnceLock<Mutex<HashMap<PathBuf, Arc<Service>>>> = OnceLock::new();
    let data_dir = engine.config().data_dir.clone();
    let mut map = match SERVICES.get_or_init(Default::default).lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    map.entry(data_dir.clone())
        .or_insert_with(|| {
            let abs = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
            Arc::new(Service {
                root: abs.join("checkpoints"),
                data_dir: abs,
                key: Mutex::new(None),
                locks: Mutex::new(HashMap::new()),
                auto_marks: Mutex::new(HashMap::new()),
            })
        })
        .clone()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Service {
    async fn key(self: &Arc<Self>) -> Result<Arc<SecretKey>> {
        if let Some(k) = lock(&self.key).clone() {
            return Ok(k);
        }
        let data_dir = self.data_dir.clone();
        let k = blocking(move || {
            let env = std::env::var_os(SECRET_ENV);
            SecretKey::resolve(&data_dir, env.as_deref())
        })
        .await?;
        let k = Arc::new(k);
        let mut slot = lock(&self.key);
        Ok(slot.get_or_insert(k).clone())
    }

    /// The lock of one checkpoint file. Locks nobody holds or waits for (only the map has
    /// them) are dropped on the way, so the map holds at most the checkpoints in use.
    fn file_lock(&self, stem: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.locks);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(stem.to_string()).or_default().clone()
    }
}

/// Longest a checkpoint file operation may take (it streams files of any size); it also
/// ends as soon as the data dir's storage breaker opens (SPEC §8).
const FILE_WORK_BOUND: std::time::Duration = std::time::Duration::from_secs(3600);

/// Runs checkpoint file work in the data dir on a thread that may be sacrificed: fails at
/// once while the data dir's breaker is open, and stops waiting when it opens.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let Some(storage) = crate::storage::current() else {
        return tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| CheckpointError::Internal(format!("blocking task failed: {e}")))?;
    };
    let dir = storage
        .breaker(crate::storage::Place::DataDir)
        .path()
        .join("checkpoints");
    storage
        .run_for(
            crate::storage::Place::DataDir,
            &dir,
            "checkpoint files",
            FILE_WORK_BOUND.max(storage.timeout),
            f,
        )
        .await
        .map_err(|e| CheckpointError::Engine(e.into()))?
}

fn check_name(name: &str) -> Result<()> {
    validate_name(name).map_err(|reason| CheckpointError::InvalidName {
        name: name.chars().take(160).collect(),
        reason,
    })
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| {
        CheckpointError::Kernel(format!(
            "the data directory path {} is not UTF-8; use a --data-dir with a UTF-8 path",
            p.display()
        ))
    })
}

fn refused(e: CheckpointError) -> CheckpointError {
    if matches!(e, CheckpointError::Integrity { .. }) {
        metrics::checkpoint().security_signature_failures.inc();
        tracing::warn!("{e}");
    }
    e
}

fn parse<T: for<'de> Deserialize<'de>>(v: Value, what: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        CheckpointError::Kernel(format!("unexpected answer from the kernel to {what}: {e}"))
    })
}

/// Checkpoints on disk, of one notebook or of all, newest first per notebook.
pub async fn list(engine: &Engine, notebook: Option<&str>) -> Result<Vec<CheckpointInfo>> {
    let rel = match notebook {
        Some(n) => Some(engine.resolve_notebook(n).await?.rel),
        None => None,
    };
    let svc = service(engine);
    let key = match svc.key().await {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!("listing checkpoints without verifying them: {e}");
            None
        }
    };
    let (root, scope) = (svc.root.clone(), rel.clone());
    let listed = blocking(move || {
        let dirs: Vec<PathBuf> = match &scope {
            Some(rel) => vec![name::notebook_dir(&root, rel)],
            None => std::fs::read_dir(&root)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut out = Vec::new();
        for dir in dirs {
            for l in files::list_dir(&dir, key.as_deref()) {
                if scope.as_ref().is_none_or(|s| &l.meta.notebook == s) {
                    out.push((dir.clone(), l));
                }
            }
        }
        Ok(out)
    })
    .await?;
    let rows: Vec<index::Row> = listed
        .iter()
        .filter(|(_, l)| l.verified)
        .map(|(dir, l)| index::Row {
            notebook: l.meta.notebook.clone(),
            name: l.meta.name.clone(),
            dir: dir.to_string_lossy().into_owned(),
            created_at: l.meta.created_at.clone(),
            bytes: l.meta.bytes,
        })
        .collect();
    let scope = rel.clone();
    if let Err(e) = engine
        .store()
        .call(move |c| index::sync(c, scope.as_deref(), &rows))
        .await
    {
        tracing::warn!("could not refresh the checkpoint index: {e}");
    }
    let mut out: Vec<CheckpointInfo> = listed
        .into_iter()
        .map(|(_, l)| CheckpointInfo {
            variables: l.meta.variables.iter().map(|v| v.name.clone()).collect(),
            name: l.meta.name,
            notebook: l.meta.notebook,
            created_at: l.meta.created_at,
            bytes: l.meta.bytes,
            python_version: l.meta.python_version,
            verified: l.verified,
        })
        .collect();
    out.sort_by(|a, b| {
        a.notebook
            .cmp(&b.notebook)
            .then_with(|| b.created_at.cmp(&a.created_at))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

/// Deletes checkpoint `name` of `notebook`.
pub async fn delete(engine: &Engine, notebook: &str, name: &str) -> Result<()> {
    check_name(name)?;
    let path = engine.resolve_notebook(notebook).await?;
    let svc = service(engine);
    let paths = CheckpointPaths::new(&svc.root, &path.rel, name);
    let file_lock = svc.file_lock(&paths.stem);
    let _guard = file_lock.lock().await;
    let p = paths.clone();
    let existed = blocking(move || files::delete(&p)).await?;
    let (rel, owned) = (path.rel.clone(), name.to_string());
    engine
        .store()
        .call(move |c| index::remove(c, &rel, &owned))
        .await?;
    if existed {
        Ok(())
    } else {
        Err(CheckpointError::NotFound {
            notebook: path.rel,
            name: name.to_string(),
        })
    }
}

/// A sentence offering to restore the notebook's latest checkpoint (for the note an agent
/// gets after its kernel died), or None when it has none.
pub async fn restore_offer(engine: &Engine, notebook_rel: &str) -> Option<String> {
    let rel = notebook_rel.to_string();
    let rows = engine
        .store()
        .call(move |c| index::of_notebook(c, &rel))
        .await
        .ok()?;
    let svc = service(engine);
    for row in rows {
        let paths = CheckpointPaths::new(&svc.root, notebook_rel, &row.name);
        let meta_path = paths.meta();
        let Ok(Some(raw)) = crate::storage::run_bounded(
            crate::storage::Place::DataDir,
            &paths.meta(),
            "reading checkpoint metadata",
            move || files::read_metadata_value(&meta_path),
        )
        .await
        .ok()?
        else {
            continue;
        };
        let vars: Vec<String> = serde_json::from_slice::<Value>(&raw)
            .ok()
            .and_then(|v| {
                Some(
                    v.get("variables")?
                        .as_array()?
                        .iter()
                        .filter_map(|x| x.get("name")?.as_str().map(str::to_string))
                        .collect(),
                )
            })
            .unwrap_or_default();
        let shown = if vars.len() > 8 {
            format!("{}, ... ({} in all)", vars[..8].join(", "), vars.len())
        } else {
            vars.join(", ")
        };
        return Some(format!(
            "Its variables can be restored from checkpoint '{}' saved at {} ({}): call \
             load_environment(notebook={}, name={}).",
            row.name,
            row.created_at,
            shown,
            Value::String(notebook_rel.to_string()),
            Value::String(row.name.clone()),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted() {
        let before = metrics::checkpoint().security_signature_failures.get();
        let _ = refused(CheckpointError::Integrity {
            notebook: "n".into(),
            name: "x".into(),
            what: "test".into(),
        });
        let _ = refused(CheckpointError::Kernel("not counted".into()));
        assert!(metrics::checkpoint().security_signature_failures.get() > before);
    }

    #[test]
    fn lock_map_keeps_only_locks_in_use() {
        let svc = Service {
            root: PathBuf::from("/nonexistent"),
            data_dir: PathBuf::from("/nonexistent"),
            key: Mutex::new(None),
            locks: Mutex::new(HashMap::new()),
            auto_marks: Mutex::new(HashMap::new()),
        };
        let held = svc.file_lock("kept");
        for i in 0..1000 {
            drop(svc.file_lock(&format!("stem-{i}")));
        }
        let n = lock(&svc.locks).len();
        assert_eq!(n, 2, "the held lock and the last one asked for, not 1001");
        assert!(
            Arc::ptr_eq(&held, &svc.file_lock("kept")),
            "a held lock is shared"
        );
    }
}
