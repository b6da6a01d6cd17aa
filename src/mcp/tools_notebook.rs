//! Notebook tools: create, read, list, and cell edits.

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData as McpError};
use schemars::JsonSchema;
use serde::Serialize;

use super::params::*;
use super::results::{self, ok, CellEntry};
use super::server::{tool_error, JupyterMcp};
use crate::engine::Position;

#[derive(Serialize, JsonSchema)]
pub struct CreatedNotebook {
    /// Path relative to the root.
    pub notebook: String,
    /// Ids of the initial cells, in order.
    pub cell_ids: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct NotebookContents {
    /// Path relative to the root.
    pub notebook: String,
    /// Number of cells in the notebook.
    pub total_cells: usize,
    /// The notebook's `metadata.kernelspec` (name, display_name, language).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernelspec: Option<serde_json::Value>,
    /// The requested cells (as many as the result's byte budget holds).
    pub cells: Vec<CellEntry>,
    /// Present when not every requested cell fits in one result: call read_notebook again
    /// with start = this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_start: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
pub struct InsertedCell {
    /// Id of the new cell.
    pub cell_id: String,
    /// Its position.
    pub index: usize,
}

#[derive(Serialize, JsonSchema)]
pub struct CellChanged {
    /// Always true.
    pub ok: bool,
    /// The cell.
    pub cell_id: String,
    /// New position (move_cell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Remarks, e.g. a merge with edits made on disk meanwhile.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct OutputsCleared {
    /// Always true.
    pub ok: bool,
    /// Number of code cells cleared.
    pub cleared: usize,
}

#[derive(Serialize, JsonSchema)]
pub struct NotebookEntry {
    /// Path relative to the root.
    pub notebook: String,
    /// File size in bytes.
    pub bytes: u64,
    /// Last modification, RFC 3339.
    pub modified: String,
}

#[derive(Serialize, JsonSchema)]
pub struct NotebookList {
    /// Notebooks found, sorted by path.
    pub notebooks: Vec<NotebookEntry>,
}

fn changed(
    cell_id: String,
    index: Option<usize>,
    notes: Vec<String>,
    text: String,
) -> CallToolResult {
    let r = CellChanged {
        ok: true,
        cell_id,
        index,
        notes,
    };
    let mut text = text;
    for n in &r.notes {
        text.push_str(&format!("\nnote: {n}"));
    }
    ok(&r, text, vec![])
}

#[tool_router(router = notebook_router, vis = "pub(crate)")]
impl JupyterMcp {
    /// Create a new Jupyter notebook (.ipynb) file, optionally with initial cells. Fails if the file exists.
    #[tool(output_schema = schema_for_output::<CreatedNotebook>())]
    async fn create_notebook(
        &self,
        Parameters(a): Parameters<CreateNotebookArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        let cells = a
            .cells
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.cell_type, c.source))
            .collect();
        Ok(
            match self
                .engine
                .create_notebook(&path, a.kernel_name.as_deref(), cells)
                .await
            {
                Ok(ids) => {
                    let text = format!(
                        "created {} with {} cell(s): {}",
                        path.rel,
                        ids.len(),
                        ids.join(", ")
                    );
                    ok(
                        &CreatedNotebook {
                            notebook: path.rel,
                            cell_ids: ids,
                        },
                        text,
                        vec![],
                    )
                }
                Err(e) => tool_error(e),
            },
        )
    }

    /// Read a notebook: each cell's id, type, source, prompt number and (bounded) outputs. Use the ids with the other tools.
    #[tool(output_schema = schema_for_output::<NotebookContents>())]
    async fn read_notebook(
        &self,
        Parameters(a): Parameters<ReadNotebookArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        let mode = a.outputs.unwrap_or_else(|| "summary".into());
        if !["none", "summary", "full"].contains(&mode.as_str()) {
            return Ok(results::fail(format!(
                "outputs must be \"none\", \"summary\" or \"full\", not {mode:?}"
            )));
        }
        Ok(
            match self.engine.read_notebook(&path, a.start, a.end).await {
                Ok((cells, total, kernelspec)) => {
                    let mut text = format!(
                        "{}: {} cells (kernel {})\n",
                        path.rel,
                        total,
                        kernelspec
                            .as_ref()
                            .and_then(|k| k.get("name"))
                            .and_then(|n| n.as_str())
                            .unwrap_or("not set")
                    );
                    let (entries, t, images, next_start) =
                        results::cells_off_runtime(path.rel.clone(), cells, mode, self.budget())
                            .await;
                    text.push_str(&t);
                    if let Some(n) = next_start {
                        text.push_str(&format!(
                            "[cells from index {n} on not shown (result budget, --max-result-bytes): read_notebook(start={n})]\n"
                        ));
                    }
                    ok(
                        &NotebookContents {
                            notebook: path.rel,
                            total_cells: total,
                            kernelspec,
                            cells: entries,
                            next_start,
                        },
                        text,
                        images,
                    )
                }
                Err(e) => tool_error(e),
            },
        )
    }

    /// Insert a new cell (code by default) at the end, at an index, or after a given cell. Returns its cell_id.
    #[tool(output_schema = schema_for_output::<InsertedCell>())]
    async fn insert_cell(
        &self,
        Parameters(a): Parameters<InsertCellArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        let position = match (a.index, a.after_cell_id) {
            (Some(_), Some(_)) => {
                return Ok(results::fail("give index or after_cell_id, not both"))
            }
            (Some(i), None) => Position::Index(i),
            (None, Some(id)) => Position::After(id),
            (None, None) => Position::End,
        };
        Ok(
            match self
                .engine
                .insert_cell(&path, a.source, a.cell_type, position)
                .await
            {
                Ok((cell_id, index, notes)) => {
                    let mut text = format!("inserted cell {cell_id} at index {index}");
                    for n in notes {
                        text.push_str(&format!("\nnote: {n}"));
                    }
                    ok(&InsertedCell { cell_id, index }, text, vec![])
                }
                Err(e) => tool_error(e),
            },
        )
    }

    /// Replace the text of a cell. Its previous outputs stay until it is run again.
    #[tool(output_schema = schema_for_output::<CellChanged>())]
    async fn edit_cell(
        &self,
        Parameters(a): Parameters<EditCellArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(
            match self
                .engine
                .edit_cell(&path, a.cell_id.clone(), a.source)
                .await
            {
                Ok(notes) => changed(
                    a.cell_id.clone(),
                    None,
                    notes,
                    format!("edited cell {}", a.cell_id),
                ),
                Err(e) => tool_error(e),
            },
        )
    }

    /// Delete a cell from the notebook.
    #[tool(output_schema = schema_for_output::<CellChanged>())]
    async fn delete_cell(
        &self,
        Parameters(a): Parameters<CellArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(
            match self.engine.delete_cell(&path, a.cell_id.clone()).await {
                Ok(notes) => changed(
                    a.cell_id.clone(),
                    None,
                    notes,
                    format!("deleted cell {}", a.cell_id),
                ),
                Err(e) => tool_error(e),
            },
        )
    }

    /// Move a cell to a new position (0 = first).
    #[tool(output_schema = schema_for_output::<CellChanged>())]
    async fn move_cell(
        &self,
        Parameters(a): Parameters<MoveCellArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(
            match self
                .engine
                .move_cell(&path, a.cell_id.clone(), a.index)
                .await
            {
                Ok(notes) => changed(
                    a.cell_id.clone(),
                    Some(a.index),
                    notes,
                    format!("moved cell {} to index {}", a.cell_id, a.index),
                ),
                Err(e) => tool_error(e),
            },
        )
    }

    /// Remove the outputs (and prompt numbers) of one code cell or of every code cell.
    #[tool(output_schema = schema_for_output::<OutputsCleared>())]
    async fn clear_outputs(
        &self,
        Parameters(a): Parameters<ClearOutputsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(match self.engine.clear_outputs(&path, a.cell_id).await {
            Ok(n) => ok(
                &OutputsCleared {
                    ok: true,
                    cleared: n,
                },
                format!("cleared outputs of {n} cell(s)"),
                vec![],
            ),
            Err(e) => tool_error(e),
        })
    }

    /// List the notebooks (.ipynb files) under the root, or under a folder of it.
    #[tool(output_schema = schema_for_output::<NotebookList>())]
    async fn list_notebooks(
        &self,
        Parameters(a): Parameters<ListNotebooksArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(match self.engine.list_notebooks(a.dir, 1000).await {
            Ok(list) => {
                let text = if list.is_empty() {
                    "no notebooks under the root".to_string()
                } else {
                    list.iter()
                        .map(|(p, _, _)| p.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let notebooks = list
                    .into_iter()
                    .map(|(notebook, bytes, modified)| NotebookEntry {
                        notebook,
                        bytes,
                        modified,
                    })
                    .collect();
                ok(&NotebookList { notebooks }, text, vec![])
            }
            Err(e) => tool_error(e),
        })
    }
}
