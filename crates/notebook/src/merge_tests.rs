//! Unit tests of `merge.rs`.

use super::merge;
use crate::{Cell, CellType, Notebook};
use serde_json::json;

/// A notebook of code cells given as `(id, source)`.
fn nb(cells: &[(&str, &str)]) -> Notebook {
    let mut notebook = Notebook::new_empty();
    notebook.cells = cells
        .iter()
        .map(|(id, source)| Cell::new(CellType::Code, *source, id.to_string()))
        .collect();
    notebook
}

/// Merging must give exactly the `(id, source)` cells of `expected`, and notes containing
/// each of `notes` (no notes at all when `notes` is empty).
fn check(
    base: &Notebook,
    ours: &Notebook,
    theirs: &Notebook,
    expected: &[(&str, &str)],
    notes: &[&str],
) -> Notebook {
    let (merged, got) = merge(base, ours, theirs);
    let cells: Vec<(&str, &str)> = merged
        .cells
        .iter()
        .map(|c| (c.id.as_str(), c.source.as_str()))
        .collect();
    assert_eq!(cells, expected);
    let all = got.join("\n");
    assert_eq!(got.is_empty(), notes.is_empty(), "notes: {all:?}");
    for note in notes {
        assert!(all.contains(note), "notes {all:?} should contain {note:?}");
    }
    merged
}

#[test]
fn one_sided_changes_are_taken() {
    let base = nb(&[("a", "1"), ("b", "2")]);
    check(&base, &base, &base, &[("a", "1"), ("b", "2")], &[]);
    check(
        &base,
        &nb(&[("a", "1x"), ("b", "2")]),
        &nb(&[("a", "1"), ("b", "2y")]),
        &[("a", "1x"), ("b", "2y")],
        &[],
    );
    check(
        &base,
        &nb(&[("a", "same"), ("b", "2")]),
        &nb(&[("a", "same"), ("b", "2")]),
        &[("a", "same"), ("b", "2")],
        &[],
    );
}

#[test]
fn human_source_edit_survives_our_output_write() {
    let base = nb(&[("a", "print(1)"), ("b", "x")]);
    let mut ours = base.clone();
    ours.cells[0].outputs = vec![json!({"output_type": "stream", "name": "stdout", "text": "1\n"})];
    ours.cells[0].execution_count = Some(1);
    ours.cells[1].source = "agent edit".into();
    let theirs = nb(&[("a", "print(2)"), ("b", "human edit")]);
    let merged = check(
        &base,
        &ours,
        &theirs,
        &[("a", "print(2)"), ("b", "human edit")],
        &["cell b: source edited on disk and by the agent; kept the on-disk source"],
    );
    assert_eq!(merged.cells[0].outputs, ours.cells[0].outputs);
    assert_eq!(merged.cells[0].execution_count, Some(1));
}

#[test]
fn outputs_conflict_keeps_the_agents_outputs() {
    let base = nb(&[("a", "1")]);
    let (mut ours, mut theirs) = (base.clone(), base.clone());
    ours.cells[0].execution_count = Some(2);
    theirs.cells[0].execution_count = Some(7);
    let merged = check(
        &base,
        &ours,
        &theirs,
        &[("a", "1")],
        &["cell a: outputs changed on disk and by the agent; kept the agent's outputs"],
    );
    assert_eq!(merged.cells[0].execution_count, Some(2));
}

#[test]
fn our_insert_survives_their_reordering() {
    let base = nb(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let ours = nb(&[("a", "1"), ("new", "n"), ("b", "2"), ("c", "3")]);
    let theirs = nb(&[("c", "3"), ("a", "1"), ("b", "2")]);
    check(
        &base,
        &ours,
        &theirs,
        &[("c", "3"), ("a", "1"), ("new", "n"), ("b", "2")],
        &[],
    );
    let first = nb(&[("new", "n"), ("a", "1"), ("b", "2"), ("c", "3")]);
    check(
        &base,
        &first,
        &theirs,
        &[("new", "n"), ("c", "3"), ("a", "1"), ("b", "2")],
        &[],
    );
    let after_deleted = nb(&[("a", "1"), ("b", "2"), ("new", "n"), ("c", "3")]);
    check(
        &base,
        &after_deleted,
        &nb(&[("c", "3")]),
        &[("c", "3"), ("new", "n")],
        &[],
    );
}

#[test]
fn our_reordering_is_kept_when_they_did_not_reorder() {
    let base = nb(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let ours = nb(&[("c", "3"), ("a", "1"), ("b", "2")]);
    let theirs = nb(&[("a", "1"), ("t", "t"), ("b", "2"), ("c", "3x")]);
    check(
        &base,
        &ours,
        &theirs,
        &[("c", "3x"), ("a", "1"), ("t", "t"), ("b", "2")],
        &[],
    );
}

#[test]
fn deletions() {
    let base = nb(&[("a", "1"), ("b", "2"), ("c", "3")]);
    // We delete b, they leave it: deleted.
    check(
        &base,
        &nb(&[("a", "1"), ("c", "3")]),
        &base,
        &[("a", "1"), ("c", "3")],
        &[],
    );
    // We delete b, they edit it: kept.
    check(
        &base,
        &nb(&[("a", "1"), ("c", "3")]),
        &nb(&[("a", "1"), ("b", "2!"), ("c", "3")]),
        &[("a", "1"), ("b", "2!"), ("c", "3")],
        &["cell b: deleted by the agent but edited on disk; kept the on-disk cell"],
    );
    // They delete b: stays deleted, with a note if we had changed it.
    check(
        &base,
        &base,
        &nb(&[("a", "1"), ("c", "3")]),
        &[("a", "1"), ("c", "3")],
        &[],
    );
    check(
        &base,
        &nb(&[("a", "1"), ("b", "2?"), ("c", "3")]),
        &nb(&[("a", "1"), ("c", "3")]),
        &[("a", "1"), ("c", "3")],
        &["cell b: deleted on disk but changed by the agent; left it deleted"],
    );
}

#[test]
fn metadata_merges_key_by_key() {
    let mut base = nb(&[("a", "1")]);
    base.metadata
        .insert("kernelspec".into(), json!({"name": "python3"}));
    base.cells[0].metadata.insert("tags".into(), json!([]));
    let (mut ours, mut theirs) = (base.clone(), base.clone());
    ours.cells[0]
        .metadata
        .insert("tags".into(), json!(["agent"]));
    ours.cells[0]
        .metadata
        .insert("scrolled".into(), json!(true));
    theirs.cells[0]
        .metadata
        .insert("tags".into(), json!(["human"]));
    theirs.cells[0]
        .metadata
        .insert("collapsed".into(), json!(true));
    ours.metadata
        .insert("kernelspec".into(), json!({"name": "julia"}));
    theirs
        .metadata
        .insert("kernelspec".into(), json!({"name": "ir"}));
    theirs.metadata.insert("title".into(), json!("T"));
    ours.cells[0].cell_type = CellType::Markdown;
    theirs.cells[0].cell_type = CellType::Raw;
    let merged = check(
        &base,
        &ours,
        &theirs,
        &[("a", "1")],
        &[
            "cell a: metadata `tags` changed on disk and by the agent; kept the on-disk value",
            "notebook metadata `kernelspec` changed on disk and by the agent",
            "cell a: cell type changed on disk (raw) and by the agent (markdown); kept the on-disk type",
        ],
    );
    let meta = &merged.cells[0].metadata;
    assert_eq!(meta.get("tags"), Some(&json!(["human"])));
    assert_eq!(meta.get("scrolled"), Some(&json!(true)));
    assert_eq!(meta.get("collapsed"), Some(&json!(true)));
    assert_eq!(
        merged.metadata.get("kernelspec"),
        Some(&json!({"name": "ir"}))
    );
    assert_eq!(merged.metadata.get("title"), Some(&json!("T")));
    assert_eq!(merged.cells[0].cell_type, CellType::Raw);
}

#[test]
fn both_inserting_the_same_id_merges_against_nothing() {
    let base = nb(&[]);
    let mut ours = nb(&[("x", "same")]);
    ours.cells[0].metadata.insert("agent".into(), json!(1));
    let theirs = nb(&[("x", "same")]);
    let merged = check(&base, &ours, &theirs, &[("x", "same")], &[]);
    assert_eq!(merged.cells[0].metadata.get("agent"), Some(&json!(1)));
    check(
        &base,
        &nb(&[("x", "a")]),
        &nb(&[("x", "b")]),
        &[("x", "b")],
        &["cell x: source edited"],
    );
}
