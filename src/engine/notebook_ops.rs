//! Notebook edits: read the file, change it, save it atomically with merge-by-cell-id if the
//! file changed on disk meanwhile (SPEC §5). One edit at a time per notebook (a per-notebook
//! lock held only inside the blocking task).

use std::sync::{Arc, Mutex};

use jmcp_notebook::io::{read_notebook, save, SaveOutcome};
use jmcp_notebook::{Cell, CellType, Notebook, NotebookError};

use super::{EngineError, EngineResult};
use crate::paths::RootedPath;

/// Per-notebook write lock (blocking contexts only).
pub type FileLock = Arc<Mutex<()>>;

/// Reads a notebook (parse errors name the file).
pub fn load(path: &RootedPath) -> EngineResult<Notebook> {
    if !path.abs.exists() {
        return Err(EngineError::NotebookMissing {
            notebook: path.rel.clone(),
        });
    }
    Ok(read_notebook(&path.abs)?.0.notebook)
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
    if !path.abs.exists() {
        return Err(EngineError::NotebookMissing {
            notebook: path.rel.clone(),
        });
    }
    let (loaded, stamp) = read_notebook(&path.abs)?;
    let base = loaded.notebook;
    let mut ours = base.clone();
    let value = f(&mut ours)?;
    let (_, _, outcome) = save(&path.abs, &base, &stamp, &ours)?;
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
