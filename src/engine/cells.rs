//! Engine operations on notebook files: create, read, and cell edits. Every edit is a
//! read-modify-write with merge-by-cell-id (see `notebook_ops`).

use jmcp_notebook::io::create_new_at;
use jmcp_notebook::{Cell, CellType, Notebook};
use serde_json::json;

use super::notebook_ops::{self, cell_type, index_of, new_cell};
use super::{CellView, Engine, EngineError, EngineResult};
use crate::paths::RootedPath;

/// Where to insert a cell.
#[derive(Debug, Clone)]
pub enum Position {
    /// At the end.
    End,
    /// Before the cell currently at this index (== len appends).
    Index(usize),
    /// Right after this cell.
    After(String),
}

impl Engine {
    /// Creates a notebook (never overwrites). Returns the new cell ids.
    pub async fn create_notebook(
        &self,
        path: &RootedPath,
        kernel_name: Option<&str>,
        cells: Vec<(Option<String>, String)>,
    ) -> EngineResult<Vec<String>> {
        self.refresh_gateway_kernelspecs().await?;
        let spec =
            self.kernelspec_for(path, kernel_name.or(Some(&self.config().default_kernel)))?;
        let mut nb = Notebook::new_empty();
        nb.metadata.insert(
            "kernelspec".into(),
            json!({"display_name": spec.display_name, "language": spec.language, "name": spec.name}),
        );
        nb.metadata
            .insert("language_info".into(), json!({"name": spec.language}));
        for (t, source) in cells {
            let ct = cell_type(t.as_deref())?;
            let cell = new_cell(&nb, ct, &source);
            nb.cells.push(cell);
        }
        let ids = nb.cell_ids();
        let p = path.clone();
        blocking(&path.abs, "creating the notebook", move || {
            let loc = p.loc();
            loc.create_parent_dirs().map_err(|e| {
                EngineError::InvalidArgument(format!(
                    "cannot create the folder of {}: {e}",
                    p.abs.display()
                ))
            })?;
            create_new_at(&loc, &nb).map_err(|e| notebook_ops::create_error(e, &p.rel, &p.abs))
        })
        .await?;
        Ok(ids)
    }

    /// Reads cells `[start, end)` (clamped), with the total count and `metadata.kernelspec`.
    pub async fn read_notebook(
        &self,
        path: &RootedPath,
        start: Option<usize>,
        end: Option<usize>,
    ) -> EngineResult<(Vec<CellView>, usize, Option<serde_json::Value>)> {
        let p = path.clone();
        let nb = blocking(&path.abs, "reading the notebook", move || {
            notebook_ops::load(&p)
        })
        .await?;
        let total = nb.cells.len();
        let start = start.unwrap_or(0).min(total);
        let end = end.unwrap_or(total).clamp(start, total);
        let kernel = nb.metadata.get("kernelspec").cloned();
        let cells = nb.cells[start..end]
            .iter()
            .enumerate()
            .map(|(i, c)| view(c, start + i))
            .collect();
        Ok((cells, total, kernel))
    }

    /// The cell with this id, or the cell at this index.
    pub async fn cell(
        &self,
        path: &RootedPath,
        cell_id: Option<&str>,
        index: Option<usize>,
    ) -> EngineResult<CellView> {
        let p = path.clone();
        let nb = blocking(&path.abs, "reading the notebook", move || {
            notebook_ops::load(&p)
        })
        .await?;
        let i = match (cell_id, index) {
            (Some(id), _) => index_of(&nb, &path.rel, id)?,
            (None, Some(i)) if i < nb.cells.len() => i,
            (None, Some(i)) => {
                return Err(EngineError::IndexOutOfRange {
                    notebook: path.rel.clone(),
                    index: i,
                    len: nb.cells.len(),
                })
            }
            (None, None) => {
                return Err(EngineError::InvalidArgument(
                    "give cell_id (preferred) or index".into(),
                ))
            }
        };
        Ok(view(&nb.cells[i], i))
    }

    /// All cells of the notebook (used by run_all_cells).
    pub async fn all_cells(&self, path: &RootedPath) -> EngineResult<Vec<CellView>> {
        Ok(self.read_notebook(path, None, None).await?.0)
    }

    /// Inserts a cell; returns its id and index.
    pub async fn insert_cell(
        &self,
        path: &RootedPath,
        source: String,
        kind: Option<String>,
        position: Position,
    ) -> EngineResult<(String, usize, Vec<String>)> {
        let ct = cell_type(kind.as_deref())?;
        let rel = path.rel.clone();
        self.edit(path, move |nb| {
            let at = match position {
                Position::End => nb.cells.len(),
                Position::Index(i) if i <= nb.cells.len() => i,
                Position::Index(i) => {
                    return Err(EngineError::IndexOutOfRange {
                        notebook: rel,
                        index: i,
                        len: nb.cells.len(),
                    })
                }
                Position::After(id) => index_of(nb, &rel, &id)? + 1,
            };
            let cell = new_cell(nb, ct, &source);
            let id = cell.id.clone();
            nb.cells.insert(at, cell);
            Ok((id, at))
        })
        .await
        .map(|((id, at), notes)| (id, at, notes))
    }

    /// Replaces a cell's source (outputs of code cells are kept, as JupyterLab does).
    pub async fn edit_cell(
        &self,
        path: &RootedPath,
        cell_id: String,
        source: String,
    ) -> EngineResult<Vec<String>> {
        let rel = path.rel.clone();
        Ok(self
            .edit(path, move |nb| {
                let i = index_of(nb, &rel, &cell_id)?;
                nb.cells[i].source = source;
                Ok(())
            })
            .await?
            .1)
    }

    /// Deletes a cell.
    pub async fn delete_cell(
        &self,
        path: &RootedPath,
        cell_id: String,
    ) -> EngineResult<Vec<String>> {
        let rel = path.rel.clone();
        Ok(self
            .edit(path, move |nb| {
                let i = index_of(nb, &rel, &cell_id)?;
                nb.cells.remove(i);
                Ok(())
            })
            .await?
            .1)
    }

    /// Moves a cell to `index` (its position after the move).
    pub async fn move_cell(
        &self,
        path: &RootedPath,
        cell_id: String,
        index: usize,
    ) -> EngineResult<Vec<String>> {
        let rel = path.rel.clone();
        Ok(self
            .edit(path, move |nb| {
                let from = index_of(nb, &rel, &cell_id)?;
                if index >= nb.cells.len() {
                    return Err(EngineError::IndexOutOfRange {
                        notebook: rel,
                        index,
                        len: nb.cells.len(),
                    });
                }
                let cell = nb.cells.remove(from);
                nb.cells.insert(index, cell);
                Ok(())
            })
            .await?
            .1)
    }

    /// Clears outputs and execution counts of one code cell or of all; returns how many cells
    /// were cleared.
    pub async fn clear_outputs(
        &self,
        path: &RootedPath,
        cell_id: Option<String>,
    ) -> EngineResult<usize> {
        let rel = path.rel.clone();
        Ok(self
            .edit(path, move |nb| {
                let targets: Vec<usize> = match &cell_id {
                    Some(id) => vec![index_of(nb, &rel, id)?],
                    None => (0..nb.cells.len()).collect(),
                };
                let mut n = 0;
                for i in targets {
                    let c: &mut Cell = &mut nb.cells[i];
                    if c.cell_type == CellType::Code {
                        c.outputs.clear();
                        c.execution_count = None;
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await?
            .0)
    }

    /// Notebooks under `dir` (relative to the root), recursively, skipping hidden folders and
    /// checkpoints; at most `limit`.
    pub async fn list_notebooks(
        &self,
        dir: Option<String>,
        limit: usize,
    ) -> EngineResult<Vec<(String, u64, String)>> {
        let root = self.config().root.clone();
        let base = root.path().join(dir.as_deref().unwrap_or(""));
        blocking(&base, "listing notebooks", move || {
            let base = match dir.as_deref() {
                None | Some("") | Some(".") => root.path().to_path_buf(),
                Some(d) => root.resolve(d)?.abs,
            };
            let mut out = Vec::new();
            let mut stack = vec![base];
            while let Some(d) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with('.') {
                        continue;
                    }
                    let Ok(ft) = e.file_type() else { continue };
                    let p = e.path();
                    if ft.is_dir() {
                        stack.push(p);
                    } else if ft.is_file() && name.ends_with(".ipynb") {
                        if let Ok(rel) = p.strip_prefix(root.path()) {
                            let meta = e.metadata().ok();
                            let modified = meta
                                .as_ref()
                                .and_then(|m| m.modified().ok())
                                .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
                                .unwrap_or_default();
                            out.push((
                                rel.to_string_lossy().to_string(),
                                meta.map(|m| m.len()).unwrap_or(0),
                                modified,
                            ));
                        }
                    }
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn edit<R: Send + 'static>(
        &self,
        path: &RootedPath,
        f: impl FnOnce(&mut Notebook) -> EngineResult<R> + Send + 'static,
    ) -> EngineResult<(R, Vec<String>)> {
        let session_lock = self.session(path).file_lock.clone();
        let p = path.clone();
        blocking(&path.abs, "writing the notebook", move || {
            notebook_ops::update(&p, &session_lock, f)
        })
        .await
    }
}

fn view(c: &Cell, index: usize) -> CellView {
    CellView {
        id: c.id.clone(),
        index,
        cell_type: c.cell_type.to_string(),
        source: c.source.clone(),
        execution_count: c.execution_count,
        outputs: c.outputs.clone(),
        tags: c.tags(),
    }
}

async fn blocking<R: Send + 'static>(
    path: &std::path::Path,
    what: &str,
    f: impl FnOnce() -> EngineResult<R> + Send + 'static,
) -> EngineResult<R> {
    notebook_ops::blocking_io(path, what, f).await
}
