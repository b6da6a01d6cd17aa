//! Unit tests of `io.rs`: stamps, atomic writes, no-clobber creation and merging saves.

use super::*;
use crate::{Cell, CellType};
use std::path::Path;

fn notebook(sources: &[&str]) -> Notebook {
    let mut nb = Notebook::new_empty();
    for (i, source) in sources.iter().enumerate() {
        nb.cells
            .push(Cell::new(CellType::Code, *source, format!("c{i}")));
    }
    nb
}

/// The names in `dir`, sorted; used to prove no temporary file is left behind.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

#[test]
fn write_then_read_round_trips_with_matching_stamps() -> Result<(), NotebookError> {
    let dir = tempdir();
    let path = dir.path().join("a.ipynb");
    assert_eq!(stamp_of(&path)?, None);
    let nb = notebook(&["x = 1"]);
    let written = write_atomic(&path, &nb)?;
    let (loaded, read) = read_notebook(&path)?;
    assert_eq!(loaded.notebook, nb);
    assert!(loaded.upgraded.is_empty());
    assert_eq!(read, written);
    assert_eq!(stamp_of(&path)?, Some(written.clone()));
    assert_eq!(written.len, nb.to_json().len() as u64);
    assert_eq!(names(dir.path()), ["a.ipynb"]);
    Ok(())
}

#[test]
fn errors_name_the_file() {
    let dir = tempdir();
    let missing = dir.path().join("missing.ipynb");
    let err = read_notebook(&missing)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("could not read") && err.contains("missing.ipynb"),
        "{err}"
    );
    let bad = dir.path().join("bad.ipynb");
    fs::write(&bad, "{").ok();
    let err = read_notebook(&bad)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("bad.ipynb: the notebook is not valid JSON"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn permissions_are_kept_and_read_only_files_refused() -> Result<(), NotebookError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let path = dir.path().join("p.ipynb");
    write_atomic(&path, &notebook(&["1"]))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).ok();
    write_atomic(&path, &notebook(&["2"]))?;
    let mode = fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o777)
        .ok();
    assert_eq!(mode, Some(0o640));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).ok();
    let err = write_atomic(&path, &notebook(&["3"]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(read_notebook(&path)?.0.notebook, notebook(&["2"]));
    assert_eq!(names(dir.path()), ["p.ipynb"]);
    Ok(())
}

#[test]
fn failed_temp_write_leaves_target_untouched_and_no_temp_file() -> Result<(), NotebookError> {
    let dir = tempdir();
    let path = dir.path().join("t.ipynb");
    write_atomic(&path, &notebook(&["old"]))?;
    let before = fs::read(&path).ok();
    FAIL_NEXT_WRITE.with(|f| f.set(true));
    let err = write_atomic(&path, &notebook(&["new"]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("injected write failure") && err.contains(".t.ipynb."),
        "{err}"
    );
    assert_eq!(fs::read(&path).ok(), before);
    assert_eq!(names(dir.path()), ["t.ipynb"]);
    // Renaming onto a directory fails after the temp file was fully written.
    let sub = dir.path().join("sub.ipynb");
    fs::create_dir(&sub).ok();
    assert!(write_atomic(&sub, &notebook(&["x"])).is_err());
    assert_eq!(names(dir.path()), ["sub.ipynb", "t.ipynb"]);
    Ok(())
}

#[cfg(unix)]
#[test]
fn read_only_directory_leaves_target_untouched() -> Result<(), NotebookError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let path = dir.path().join("r.ipynb");
    write_atomic(&path, &notebook(&["old"]))?;
    let before = fs::read(&path).ok();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).ok();
    let probe = dir.path().join("probe");
    if fs::write(&probe, "").is_ok() {
        let _ = fs::remove_file(&probe);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).ok();
        println!("skipped: running with privileges that ignore directory permissions");
        return Ok(());
    }
    let result = write_atomic(&path, &notebook(&["new"]));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).ok();
    let err = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("could not create a temporary file in"),
        "{err}"
    );
    assert_eq!(fs::read(&path).ok(), before);
    assert_eq!(names(dir.path()), ["r.ipynb"]);
    Ok(())
}

#[cfg(unix)]
#[test]
fn symlinks_are_followed() -> Result<(), NotebookError> {
    let dir = tempdir();
    let real = dir.path().join("real.ipynb");
    let link = dir.path().join("link.ipynb");
    write_atomic(&real, &notebook(&["1"]))?;
    std::os::unix::fs::symlink(&real, &link).ok();
    write_atomic(&link, &notebook(&["2"]))?;
    assert!(fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()));
    assert_eq!(read_notebook(&real)?.0.notebook, notebook(&["2"]));
    Ok(())
}

#[test]
fn create_new_never_clobbers() -> Result<(), NotebookError> {
    let dir = tempdir();
    let path = dir.path().join("n.ipynb");
    let stamp = create_new(&path, &notebook(&["first"]))?;
    assert_eq!(stamp_of(&path)?, Some(stamp));
    let err = create_new(&path, &notebook(&["second"])).err();
    assert!(
        matches!(err, Some(NotebookError::AlreadyExists { .. })),
        "{err:?}"
    );
    assert_eq!(read_notebook(&path)?.0.notebook, notebook(&["first"]));
    assert_eq!(names(dir.path()), ["n.ipynb"]);
    Ok(())
}

#[test]
fn save_writes_when_unchanged_and_merges_when_changed() -> Result<(), NotebookError> {
    let dir = tempdir();
    let path = dir.path().join("s.ipynb");
    let base = notebook(&["a", "b"]);
    let base_stamp = write_atomic(&path, &base)?;
    let ours = notebook(&["a", "agent"]);
    let (saved, stamp, outcome) = save(&path, &base, &base_stamp, &ours)?;
    assert_eq!((saved, outcome), (ours.clone(), SaveOutcome::Written));
    assert_eq!(stamp_of(&path)?, Some(stamp.clone()));

    // A human edits cell c0 on disk; we change c1 again and save from our last state.
    write_atomic(&path, &notebook(&["human", "agent"]))?;
    let ours2 = notebook(&["a", "agent 2"]);
    let (saved, stamp2, outcome) = save(&path, &ours, &stamp, &ours2)?;
    assert_eq!(saved, notebook(&["human", "agent 2"]));
    assert_eq!(outcome, SaveOutcome::Merged { notes: vec![] });
    assert_eq!(
        read_notebook(&path)?,
        (
            Loaded {
                notebook: saved,
                upgraded: vec![]
            },
            stamp2
        )
    );

    // The file disappears: our version is written again, with a note.
    fs::remove_file(&path).ok();
    let (_, _, outcome) = save(&path, &ours2, &stamp, &ours2)?;
    assert!(
        matches!(outcome, SaveOutcome::Merged { notes } if notes[0].contains("deleted on disk"))
    );
    assert_eq!(names(dir.path()), ["s.ipynb"]);
    Ok(())
}
