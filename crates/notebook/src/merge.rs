//! Three-way merge of notebooks by cell id, used when the file changed on disk (a human
//! edited it in Jupyter, say) while the agent was changing its own copy.
//!
//! `base` is the version both sides started from, `ours` the agent's version, `theirs` the
//! one now on disk. The rule for everything is the usual three-way one: a value changed on
//! only one side takes that side's value; when both sides changed it differently the human
//! wins (`theirs`), except for a code cell's outputs and execution count, where the agent's
//! freshly produced outputs win. Cell `metadata`, cell `extra` keys and the notebook's
//! `metadata` and `extra` are merged key by key with the same rule.
//!
//! Cell order follows `theirs`, unless `theirs` kept the base order and `ours` reordered,
//! in which case it follows `ours`. Cells present only on the other side (inserted there,
//! or kept because of the deletion rules) are placed right after their nearest preceding
//! cell on that side, or at their index there if no preceding cell survived.

use crate::{Cell, Notebook};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// Merges `ours` and `theirs`, both derived from `base`, by cell id. Returns the merged
/// notebook and one plain-words note per conflict or deletion decision (empty when the two
/// sides did not touch the same things). Never fails.
///
/// Deletions: a cell `ours` deleted stays deleted unless `theirs` changed it (then it is
/// kept, with a note); a cell `theirs` deleted stays deleted (with a note if `ours` had
/// changed it). Both sides inserting a cell with the same id is merged like a conflict.
pub fn merge(base: &Notebook, ours: &Notebook, theirs: &Notebook) -> (Notebook, Vec<String>) {
    let mut notes = Vec::new();
    let mut resolved = resolve_cells(base, ours, theirs, &mut notes);

    let (skeleton, other) = if !reordered(base, theirs) && reordered(base, ours) {
        (ours, theirs)
    } else {
        (theirs, ours)
    };
    let mut order: Vec<&str> = skeleton
        .cells
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| resolved.contains_key(*id))
        .collect();
    for (index, cell) in other.cells.iter().enumerate() {
        let id = cell.id.as_str();
        if !resolved.contains_key(id) || order.contains(&id) {
            continue;
        }
        let after = other.cells[..index]
            .iter()
            .rev()
            .find_map(|prev| order.iter().position(|placed| *placed == prev.id));
        let at = after.map_or(index.min(order.len()), |p| p + 1);
        order.insert(at, id);
    }

    let (metadata, conflicts) = merge_map(&base.metadata, &ours.metadata, &theirs.metadata);
    note_keys(&mut notes, "notebook metadata", &conflicts);
    let (extra, conflicts) = merge_map(&base.extra, &ours.extra, &theirs.extra);
    note_keys(&mut notes, "notebook field", &conflicts);

    let cells = order.iter().filter_map(|id| resolved.remove(*id)).collect();
    let merged = Notebook {
        nbformat: theirs.nbformat.max(ours.nbformat),
        nbformat_minor: theirs.nbformat_minor.max(ours.nbformat_minor),
        metadata,
        cells,
        extra,
    };
    (merged, notes)
}

/// The merged content of every surviving cell, keyed by id.
fn resolve_cells(
    base: &Notebook,
    ours: &Notebook,
    theirs: &Notebook,
    notes: &mut Vec<String>,
) -> HashMap<String, Cell> {
    let by_id = |nb: &Notebook| -> HashMap<String, Cell> {
        nb.cells.iter().map(|c| (c.id.clone(), c.clone())).collect()
    };
    let (b, o, t) = (by_id(base), by_id(ours), by_id(theirs));
    let mut seen = HashSet::new();
    let all_ids = theirs.cells.iter().chain(&ours.cells).chain(&base.cells);
    let mut resolved = HashMap::new();
    for id in all_ids.map(|c| c.id.as_str()) {
        if !seen.insert(id) {
            continue;
        }
        let cell = match (b.get(id), o.get(id), t.get(id)) {
            (base, Some(o), Some(t)) => Some(merge_cell(base, o, t, notes)),
            (Some(b), Some(o), None) => {
                if o != b {
                    notes.push(format!(
                        "cell {id}: deleted on disk but changed by the agent; left it deleted"
                    ));
                }
                None
            }
            (Some(b), None, Some(t)) if t != b => {
                notes.push(format!(
                    "cell {id}: deleted by the agent but edited on disk; kept the on-disk cell"
                ));
                Some(t.clone())
            }
            (Some(_), None, Some(_)) => None,
            (None, Some(o), None) => Some(o.clone()),
            (None, None, Some(t)) => Some(t.clone()),
            (_, None, None) => None,
        };
        if let Some(cell) = cell {
            resolved.insert(id.to_string(), cell);
        }
    }
    resolved
}

/// Whether `side` changed the relative order of the cells it shares with `base`.
fn reordered(base: &Notebook, side: &Notebook) -> bool {
    let base_ids: HashSet<&str> = base.cells.iter().map(|c| c.id.as_str()).collect();
    let side_ids: HashSet<&str> = side.cells.iter().map(|c| c.id.as_str()).collect();
    let shared_in_base = base
        .cells
        .iter()
        .filter(|c| side_ids.contains(c.id.as_str()));
    let shared_in_side = side
        .cells
        .iter()
        .filter(|c| base_ids.contains(c.id.as_str()));
    !shared_in_base
        .map(|c| &c.id)
        .eq(shared_in_side.map(|c| &c.id))
}

/// Which side wins when both changed a value differently.
#[derive(Clone, Copy)]
enum Winner {
    Ours,
    Theirs,
}

/// The three-way choice for one value; the flag is true on a conflict.
fn pick<'a, T: PartialEq + ?Sized>(
    base: Option<&T>,
    ours: &'a T,
    theirs: &'a T,
    winner: Winner,
) -> (&'a T, bool) {
    if ours == theirs || base == Some(ours) {
        (theirs, false)
    } else if base == Some(theirs) {
        (ours, false)
    } else {
        match winner {
            Winner::Ours => (ours, true),
            Winner::Theirs => (theirs, true),
        }
    }
}

fn merge_cell(base: Option<&Cell>, ours: &Cell, theirs: &Cell, notes: &mut Vec<String>) -> Cell {
    let id = &theirs.id;
    let (cell_type, conflict) = pick(
        base.map(|b| &b.cell_type),
        &ours.cell_type,
        &theirs.cell_type,
        Winner::Theirs,
    );
    if conflict {
        notes.push(format!(
            "cell {id}: cell type changed on disk ({}) and by the agent ({}); kept the on-disk \
             type",
            theirs.cell_type, ours.cell_type
        ));
    }
    let (source, conflict) = pick(
        base.map(|b| b.source.as_str()),
        ours.source.as_str(),
        theirs.source.as_str(),
        Winner::Theirs,
    );
    if conflict {
        notes.push(format!(
            "cell {id}: source edited on disk and by the agent; kept the on-disk source"
        ));
    }
    let run = |c: &Cell| (c.outputs.clone(), c.execution_count);
    let base_run = base.map(run);
    let (ours_run, theirs_run) = (run(ours), run(theirs));
    let ((outputs, execution_count), conflict) =
        pick(base_run.as_ref(), &ours_run, &theirs_run, Winner::Ours);
    if conflict {
        notes.push(format!(
            "cell {id}: outputs changed on disk and by the agent; kept the agent's outputs"
        ));
    }
    let empty = Map::new();
    let base_metadata = base.map_or(&empty, |b| &b.metadata);
    let (metadata, conflicts) = merge_map(base_metadata, &ours.metadata, &theirs.metadata);
    note_keys(notes, &format!("cell {id}: metadata"), &conflicts);
    let base_extra = base.map_or(&empty, |b| &b.extra);
    let (extra, conflicts) = merge_map(base_extra, &ours.extra, &theirs.extra);
    note_keys(notes, &format!("cell {id}: field"), &conflicts);
    Cell {
        id: id.clone(),
        cell_type: *cell_type,
        source: source.to_string(),
        metadata,
        execution_count: *execution_count,
        outputs: outputs.clone(),
        extra,
    }
}

/// Key-wise three-way merge of JSON objects, the on-disk side winning conflicts (a key
/// deleted on one side counts as a change to "absent"; a cell inserted on both sides merges
/// against an empty base). Returns the merged map and the
/// conflicting keys. Key order: `theirs`, then keys only `ours` has.
fn merge_map(
    base: &Map<String, Value>,
    ours: &Map<String, Value>,
    theirs: &Map<String, Value>,
) -> (Map<String, Value>, Vec<String>) {
    let mut merged = Map::new();
    let mut conflicts = Vec::new();
    let keys = theirs
        .keys()
        .chain(ours.keys().filter(|k| !theirs.contains_key(*k)));
    let keys: Vec<&String> = keys.chain(base.keys()).collect();
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(key) {
            continue;
        }
        let (base_value, ours_value, theirs_value) =
            (base.get(key), ours.get(key), theirs.get(key));
        let (value, conflict) = pick(
            Some(&base_value),
            &ours_value,
            &theirs_value,
            Winner::Theirs,
        );
        if conflict {
            conflicts.push(key.clone());
        }
        if let Some(value) = value {
            merged.insert(key.clone(), (*value).clone());
        }
    }
    (merged, conflicts)
}

fn note_keys(notes: &mut Vec<String>, what: &str, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    notes.push(format!(
        "{what} {} changed on disk and by the agent; kept the on-disk {}",
        list.join(", "),
        if keys.len() == 1 { "value" } else { "values" }
    ));
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
