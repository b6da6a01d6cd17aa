//! The in-memory nbformat v4 document: [`Notebook`], [`Cell`], [`CellType`], [`Loaded`].
//!
//! The model is lossless: every key of the file that has no typed field is kept verbatim in
//! an `extra` map, and MIME bundles are kept as the JSON values they were. Only the
//! transformations Python nbformat itself applies are made: multi-line strings are joined in
//! memory and split on write (`nbformat/v4/rwbase.py`), and the transient keys
//! `rwbase.strip_transient` removes are dropped. Parsing lives in `parse.rs`, the
//! Python-compatible JSON layout in `pyjson.rs`.

use crate::error::NotebookError;
use crate::lines;
use crate::{parse, pyjson};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

/// Notebook-level metadata keys that `rwbase.strip_transient` removes on read and write.
pub(crate) const TRANSIENT_NOTEBOOK_KEYS: [&str; 3] =
    ["orig_nbformat", "orig_nbformat_minor", "signature"];
/// Cell-level metadata key that `rwbase.strip_transient` removes on read and write.
pub(crate) const TRANSIENT_CELL_KEY: &str = "trusted";

/// The three nbformat v4 cell types. Serialises (serde and [`fmt::Display`]) as `"code"`,
/// `"markdown"`, `"raw"`, the values of the `cell_type` key in nbformat v4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellType {
    /// A code cell: has `execution_count` and `outputs`.
    Code,
    /// A markdown cell.
    Markdown,
    /// A raw cell (passed through by nbconvert).
    Raw,
}

impl CellType {
    /// The nbformat name: `"code"`, `"markdown"` or `"raw"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CellType::Code => "code",
            CellType::Markdown => "markdown",
            CellType::Raw => "raw",
        }
    }

    /// The inverse of [`CellType::as_str`]; `None` for any other name (e.g. v3's "heading").
    pub fn from_name(name: &str) -> Option<CellType> {
        match name {
            "code" => Some(CellType::Code),
            "markdown" => Some(CellType::Markdown),
            "raw" => Some(CellType::Raw),
            _ => None,
        }
    }
}

impl fmt::Display for CellType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One nbformat v4 cell.
///
/// `source` is one string in memory (a list of lines on disk). `execution_count` and
/// `outputs` only mean something for [`CellType::Code`]; they are not written for other
/// types. Output dicts are kept as given except that multi-line strings are joined (see
/// `lines.rs`). `extra` holds every other key verbatim, e.g. `attachments` (whose bundles
/// are joined/split like outputs, as nbformat does).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The nbformat 4.5 cell id: 1-64 characters of `[a-zA-Z0-9-_]`, unique in the notebook.
    pub id: String,
    /// `cell_type`.
    pub cell_type: CellType,
    /// `source`, joined into one string.
    pub source: String,
    /// `metadata` (without the transient `trusted` key).
    pub metadata: Map<String, Value>,
    /// `execution_count` of a code cell; `None` is written as `null`. Ignored for other types.
    pub execution_count: Option<i64>,
    /// `outputs` of a code cell: nbformat output dicts. Ignored for other types.
    pub outputs: Vec<Value>,
    /// Every other key of the cell, verbatim.
    pub extra: Map<String, Value>,
}

impl Cell {
    /// A new cell with empty metadata, no outputs, no execution count and no extra keys.
    /// The caller chooses the id (see [`Notebook::new_cell_id`]).
    pub fn new(cell_type: CellType, source: impl Into<String>, id: String) -> Cell {
        Cell {
            id,
            cell_type,
            source: source.into(),
            metadata: Map::new(),
            execution_count: None,
            outputs: Vec::new(),
            extra: Map::new(),
        }
    }

    /// The string entries of `metadata.tags` (the nbformat tag list), in order; non-string
    /// entries and a missing or non-list `tags` are ignored.
    pub fn tags(&self) -> Vec<String> {
        match self.metadata.get("tags") {
            Some(Value::Array(tags)) => tags
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The on-disk form of this cell, as `rwbase.split_lines` leaves it.
    fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        map.insert("id".into(), Value::String(self.id.clone()));
        map.insert(
            "cell_type".into(),
            Value::String(self.cell_type.to_string()),
        );
        map.insert(
            "source".into(),
            Value::Array(lines::split_keep_ends(&self.source)),
        );
        let mut metadata = self.metadata.clone();
        metadata.remove(TRANSIENT_CELL_KEY);
        map.insert("metadata".into(), Value::Object(metadata));
        lines::for_each_attachment(map.get_mut("attachments"), lines::split_mimebundle);
        if self.cell_type == CellType::Code {
            map.insert("execution_count".into(), self.execution_count.into());
            let outputs = self.outputs.iter().cloned().map(|mut output| {
                if let Value::Object(output) = &mut output {
                    lines::split_output(output);
                }
                output
            });
            map.insert("outputs".into(), Value::Array(outputs.collect()));
        }
        Value::Object(map)
    }
}

/// An nbformat v4 notebook document.
#[derive(Debug, Clone, PartialEq)]
pub struct Notebook {
    /// `nbformat`; always 4 for a parsed notebook.
    pub nbformat: u64,
    /// `nbformat_minor`; at least 5 after [`Notebook::parse`] (cell ids exist).
    pub nbformat_minor: u64,
    /// Notebook `metadata` (kernelspec, language_info, widgets, ...), without transient keys.
    pub metadata: Map<String, Value>,
    /// The cells, in order.
    pub cells: Vec<Cell>,
    /// Every other top-level key, verbatim.
    pub extra: Map<String, Value>,
}

/// A parsed notebook together with what was changed to make it a valid nbformat 4.5
/// document.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The notebook.
    pub notebook: Notebook,
    /// Human-readable notes on repairs and upgrades, e.g.
    /// `"added cell ids to 3 cells (nbformat 4.4 -> 4.5)"`. Empty when nothing changed.
    pub upgraded: Vec<String>,
}

impl Notebook {
    /// An empty nbformat 4.5 notebook: no cells, empty metadata, no extra keys.
    pub fn new_empty() -> Notebook {
        Notebook {
            nbformat: 4,
            nbformat_minor: 5,
            metadata: Map::new(),
            cells: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Parses the bytes of an `.ipynb` file (UTF-8 JSON, an optional byte-order mark is
    /// dropped) and upgrades it to nbformat 4.5 the way Python nbformat's `read` +
    /// `validate` do: cell ids are added (minor < 5) or repaired (missing, invalid or
    /// duplicate ids), missing `metadata`/`outputs`/`execution_count` get their defaults.
    ///
    /// Errors: [`NotebookError::InvalidJson`] for bad JSON,
    /// [`NotebookError::UnsupportedVersion`] if the top level is not an object or
    /// `nbformat` is not 4, [`NotebookError::Invalid`] for structure that cannot be read
    /// (cells not a list, a cell without a known `cell_type`, a `source` that is not a
    /// string or list of strings, ...).
    pub fn parse(bytes: &[u8]) -> Result<Loaded, NotebookError> {
        parse::parse(bytes)
    }

    /// The file contents Python nbformat writes for this notebook (`nbformat.write`):
    /// `json.dumps(indent=1, sort_keys=True, ensure_ascii=False)` of the notebook after
    /// `rwbase.split_lines` and `strip_transient`, followed by one `"\n"`.
    pub fn to_json(&self) -> String {
        let mut map = self.extra.clone();
        let mut metadata = self.metadata.clone();
        for key in TRANSIENT_NOTEBOOK_KEYS {
            metadata.remove(key);
        }
        map.insert("metadata".into(), Value::Object(metadata));
        map.insert("nbformat".into(), self.nbformat.into());
        map.insert("nbformat_minor".into(), self.nbformat_minor.into());
        let cells = self.cells.iter().map(Cell::to_value).collect();
        map.insert("cells".into(), Value::Array(cells));
        let mut text = pyjson::dumps(&Value::Object(map));
        text.push('\n');
        text
    }

    /// Position of the cell with id `id`, if any.
    pub fn cell_index(&self, id: &str) -> Option<usize> {
        self.cells.iter().position(|cell| cell.id == id)
    }

    /// The ids of all cells, in order.
    pub fn cell_ids(&self) -> Vec<String> {
        self.cells.iter().map(|cell| cell.id.clone()).collect()
    }

    /// A fresh cell id not used by any cell of this notebook, of the form nbformat uses
    /// (`uuid.uuid4().hex[:8]`, from `nbformat.corpus.words.generate_corpus_id`).
    pub fn new_cell_id(&self) -> String {
        let taken: HashSet<&str> = self.cells.iter().map(|c| c.id.as_str()).collect();
        fresh_id(|id| taken.contains(id))
    }
}

/// `uuid4().hex[:8]`, retried while `taken` says the id is in use.
pub(crate) fn fresh_id(taken: impl Fn(&str) -> bool) -> String {
    loop {
        let mut id = uuid::Uuid::new_v4().simple().to_string();
        id.truncate(8);
        if !taken(&id) {
            return id;
        }
    }
}

/// Whether `id` is a valid nbformat 4.5 cell id: `^[a-zA-Z0-9-_]+$`, 1 to 64 characters.
pub(crate) fn is_valid_cell_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(notebook: &Notebook, expected: &str) {
        assert_eq!(notebook.to_json(), expected);
    }

    #[test]
    fn empty_notebook_layout() {
        check(
            &Notebook::new_empty(),
            "{\n \"cells\": [],\n \"metadata\": {},\n \"nbformat\": 4,\n \"nbformat_minor\": 5\n}\n",
        );
    }

    #[test]
    fn cells_are_written_like_nbformat() {
        let mut nb = Notebook::new_empty();
        let mut code = Cell::new(CellType::Code, "a = 1\nprint(a)", "c1".into());
        code.outputs
            .push(json!({"output_type": "stream", "name": "stdout", "text": "1\n"}));
        code.metadata.insert("trusted".into(), json!(true));
        let mut md = Cell::new(CellType::Markdown, "", "m1".into());
        md.execution_count = Some(3);
        md.outputs.push(json!({}));
        nb.cells = vec![code, md];
        nb.metadata.insert("signature".into(), json!("x"));
        check(
            &nb,
            r#"{
 "cells": [
  {
   "cell_type": "code",
   "execution_count": null,
   "id": "c1",
   "metadata": {},
   "outputs": [
    {
     "name": "stdout",
     "output_type": "stream",
     "text": [
      "1\n"
     ]
    }
   ],
   "source": [
    "a = 1\n",
    "print(a)"
   ]
  },
  {
   "cell_type": "markdown",
   "id": "m1",
   "metadata": {},
   "source": []
  }
 ],
 "metadata": {},
 "nbformat": 4,
 "nbformat_minor": 5
}
"#,
        );
    }

    #[test]
    fn ids_tags_and_display() {
        let mut nb = Notebook::new_empty();
        for _ in 0..50 {
            let id = nb.new_cell_id();
            assert!(is_valid_cell_id(&id) && id.len() == 8, "{id}");
            assert_eq!(nb.cell_index(&id), None);
            nb.cells.push(Cell::new(CellType::Raw, "", id));
        }
        assert_eq!(nb.cell_ids().len(), 50);
        assert_eq!(nb.cell_index(&nb.cells[7].id.clone()), Some(7));
        let mut cell = Cell::new(CellType::Code, "", "x".into());
        cell.metadata.insert("tags".into(), json!(["a", 1, "b"]));
        assert_eq!(cell.tags(), ["a", "b"]);
        assert_eq!(CellType::Markdown.to_string(), "markdown");
        assert_eq!(serde_json::to_value(CellType::Raw).ok(), Some(json!("raw")));
        assert_eq!(CellType::from_name("heading"), None);
        for (id, valid) in [("a-B_9", true), ("", false), ("a b", false), ("é", false)] {
            assert_eq!(is_valid_cell_id(id), valid, "{id:?}");
        }
        assert!(!is_valid_cell_id(&"a".repeat(65)));
    }
}
