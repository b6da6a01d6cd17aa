//! Errors of the engine: each says what happened, to what, and what the agent can do next.

use crate::paths::PathError;
use crate::store::StoreError;
use jmcp_kernel::KernelError;
use jmcp_notebook::NotebookError;

/// Errors returned by [`crate::engine::Engine`] operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A path outside the root, not a notebook, ...
    #[error(transparent)]
    Path(#[from] PathError),
    /// Reading, parsing or writing a notebook failed.
    #[error(transparent)]
    Notebook(#[from] NotebookError),
    /// The notebook file does not exist.
    #[error("notebook '{notebook}' does not exist under the root: create it with create_notebook or list existing ones with list_notebooks")]
    NotebookMissing { notebook: String },
    /// No cell with that id.
    #[error("notebook '{notebook}' has no cell with id '{cell_id}': call read_notebook (outputs: \"none\") to list the cell ids")]
    CellNotFound { notebook: String, cell_id: String },
    /// Index out of range.
    #[error(
        "notebook '{notebook}' has {len} cells; index {index} is out of range (valid: 0..{len})"
    )]
    IndexOutOfRange {
        notebook: String,
        index: usize,
        len: usize,
    },
    /// The cell cannot be executed.
    #[error("cell '{cell_id}' is a {cell_type} cell: only code cells can be executed")]
    NotCode { cell_id: String, cell_type: String },
    /// Invalid argument combination or value.
    #[error("{0}")]
    InvalidArgument(String),
    /// Kernel discovery, start or communication failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// No kernel is running for this notebook.
    #[error("no kernel is running for '{notebook}': start one with start_kernel, or run a cell (kernels start on first execution)")]
    NoKernel { notebook: String },
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unknown execution id.
    #[error("no execution with id '{id}': ids are returned by execute_cell, execute_code and run_all_cells")]
    ExecutionNotFound { id: String },
    /// An operation did not finish in time.
    #[error("{0}")]
    Timeout(String),
    /// Storage (the root or the data dir) did not answer within `--storage-timeout`, or
    /// its breaker is open (SPEC §8).
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageUnavailable),
    /// `--max-kernels` is reached.
    #[error("cannot start a kernel for '{notebook}': this server already runs {limit} kernel(s), its limit (--max-kernels {limit}): {running}. Stop one with shutdown_kernel (an idle one first), or restart the server with a higher --max-kernels")]
    KernelLimit {
        limit: usize,
        notebook: String,
        running: String,
    },
    /// The server is shutting down.
    #[error("the server is shutting down; retry after it restarts")]
    ShuttingDown,
}

/// Result alias.
pub type EngineResult<T> = Result<T, EngineError>;
