//! Unit tests of `parse.rs`: errors, upgrades and repairs.

use crate::{CellType, Notebook, NotebookError};
use serde_json::{json, Value};

fn parse(input: &str) -> Result<crate::Loaded, NotebookError> {
    Notebook::parse(input.as_bytes())
}

/// Parsing `input` must fail with an error whose `Display` contains every `expected` part.
fn check_err(input: &str, expected: &[&str]) {
    let err = match parse(input) {
        Ok(loaded) => panic!("{input} parsed: {loaded:?}"),
        Err(err) => err,
    };
    let text = err.to_string();
    for part in expected {
        assert!(text.contains(part), "{text:?} should contain {part:?}");
    }
}

/// Parsing `input` must succeed; `to_json` must then equal `expected` read as JSON, with
/// the `id` of every cell replaced by "ID" where `expected` says "ID", and the notes must
/// contain each of `notes`.
fn check(input: Value, expected: Value, notes: &[&str]) {
    let loaded = match parse(&input.to_string()) {
        Ok(loaded) => loaded,
        Err(err) => panic!("{input} failed: {err}"),
    };
    let written: Value = serde_json::from_str(&loaded.notebook.to_json()).unwrap_or(Value::Null);
    let mut written = written;
    if let Some(cells) = written["cells"].as_array_mut() {
        for (i, cell) in cells.iter_mut().enumerate() {
            let id = cell["id"].as_str().unwrap_or("").to_string();
            assert!(crate::document::is_valid_cell_id(&id), "cell {i} id {id:?}");
            if expected["cells"][i]["id"] == "ID" {
                cell["id"] = json!("ID");
            }
        }
    }
    assert_eq!(written, expected);
    let all = loaded.upgraded.join("\n");
    for note in notes {
        assert!(all.contains(note), "notes {all:?} should contain {note:?}");
    }
    if notes.is_empty() {
        assert!(loaded.upgraded.is_empty(), "unexpected notes {all:?}");
    }
}

#[test]
fn invalid_json_reports_line_and_column() {
    check_err(
        "{\n \"cells\": [,\n}",
        &["not valid JSON", "line 2, column 12"],
    );
    check_err("", &["not valid JSON", "EOF while parsing"]);
    let err = parse("{\"a\": 1,}").err();
    assert!(
        matches!(err, Some(NotebookError::InvalidJson { line: 1, .. })),
        "{err:?}"
    );
}

#[test]
fn other_versions_are_refused_with_the_conversion_command() {
    let v3 = json!({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []});
    check_err(
        &v3.to_string(),
        &["nbformat 3", "only nbformat v4", "--nbformat 4"],
    );
    check_err(r#"{"nbformat": 5, "cells": []}"#, &["nbformat 5"]);
    check_err(r#"{"cells": []}"#, &["no `nbformat`"]);
    check_err("[1, 2]", &["holds a list, not a notebook object"]);
    check_err(r#"{"nbformat": "4"}"#, &["`nbformat` is a string"]);
    let err = parse(&v3.to_string()).err();
    assert!(
        matches!(err, Some(NotebookError::UnsupportedVersion { .. })),
        "{err:?}"
    );
}

#[test]
fn broken_structure_names_the_cell_and_the_problem() {
    let nb = |cells: Value| {
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}).to_string()
    };
    check_err(
        r#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}"#,
        &["no `cells` list"],
    );
    check_err(&nb(json!({})), &["`cells` must be a list, found an object"]);
    check_err(&nb(json!([{"source": ""}])), &["cell 0 has no `cell_type`"]);
    check_err(
        &nb(json!([{"cell_type": "code", "source": ""}, {"cell_type": "heading", "source": ""}])),
        &[
            "cell 1 has unknown cell_type \"heading\"",
            "\"code\", \"markdown\" and \"raw\"",
        ],
    );
    check_err(
        &nb(json!([{"cell_type": "raw", "source": 3}])),
        &["cell 0: `source` must be a string or a list of strings, found a number"],
    );
    check_err(
        &nb(json!([{"cell_type": "raw", "source": ["a", 1]}])),
        &["cell 0: `source` is a list with non-string entries"],
    );
    check_err(&nb(json!([7])), &["cell 0 is a number, not an object"]);
    check_err(
        &nb(json!([{"cell_type": "code", "source": "", "outputs": {}}])),
        &["cell 0: `outputs` must be a list"],
    );
    check_err(
        &nb(json!([{"cell_type": "code", "source": "", "outputs": [1]}])),
        &["cell 0: output 0 is a number"],
    );
    check_err(
        &nb(json!([{"cell_type": "code", "source": "", "execution_count": "1"}])),
        &["`execution_count` must be an integer or null"],
    );
    check_err(
        &nb(json!([{"cell_type": "markdown", "source": "", "metadata": []}])),
        &["cell 0: `metadata` must be an object"],
    );
    check_err(r#"{"nbformat": 4, "cells": []}"#, &["no `nbformat_minor`"]);
}

#[test]
fn nbformat_4_4_is_upgraded_with_ids() {
    check(
        json!({"nbformat": 4, "nbformat_minor": 4, "metadata": {"orig_nbformat": 3},
               "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# T\n", "x"]},
                         {"cell_type": "code", "metadata": {"trusted": true}, "source": "1",
                          "execution_count": 2, "outputs": []}]}),
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
               "cells": [{"id": "ID", "cell_type": "markdown", "metadata": {}, "source": ["# T\n", "x"]},
                         {"id": "ID", "cell_type": "code", "metadata": {}, "source": ["1"],
                          "execution_count": 2, "outputs": []}]}),
        &["added cell ids to 2 cells (nbformat 4.4 -> 4.5)"],
    );
    check(
        json!({"nbformat": 4, "nbformat_minor": 2, "metadata": {}, "cells": []}),
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}),
        &["upgraded nbformat 4.2 -> 4.5 (the cells already had ids)"],
    );
}

#[test]
fn missing_duplicate_and_invalid_ids_are_repaired() {
    let cell = |id: Value| {
        let mut c = json!({"cell_type": "raw", "metadata": {}, "source": []});
        if !id.is_null() {
            c["id"] = id;
        }
        c
    };
    check(
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
               "cells": [cell(json!("a")), cell(json!("a")), cell(Value::Null), cell(json!("b c")), cell(json!(4))]}),
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
               "cells": [cell(json!("a")), cell(json!("ID")), cell(json!("ID")), cell(json!("ID")), cell(json!("ID"))]}),
        &[
            "cell 1 repeats the id \"a\" of an earlier cell",
            "assigned new ids to 1 cells that had none",
            "cell 3 has the id \"b c\", which is not a valid nbformat cell id",
            "cell 4 has the id 4",
        ],
    );
}

#[test]
fn defaults_are_filled_and_other_types_gain_nothing() {
    check(
        json!({"nbformat": 4, "nbformat_minor": 5,
               "cells": [{"id": "c", "cell_type": "code", "source": "x"},
                         {"id": "m", "cell_type": "markdown", "source": "y"}]}),
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
               "cells": [{"id": "c", "cell_type": "code", "source": ["x"], "metadata": {},
                          "execution_count": null, "outputs": []},
                         {"id": "m", "cell_type": "markdown", "source": ["y"], "metadata": {}}]}),
        &["the notebook `metadata`, cell 0 `metadata`, cell 0 `outputs`, cell 0 `execution_count`, cell 1 `metadata`"],
    );
}

#[test]
fn unknown_keys_attachments_and_numbers_survive() {
    let input = json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": {"y": [1.5, 1e-7]}},
        "future_key": {"a": 1},
        "cells": [{"id": "r", "cell_type": "raw", "metadata": {"format": "text/html"}, "source": "<b>",
                   "attachments": {"a.png": {"image/png": ["iVBO", "Rw=="], "text/plain": "l1\nl2"}},
                   "custom": [1, 2]},
                  {"id": "m", "cell_type": "markdown", "metadata": {}, "source": "", "outputs": []}]});
    let expected = json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": {"y": [1.5, 1e-7]}},
        "future_key": {"a": 1},
        "cells": [{"id": "r", "cell_type": "raw", "metadata": {"format": "text/html"}, "source": ["<b>"],
                   "attachments": {"a.png": {"image/png": "iVBORw==", "text/plain": ["l1\n", "l2"]}},
                   "custom": [1, 2]},
                  {"id": "m", "cell_type": "markdown", "metadata": {}, "source": [], "outputs": []}]});
    check(input.clone(), expected, &[]);
    let loaded = parse(&input.to_string()).ok();
    let nb = loaded.map(|l| l.notebook);
    let cell = nb.as_ref().map(|nb| &nb.cells[0]);
    assert_eq!(cell.map(|c| c.cell_type), Some(CellType::Raw));
    assert_eq!(
        cell.map(|c| c.extra["attachments"]["a.png"]["image/png"].clone()),
        Some(json!("iVBORw=="))
    );
    assert!(nb.is_some_and(|nb| nb.to_json().contains("1e-07")));
}

#[test]
fn byte_order_mark_is_dropped_with_a_note() {
    let text = format!(
        "\u{feff}{}",
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []})
    );
    let loaded = parse(&text).ok();
    assert_eq!(
        loaded.map(|l| l.upgraded),
        Some(vec![
            "removed the UTF-8 byte-order mark at the start of the file".to_string()
        ])
    );
}

#[test]
fn ids_given_to_an_old_file_are_the_same_on_every_read() {
    let old = br#"{"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": null},
        {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": null}]}"#;
    let a = Notebook::parse(old).unwrap().notebook.cell_ids();
    let b = Notebook::parse(old).unwrap().notebook.cell_ids();
    assert_eq!(a, b);
    assert_ne!(
        a[0], a[1],
        "equal sources at different positions get different ids"
    );
}

/// Issue 8 item 13: every number survives a read and a write exactly (Python's `json`
/// keeps `repr(float)`, which round-trips), and Python's bare `NaN`/`Infinity` tokens in
/// metadata or outputs are read and written back as Python writes them.
#[test]
fn floats_and_non_finite_numbers_survive_read_and_write() {
    let text = concat!(
        "{\n \"cells\": [\n  {\n   \"cell_type\": \"code\",\n   \"execution_count\": 1,\n",
        "   \"id\": \"c1\",\n   \"metadata\": {},\n   \"outputs\": [\n    {\n",
        "     \"data\": {\n      \"application/json\": {\n       \"x\": 3.6040260791778564,\n",
        "       \"y\": 0.30000000000000004\n      }\n     },\n     \"metadata\": {},\n",
        "     \"output_type\": \"display_data\"\n    }\n   ],\n   \"source\": []\n  }\n ],\n",
        " \"metadata\": {\n  \"a\": NaN,\n  \"b\": [\n   Infinity,\n   -Infinity,\n",
        "   \"NaN\"\n  ],\n  \"c\": 2.2250738585072014e-308,\n  \"d\": 1.7976931348623157e+308,\n",
        "  \"e\": 123456789.12345679\n },\n",
        " \"nbformat\": 4,\n \"nbformat_minor\": 5\n}\n"
    );
    let loaded = Notebook::parse(text.as_bytes()).expect("a notebook with NaN and exact floats");
    assert_eq!(loaded.notebook.to_json(), text);
}
