//! Tool arguments (MCP `tools/call` params). Field docs become the JSON Schema descriptions
//! an agent reads, so they are written for a model that has never seen Jupyter.

use schemars::JsonSchema;
use serde::Deserialize;

/// A notebook path.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NotebookArg {
    /// Path of the .ipynb file, relative to the server's notebook root (e.g. "analysis.ipynb").
    pub notebook: String,
}

/// A new cell for create_notebook.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NewCell {
    /// "code" (default), "markdown" or "raw".
    pub cell_type: Option<String>,
    /// The cell's text.
    pub source: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateNotebookArgs {
    /// Path of the new .ipynb file, relative to the root. Must not exist yet.
    pub notebook: String,
    /// Kernel to run it with (see list_kernelspecs). Default "python3".
    pub kernel_name: Option<String>,
    /// Initial cells, in order.
    pub cells: Option<Vec<NewCell>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadNotebookArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// How much of each cell's outputs to return: "none", "summary" (default: bounded text,
    /// images listed) or "full" (bounded text plus images as image content).
    pub outputs: Option<String>,
    /// First cell index to return (default 0).
    pub start: Option<usize>,
    /// Stop before this cell index (default: the end).
    pub end: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InsertCellArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// The cell's text (Python code for a code cell in a Python notebook).
    pub source: String,
    /// "code" (default), "markdown" or "raw".
    pub cell_type: Option<String>,
    /// Insert at this position (0 = first). Give index or after_cell_id, not both; default: append at the end.
    pub index: Option<usize>,
    /// Insert right after the cell with this id.
    pub after_cell_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EditCellArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// Id of the cell (from read_notebook or insert_cell).
    pub cell_id: String,
    /// The new text of the cell (replaces the old text entirely).
    pub source: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CellArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// Id of the cell (from read_notebook or insert_cell).
    pub cell_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MoveCellArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// Id of the cell to move.
    pub cell_id: String,
    /// Its position after the move (0 = first).
    pub index: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ClearOutputsArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// Only this cell; default: every code cell.
    pub cell_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListNotebooksArgs {
    /// Folder under the root to search (default: the whole root).
    pub dir: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecuteCellArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// Id of the code cell to run (preferred).
    pub cell_id: Option<String>,
    /// Or its position (0 = first cell).
    pub index: Option<usize>,
    /// Seconds to wait for the result (default 30). If the cell is still running then, the
    /// result says status "running" with an execution_id: the cell keeps running; poll it
    /// with get_execution.
    pub timeout_s: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecuteCodeArgs {
    /// Path of the .ipynb file whose kernel runs the code, relative to the root.
    pub notebook: String,
    /// Code to run in that kernel. It is not added to the notebook.
    pub code: String,
    /// Seconds to wait for the result (default 30); see execute_cell.
    pub timeout_s: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunAllArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// Stop (cancel the remaining cells) at the first cell that raises an error. Default true.
    pub stop_on_error: Option<bool>,
    /// Seconds to wait for the whole run (default 30). Cells still queued or running then keep
    /// going; poll them with get_execution.
    pub timeout_s: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetExecutionArgs {
    /// The execution_id returned by execute_cell, execute_code or run_all_cells.
    pub execution_id: String,
    /// Seconds to wait for it to finish before answering (default 0: answer now).
    pub wait_s: Option<f64>,
    /// Show the outputs from this index on (0-based), for paging through executions with more
    /// outputs than one result holds (see outputs_shown.next_offset). Default: the first and
    /// the last outputs.
    pub output_offset: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecutionIdArg {
    /// The execution_id returned by execute_cell, execute_code or run_all_cells.
    pub execution_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListExecutionsArgs {
    /// Only executions of this notebook.
    pub notebook: Option<String>,
    /// Only this status: pending, running, completed, failed, cancelled, interrupted.
    pub status: Option<String>,
    /// At most this many, newest first (default 50).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StartKernelArgs {
    /// Path of the .ipynb file, relative to the root.
    pub notebook: String,
    /// Kernel to start (see list_kernelspecs); default: the notebook's own, else python3.
    pub kernel_name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendInputArgs {
    /// Path of the .ipynb file whose running cell waits in input().
    pub notebook: String,
    /// The text to answer with (without a trailing newline).
    pub text: String,
}
