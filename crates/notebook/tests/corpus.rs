//! Tests against real notebooks written by other projects (`/work/shared/corpus`, or the
//! directory in `JMCP_CORPUS_DIR`) and against Python nbformat itself (the interpreter at
//! the project's `.venv/bin/python`, or `JMCP_PYTHON`). Tests whose inputs are missing print why
//! and pass.

use jmcp_notebook::{Notebook, NotebookError};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Reads every notebook, validates it and writes it back with Python nbformat, as
/// `nbformat.write` would. Prints `{path: {"ok": bool, "error": str, "writes": str}}`.
/// Missing-id and duplicate-id repairs are errors here, so validation cannot pass by
/// silently fixing our output.
const PY_CHECK: &str = r#"
import json, sys, warnings
import nbformat
from nbformat.warnings import MissingIDFieldWarning, DuplicateCellId
warnings.simplefilter("ignore")
warnings.simplefilter("error", MissingIDFieldWarning)
warnings.simplefilter("error", DuplicateCellId)
out = {}
for path in sys.argv[1:]:
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        s = nbformat.writes(nb)
        if not s.endswith("\n"):
            s += "\n"
        out[path] = {"ok": True, "writes": s}
    except Exception as e:
        out[path] = {"ok": False, "error": repr(e)}
print(json.dumps(out))
"#;

fn corpus_files() -> Vec<PathBuf> {
    let root = std::env::var_os("JMCP_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/corpus"
            ))
        });
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "ipynb") {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        println!("skipped: no notebooks under {}", root.display());
    }
    files
}

fn python() -> Option<PathBuf> {
    let python = std::env::var_os("JMCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.venv/bin/python"
            ))
        });
    if python.exists() {
        Some(python)
    } else {
        println!("skipped: no Python with nbformat at {}", python.display());
        None
    }
}

/// Runs [`PY_CHECK`] on `paths`; returns `path -> Ok(writes) | Err(error)`.
fn python_check(python: &Path, paths: &[PathBuf]) -> HashMap<PathBuf, Result<String, String>> {
    let output = Command::new(python)
        .arg("-c")
        .arg(PY_CHECK)
        .args(paths)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: HashMap<String, Value> =
        serde_json::from_slice(&output.stdout).expect("python prints JSON");
    results
        .into_iter()
        .map(|(path, r)| {
            let result = match (r["ok"].as_bool(), r["writes"].as_str()) {
                (Some(true), Some(writes)) => Ok(writes.to_string()),
                _ => Err(r["error"].as_str().unwrap_or("?").to_string()),
            };
            (PathBuf::from(path), result)
        })
        .collect()
}

fn parse_file(path: &Path) -> Notebook {
    let bytes = std::fs::read(path).expect("read corpus file");
    match Notebook::parse(&bytes) {
        Ok(loaded) => loaded.notebook,
        Err(err) => panic!("{}: {err}", path.display()),
    }
}

/// `parse(to_json(parse(file)))` must equal `parse(file)`, and `to_json` must be a fixpoint.
fn check_round_trip(path: &Path) {
    let notebook = parse_file(path);
    let json = notebook.to_json();
    let again = Notebook::parse(json.as_bytes()).expect("our own output parses");
    assert!(
        again.upgraded.is_empty(),
        "{}: {:?}",
        path.display(),
        again.upgraded
    );
    assert_eq!(again.notebook, notebook, "{}", path.display());
    assert_eq!(again.notebook.to_json(), json, "{}", path.display());
}

#[test]
fn every_corpus_notebook_round_trips() {
    let files = corpus_files();
    for path in &files {
        check_round_trip(path);
    }
    println!("round-tripped {} notebooks", files.len());
}

#[test]
fn old_minor_versions_gain_ids_and_new_ones_keep_theirs() {
    for path in corpus_files() {
        let bytes = std::fs::read(&path).expect("read corpus file");
        let raw: Value = serde_json::from_slice(&bytes).expect("corpus is JSON");
        let loaded = Notebook::parse(&bytes).expect("corpus parses");
        assert_eq!(loaded.notebook.nbformat_minor, 5, "{}", path.display());
        let raw_ids: Vec<Option<&str>> = raw["cells"]
            .as_array()
            .map(|cells| cells.iter().map(|c| c["id"].as_str()).collect())
            .unwrap_or_default();
        if raw["nbformat_minor"].as_u64() < Some(5) {
            assert!(
                loaded.upgraded.iter().any(|n| n.contains("-> 4.5")),
                "{}",
                path.display()
            );
        } else {
            let ids: Vec<Option<&str>> = loaded
                .notebook
                .cells
                .iter()
                .map(|c| Some(c.id.as_str()))
                .collect();
            assert_eq!(ids, raw_ids, "{}", path.display());
        }
    }
}

#[test]
fn python_nbformat_validates_and_rewrites_our_output_identically() {
    let (files, Some(python)) = (corpus_files(), python()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut ours = HashMap::new();
    let mut written = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let out = dir.path().join(format!("{i}.ipynb"));
        let json = parse_file(path).to_json();
        std::fs::write(&out, &json).expect("write temp notebook");
        ours.insert(out.clone(), (path.clone(), json));
        written.push(out);
    }
    let results = python_check(&python, &written);
    for (out, (source, json)) in &ours {
        match &results[out] {
            Ok(python_writes) => assert!(
                python_writes == json,
                "{}: Python rewrites our output differently",
                source.display()
            ),
            Err(error) => panic!("{}: nbformat rejects our output: {error}", source.display()),
        }
    }
    println!("nbformat validated {} notebooks", ours.len());
}

#[test]
fn nbformat_4_5_files_are_written_byte_identically_to_python() {
    let (files, Some(python)) = (corpus_files(), python()) else {
        return;
    };
    let current: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| {
            let raw: Value = serde_json::from_slice(&std::fs::read(p).unwrap_or_default())
                .unwrap_or(Value::Null);
            raw["nbformat_minor"].as_u64() == Some(5)
        })
        .collect();
    assert!(
        !current.is_empty(),
        "the corpus should hold nbformat 4.5 notebooks"
    );
    let results = python_check(&python, &current);
    for path in &current {
        let reference = results[path]
            .as_ref()
            .expect("Python reads the corpus file");
        assert!(
            *reference == parse_file(path).to_json(),
            "{}: differs from nbformat.writes",
            path.display()
        );
    }
    println!(
        "compared {} nbformat 4.5 notebooks byte for byte",
        current.len()
    );
}

fn check_error(input: &str, expected: fn(&NotebookError) -> bool) {
    let err = Notebook::parse(input.as_bytes()).err();
    assert!(err.as_ref().is_some_and(expected), "{input}: {err:?}");
}

#[test]
fn bad_files_give_the_right_errors() {
    check_error("{\"nbformat\": 4,", |e| {
        matches!(e, NotebookError::InvalidJson { line: 1, .. })
    });
    check_error(
        r#"{"nbformat": 3, "nbformat_minor": 0, "worksheets": []}"#,
        |e| matches!(e, NotebookError::UnsupportedVersion { found } if found == "nbformat 3"),
    );
    check_error(
        r#"{"nbformat": 4, "nbformat_minor": 4, "metadata": {}}"#,
        |e| matches!(e, NotebookError::Invalid { what } if what.contains("no `cells` list")),
    );
}
