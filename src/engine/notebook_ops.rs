//! Notebook edits: read the file, change it, save it atomically with merge-by-cell-id if the
//! file changed on disk meanwhile (SPEC §5). One edit at a time per notebook (a per-notebook
//! lock held only inside the blocking task).

use std::sync::{Arc, Mutex};

use jmcp_notebook::io::{read_notebook_at, save_at, FileStamp, SaveOutcome};
use jmcp_notebook::Loaded;
use jmcp_notebook::{Cell, CellType, Notebook, NotebookError};

use super::{EngineError, EngineResult};
use crate::paths::RootedPath;

/// How many blocking notebook file operations may run at once (all notebooks together).
/// A file system that stops answering (a stale network mount) can hold at most this many
/// threads of the blocking pool; further notebook I/O waits for a permit instead of taking
/// threads every other tool needs.
pub const MAX_FILE_JOBS: usize = 32;

/// How long a notebook operation waits for one of the [`MAX_FILE_JOBS`] permits before it
/// is refused (only reached when that many operations are stuck).
const FILE_JOB_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

static FILE_JOBS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_FILE_JOBS);

/// Runs blocking notebook file I/O on `path` (absolute; the notebook or folder it touches)
/// on the blocking pool, holding one of the [`MAX_FILE_JOBS`] permits for its whole duration,
/// bounded by `--storage-timeout` (SPEC §8: a hung file system costs this call one abandoned
/// thread, never a runtime worker). Errors: the root's breaker is open, the folder has a
/// hung call, or `f` did not answer in time ([`EngineError::Storage`], naming `path` and
/// `what`); the permit did not come within a minute; the task panicked.
pub async fn blocking_io<R: Send + 'static>(
    path: &std::path::Path,
    what: &str,
    f: impl FnOnce() -> EngineResult<R> + Send + 'static,
) -> EngineResult<R> {
    if let Some(storage) = crate::storage::current() {
        storage
            .check(crate::storage::Place::Root)
            .map_err(|mut e| {
                e.what = what.to_string();
                e
            })?;
    }
    let permit = tokio::time::timeout(FILE_JOB_WAIT, FILE_JOBS.acquire())
        .await
        .map_err(|_| {
            EngineError::InvalidArgument(format!(
                "{MAX_FILE_JOBS} notebook file operations have been stuck for over a minute \
                 (a file system under the root is not answering); try again once it answers"
            ))
        })?
        .map_err(|e| EngineError::InvalidArgument(format!("internal error: {e}")))?;
    crate::storage::run_bounded(crate::storage::Place::Root, path, what, move || {
        let _permit = permit;
        f()
    })
    .await?
}

/// Per-notebook write lock (blocking contexts only).
pub type FileLock = Arc<Mutex<()>>;

/// Reads a notebook (parse errors name the file). The open is confined beneath the root
/// and refuses anything but a regular file (see `jmcp_notebook::io::Location`).
pub fn load(path: &RootedPath) -> EngineResult<Notebook> {
    Ok(read(path)?.0.notebook)
}

/// Reads a notebook with its stamp; a missing file is [`EngineError::NotebookMissing`].
fn read(path: &RootedPath) -> EngineResult<(Loaded, FileStamp)> {
    match read_notebook_at(&path.loc()) {
        Ok(read) => Ok(read),
        Err(NotebookError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(EngineError::NotebookMissing {
                notebook: path.rel.clone(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Read-modify-write under `lock`. `f` returns a value for the caller; the notebook is written
/// only if `f` succeeds. Returns the value and any merge notes.
pub fn update<R>(
    path: &RootedPath,
    lock: &FileLock,
    f: impl FnOnce(&mut Notebook) -> EngineResult<R>,
) -> EngineResult<(R, Vec<String>)> {
    let _guard = lock.lock().map_err(|_| {
        EngineError::InvalidArgument("notebook lock poisoned by an earlier failure".into())
    })?;
    let (loaded, stamp) = read(path)?;
    let base = loaded.notebook;
    let mut ours = base.clone();
    let value = f(&mut ours)?;
    let (_, _, outcome) = save_at(&path.loc(), &base, &stamp, &ours)?;
    let notes = match outcome {
        SaveOutcome::Written => vec![],
        SaveOutcome::Merged { notes } => notes,
    };
    Ok((value, notes))
}

/// Position of `cell_id` or [`EngineError::CellNotFound`].
pub fn index_of(nb: &Notebook, notebook: &str, cell_id: &str) -> EngineResult<usize> {
    nb.cell_index(cell_id)
        .ok_or_else(|| EngineError::CellNotFound {
            notebook: notebook.to_string(),
            cell_id: cell_id.to_string(),
        })
}

/// Parses a cell type name.
pub fn cell_type(name: Option<&str>) -> EngineResult<CellType> {
    match name {
        None => Ok(CellType::Code),
        Some(n) => CellType::from_name(n).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "unknown cell_type '{n}': use \"code\", \"markdown\" or \"raw\""
            ))
        }),
    }
}

/// Creates a new cell with a fresh id in `nb`.
pub fn new_cell(nb: &Notebook, cell_type: CellType, source: &str) -> Cell {
    Cell::new(cell_type, source, nb.new_cell_id())
}

/// Maps "file exists" into a helpful error for create_notebook (a dangling symlink "exists"
/// for `O_EXCL` but not for readers, so it gets its own message).
pub fn create_error(e: NotebookError, rel: &str, abs: &std::path::Path) -> EngineError {
    let dangling = abs.symlink_metadata().is_ok() && !abs.exists();
    match e {
        NotebookError::AlreadyExists { .. } if dangling => EngineError::InvalidArgument(format!(
            "'{rel}' is a symbolic link to a file that does not exist, so no notebook can be \
             created there: remove the link or choose another path"
        )),
        NotebookError::AlreadyExists { .. } => EngineError::InvalidArgument(format!(
            "notebook '{rel}' already exists: read it with read_notebook or choose another path"
        )),
        other => EngineError::Notebook(other),
    }
}
