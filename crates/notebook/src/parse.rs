//! Reading `.ipynb` bytes into a [`Notebook`], following Python nbformat 5.11:
//! `nbformat.reader.reads` (JSON, version check), `v4.nbjson.JSONReader.to_notebook`
//! (`rwbase.rejoin_lines`, `strip_transient`), `v4.convert.upgrade` (cell ids for
//! minor < 5) and `validator._normalize(repair_duplicate_cell_ids=True)` (missing and
//! duplicate ids). Where Python would only log a schema error, we fill in the schema's
//! defaults and say so in [`Loaded::upgraded`]; where the document cannot be represented
//! we fail with [`NotebookError::Invalid`].

use crate::document::{is_valid_cell_id, TRANSIENT_CELL_KEY, TRANSIENT_NOTEBOOK_KEYS};
use crate::error::NotebookError;
use crate::lines;
use crate::{Cell, CellType, Loaded, Notebook};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// See [`Notebook::parse`].
pub(crate) fn parse(bytes: &[u8]) -> Result<Loaded, NotebookError> {
    let mut notes = Vec::new();
    let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => {
            notes.push("removed the UTF-8 byte-order mark at the start of the file".to_string());
            rest
        }
        None => bytes,
    };
    let protected = crate::nonfinite::protect(bytes);
    let value: Value =
        serde_json::from_slice(protected.as_deref().unwrap_or(bytes)).map_err(|e| {
            NotebookError::InvalidJson {
                line: e.line(),
                column: e.column(),
                message: strip_position(&e.to_string()),
            }
        })?;
    let Value::Object(mut top) = value else {
        return Err(NotebookError::UnsupportedVersion {
            found: format!("the file holds {}, not a notebook object", kind(&value)),
        });
    };
    check_major(top.remove("nbformat"))?;
    let minor = match top.remove("nbformat_minor") {
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or_default(),
        None => {
            return Err(NotebookError::invalid(
                "the notebook has no `nbformat_minor`; add `\"nbformat_minor\": 4` \
                 (or the minor version the file was written with)",
            ))
        }
        Some(other) => {
            return Err(NotebookError::invalid(format!(
                "`nbformat_minor` must be a non-negative integer, found {}",
                kind(&other)
            )))
        }
    };
    let mut defaults = Vec::new();
    let mut metadata = take_object(&mut top, "metadata", "the notebook", &mut defaults)?;
    for key in TRANSIENT_NOTEBOOK_KEYS {
        metadata.remove(key);
    }
    let raw_cells = match top.remove("cells") {
        Some(Value::Array(cells)) => cells,
        None => {
            return Err(NotebookError::invalid(
                "the notebook has no `cells` list; an nbformat v4 notebook needs \
                 `\"cells\": [...]` at the top level",
            ))
        }
        Some(other) => {
            return Err(NotebookError::invalid(format!(
                "`cells` must be a list, found {}",
                kind(&other)
            )))
        }
    };
    let mut cells = Vec::with_capacity(raw_cells.len());
    let mut raw_ids = Vec::with_capacity(raw_cells.len());
    for (index, raw) in raw_cells.into_iter().enumerate() {
        let (cell, raw_id) = parse_cell(index, raw, &mut defaults)?;
        cells.push(cell);
        raw_ids.push(raw_id);
    }
    if !defaults.is_empty() {
        notes.push(format!(
            "filled in missing required fields with nbformat defaults: {}",
            defaults.join(", ")
        ));
    }
    let assigned = assign_ids(&mut cells, raw_ids, &mut notes);
    let nbformat_minor = if minor < 5 {
        notes.push(match assigned.total {
            0 => format!("upgraded nbformat 4.{minor} -> 4.5 (the cells already had ids)"),
            n => format!("added cell ids to {n} cells (nbformat 4.{minor} -> 4.5)"),
        });
        5
    } else {
        if assigned.missing > 0 {
            notes.push(format!(
                "assigned new ids to {} cells that had none",
                assigned.missing
            ));
        }
        minor
    };
    let notebook = Notebook {
        nbformat: 4,
        nbformat_minor,
        metadata,
        cells,
        extra: top,
    };
    Ok(Loaded {
        notebook,
        upgraded: notes,
    })
}

/// serde_json appends " at line L column C", which our message already carries.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

fn check_major(major: Option<Value>) -> Result<(), NotebookError> {
    let found = match major {
        Some(Value::Number(n)) if n.as_u64() == Some(4) => return Ok(()),
        Some(Value::Number(n)) => format!("nbformat {n}"),
        None => "the file has no `nbformat` version field".to_string(),
        Some(other) => format!("`nbformat` is {}, not a version number", kind(&other)),
    };
    Err(NotebookError::UnsupportedVersion { found })
}

/// Removes `key` from `map` as an object; a missing key gives `{}` and is recorded in
/// `defaults`, any other type is an error naming `owner`.
fn take_object(
    map: &mut Map<String, Value>,
    key: &str,
    owner: &str,
    defaults: &mut Vec<String>,
) -> Result<Map<String, Value>, NotebookError> {
    match map.remove(key) {
        Some(Value::Object(object)) => Ok(object),
        None => {
            defaults.push(format!("{owner} `{key}`"));
            Ok(Map::new())
        }
        Some(other) => Err(NotebookError::invalid(format!(
            "{owner}: `{key}` must be an object, found {}; replace it with {{}}",
            kind(&other)
        ))),
    }
}

/// What a cell's `id` key held before repair.
enum RawId {
    Valid(String),
    Missing,
    Invalid(String),
}

fn parse_cell(
    index: usize,
    raw: Value,
    defaults: &mut Vec<String>,
) -> Result<(Cell, RawId), NotebookError> {
    let owner = format!("cell {index}");
    let Value::Object(mut map) = raw else {
        return Err(NotebookError::invalid(format!(
            "{owner} is {}, not an object; every entry of `cells` must be a cell object",
            kind(&raw)
        )));
    };
    let cell_type = match map.remove("cell_type") {
        Some(Value::String(name)) => CellType::from_name(&name).ok_or_else(|| {
            NotebookError::invalid(format!(
                "{owner} has unknown cell_type {name:?}; nbformat v4 allows only \"code\", \
                 \"markdown\" and \"raw\" (\"heading\" cells are nbformat v3: convert the file \
                 with `jupyter nbconvert --to notebook --nbformat 4`)"
            ))
        })?,
        None => {
            return Err(NotebookError::invalid(format!(
                "{owner} has no `cell_type`; set it to \"code\", \"markdown\" or \"raw\""
            )))
        }
        Some(other) => {
            return Err(NotebookError::invalid(format!(
                "{owner}: `cell_type` must be a string, found {}",
                kind(&other)
            )))
        }
    };
    let raw_id = match map.remove("id") {
        Some(Value::String(id)) if is_valid_cell_id(&id) => RawId::Valid(id),
        Some(Value::String(id)) => RawId::Invalid(format!("{id:?}")),
        Some(other) => RawId::Invalid(other.to_string()),
        None => RawId::Missing,
    };
    let source = match map.remove("source") {
        Some(Value::String(s)) => s,
        Some(list @ Value::Array(_)) => lines::join_strings(&list).ok_or_else(|| {
            NotebookError::invalid(format!(
                "{owner}: `source` is a list with non-string entries; it must be a string or \
                 a list of strings"
            ))
        })?,
        None => {
            defaults.push(format!("{owner} `source`"));
            String::new()
        }
        Some(other) => {
            return Err(NotebookError::invalid(format!(
                "{owner}: `source` must be a string or a list of strings, found {}",
                kind(&other)
            )))
        }
    };
    let mut metadata = take_object(&mut map, "metadata", &owner, defaults)?;
    metadata.remove(TRANSIENT_CELL_KEY);
    let mut cell = Cell::new(cell_type, source, String::new());
    cell.metadata = metadata;
    if cell_type == CellType::Code {
        cell.outputs = take_outputs(&mut map, &owner, defaults)?;
        cell.execution_count = take_execution_count(&mut map, &owner, defaults)?;
    }
    lines::for_each_attachment(map.get_mut("attachments"), lines::rejoin_mimebundle);
    cell.extra = map;
    Ok((cell, raw_id))
}

fn take_outputs(
    map: &mut Map<String, Value>,
    owner: &str,
    defaults: &mut Vec<String>,
) -> Result<Vec<Value>, NotebookError> {
    let outputs = match map.remove("outputs") {
        Some(Value::Array(outputs)) => outputs,
        None => {
            defaults.push(format!("{owner} `outputs`"));
            return Ok(Vec::new());
        }
        Some(other) => {
            return Err(NotebookError::invalid(format!(
                "{owner}: `outputs` must be a list, found {}; replace it with []",
                kind(&other)
            )))
        }
    };
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, output)| match output {
            Value::Object(mut output) => {
                lines::rejoin_output(&mut output);
                Ok(Value::Object(output))
            }
            other => Err(NotebookError::invalid(format!(
                "{owner}: output {i} is {}, not an output object; remove it or clear the \
                 cell's outputs",
                kind(&other)
            ))),
        })
        .collect()
}

fn take_execution_count(
    map: &mut Map<String, Value>,
    owner: &str,
    defaults: &mut Vec<String>,
) -> Result<Option<i64>, NotebookError> {
    match map.remove("execution_count") {
        Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        None => {
            defaults.push(format!("{owner} `execution_count`"));
            Ok(None)
        }
        Some(other) => Err(NotebookError::invalid(format!(
            "{owner}: `execution_count` must be an integer or null, found {other}; \
             replace it with null"
        ))),
    }
}

/// How many ids [`assign_ids`] had to create, by reason.
#[derive(Default)]
struct Assigned {
    missing: usize,
    total: usize,
}

/// Gives every cell a valid id unique in the notebook: valid ids are kept (the first of
/// repeated ids keeps it, as `validator._normalize` does), the others get fresh ids that
/// collide with no id in the file. Notes describe invalid and duplicate ids.
fn assign_ids(cells: &mut [Cell], raw_ids: Vec<RawId>, notes: &mut Vec<String>) -> Assigned {
    let mut taken: HashSet<String> = raw_ids
        .iter()
        .filter_map(|raw| match raw {
            RawId::Valid(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let mut kept = HashSet::new();
    let mut assigned = Assigned::default();
    for (index, (cell, raw)) in cells.iter_mut().zip(raw_ids).enumerate() {
        let problem = match raw {
            RawId::Valid(id) if kept.insert(id.clone()) => {
                cell.id = id;
                continue;
            }
            RawId::Valid(id) => Some(format!("repeats the id {id:?} of an earlier cell")),
            RawId::Invalid(shown) => Some(format!(
                "has the id {shown}, which is not a valid nbformat cell id \
                 (1-64 letters, digits, '-' or '_')"
            )),
            RawId::Missing => None,
        };
        let id = derived_id(index, cell, &taken);
        taken.insert(id.clone());
        match problem {
            Some(problem) => {
                notes.push(format!("cell {index} {problem}; gave it the new id {id:?}"))
            }
            None => assigned.missing += 1,
        }
        assigned.total += 1;
        cell.id = id;
    }
    assigned
}

/// A cell id derived from the cell's position, type and source, so that reading the same
/// un-upgraded file twice gives the same ids (an agent can use an id from one read in the
/// next call before the upgraded file was ever written). Salted until unused.
fn derived_id(index: usize, cell: &Cell, taken: &HashSet<String>) -> String {
    use sha2::{Digest, Sha256};
    (0u32..)
        .map(|salt| {
            let mut h = Sha256::new();
            h.update(format!("{index}\0{}\0{salt}\0", cell.cell_type.as_str()));
            h.update(cell.source.as_bytes());
            h.finalize()
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .find(|id| !taken.contains(id))
        .unwrap_or_default()
}

/// "an array", "a string", ... for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
