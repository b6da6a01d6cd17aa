//! Garbage collection of assets, decided on facts gathered first: an asset is deleted only when
//! its lease has expired AND no notebook under the root references it AND no stored execution
//! references it (its outputs hold the content or a link to it, or it is still running and
//! produced it). Anything else is kept, with the reason. Nothing but indexed asset files is ever
//! deleted; an unreadable notebook stops the whole collection (it might reference anything).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::extract::{notebook_hashes, outputs_hashes};
use super::leases::{parse_stamp, AssetRow, StoredExecution};

/// What collection does with one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Delete the file and its index row.
    Delete,
    /// Keep it.
    Keep,
    /// The file is already gone: drop the index row.
    Forget,
}

/// The decision about one asset, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    /// The asset.
    pub uri: String,
    /// Notebook it came from.
    pub notebook: String,
    /// Size in bytes.
    pub bytes: i64,
    /// delete, keep or forget.
    pub action: Action,
    /// Why.
    pub reason: String,
}

/// Who references which content hash.
#[derive(Debug, Default)]
pub struct References {
    /// Content hash -> a notebook (root-relative) whose file references it.
    pub notebooks: HashMap<String, String>,
    /// Content hash -> a stored execution whose outputs reference it.
    pub executions: HashMap<String, String>,
    /// Asset URI -> an execution still pending or running that produced it.
    pub running: HashMap<String, String>,
    /// Notebooks that could not be read (then nothing is deleted).
    pub unreadable: Vec<String>,
}

impl References {
    /// Adds the references of stored executions and of `asset_refs` links to unfinished ones.
    pub fn add_executions(
        &mut self,
        executions: impl IntoIterator<Item = StoredExecution>,
        links: &[(String, String)],
    ) {
        let mut unfinished = HashSet::new();
        for e in executions {
            let mut hashes = HashSet::new();
            outputs_hashes(&e.outputs, &mut hashes);
            for h in hashes {
                self.executions.entry(h).or_insert_with(|| e.id.clone());
            }
            if e.status == "pending" || e.status == "running" {
                unfinished.insert(e.id);
            }
        }
        for (uri, id) in links {
            if unfinished.contains(id) {
                self.running
                    .entry(uri.clone())
                    .or_insert_with(|| id.clone());
            }
        }
    }

    /// Adds the references of every `.ipynb` under `root` (symlinks are not followed;
    /// `.git`, `node_modules` and `__pycache__` are skipped). Each folder is read behind
    /// `--storage-timeout` (SPEC §8): a folder that does not answer (a stale mount inside the
    /// root) is recorded as unreadable, which stops deletion, instead of hanging the call.
    pub fn add_notebooks(&mut self, root: &Path) {
        let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let (at, base) = (dir.clone(), root.to_path_buf());
            let listed = crate::storage::run_sync_bounded(
                crate::storage::Place::Root,
                &dir,
                "reading notebooks for prune_assets",
                move || read_folder(&at, &base),
            );
            match listed {
                Ok(Ok(folder)) => {
                    stack.extend(folder.subdirs);
                    self.unreadable.extend(folder.unreadable);
                    for (rel, text) in folder.notebooks {
                        let mut hashes = HashSet::new();
                        notebook_hashes(&text, &mut hashes);
                        for h in hashes {
                            self.notebooks.entry(h).or_insert_with(|| rel.clone());
                        }
                    }
                }
                Ok(Err(e)) => self.unreadable.push(format!("{} ({e})", dir.display())),
                Err(e) => self.unreadable.push(format!("{} ({e})", dir.display())),
            }
        }
    }
}

/// One folder of the root as [`References::add_notebooks`] reads it.
struct Folder {
    subdirs: Vec<PathBuf>,
    /// (root-relative path, text) of each notebook.
    notebooks: Vec<(String, String)>,
    unreadable: Vec<String>,
}

/// Lists `dir` and reads its notebooks (blocking; run behind a bound).
fn read_folder(dir: &Path, root: &Path) -> std::io::Result<Folder> {
    let mut folder = Folder {
        subdirs: vec![],
        notebooks: vec![],
        unreadable: vec![],
    };
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if meta.is_dir() {
            if !matches!(name.as_ref(), ".git" | "node_modules" | "__pycache__") {
                folder.subdirs.push(path);
            }
        } else if meta.is_file() && name.ends_with(".ipynb") {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| path.display().to_string());
            match std::fs::read(&path) {
                Ok(bytes) => folder
                    .notebooks
                    .push((rel, String::from_utf8_lossy(&bytes).into_owned())),
                Err(e) => folder.unreadable.push(format!("{rel} ({e})")),
            }
        }
    }
    Ok(folder)
}

/// Decides about each asset at time `now`. `file_exists` tells whether its file is present.
pub fn judge(
    rows: &[AssetRow],
    refs: &References,
    now: DateTime<Utc>,
    file_exists: impl Fn(&AssetRow) -> bool,
) -> Vec<Verdict> {
    rows.iter()
        .map(|row| {
            let (action, reason) = decide(row, refs, now, &file_exists);
            Verdict {
                uri: row.uri.clone(),
                notebook: row.notebook.clone(),
                bytes: row.bytes,
                action,
                reason,
            }
        })
        .collect()
}

fn decide(
    row: &AssetRow,
    refs: &References,
    now: DateTime<Utc>,
    file_exists: &impl Fn(&AssetRow) -> bool,
) -> (Action, String) {
    if !file_exists(row) {
        return (Action::Forget, "the file is already gone".into());
    }
    match parse_stamp(&row.lease_until) {
        None => {
            return (
                Action::Keep,
                format!("unreadable lease time {:?}", row.lease_until),
            )
        }
        Some(until) if until > now => {
            return (
                Action::Keep,
                format!("lease valid until {}", row.lease_until),
            )
        }
        Some(_) => {}
    }
    if let Some(id) = refs.running.get(&row.uri) {
        return (
            Action::Keep,
            format!("produced by execution {id}, which is still running"),
        );
    }
    if let Some(id) = refs.executions.get(&row.sha256) {
        return (Action::Keep, format!("referenced by stored execution {id}"));
    }
    if let Some(nb) = refs.notebooks.get(&row.sha256) {
        return (Action::Keep, format!("referenced by notebook {nb}"));
    }
    if let Some(first) = refs.unreadable.first() {
        return (
            Action::Keep,
            format!(
                "lease expired, but {} notebook(s) or folder(s) under the root could not be read (e.g. {first}), so references are unknown",
                refs.unreadable.len()
            ),
        );
    }
    (
        Action::Delete,
        format!(
            "lease expired at {}; no notebook under the root and no stored execution references it",
            row.lease_until
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::leases::stamp;
    use serde_json::json;

    fn row(uri: &str, sha: &str, lease: DateTime<Utc>) -> AssetRow {
        AssetRow {
            uri: uri.into(),
            notebook: "a.ipynb".into(),
            sha256: sha.into(),
            ext: "txt".into(),
            mime_type: "text/plain".into(),
            bytes: 1,
            created_at: stamp(lease),
            lease_until: stamp(lease),
        }
    }

    fn action_of(verdicts: &[Verdict], uri: &str) -> (Action, String) {
        let v = verdicts.iter().find(|v| v.uri == uri).expect("verdict");
        (v.action, v.reason.clone())
    }

    #[test]
    fn only_expired_unreferenced_assets_are_deleted() {
        let now = Utc::now();
        let past = now - chrono::Duration::hours(1);
        let future = now + chrono::Duration::hours(1);
        let text = "some long text\n";
        let sha_text = crate::assets::uri::sha256_hex(text.as_bytes());
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sub")).expect("sub");
        let nb = json!({"cells": [{"cell_type": "code", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": text}]}]});
        std::fs::write(dir.path().join("sub/n.ipynb"), nb.to_string()).expect("write nb");
        let linked = "b".repeat(64);
        std::fs::write(
            dir.path().join("other.ipynb"),
            format!(
                "{{\"cells\": [], \"x\": \"jupyter-mcp://assets/0123456789abcdef/{linked}.png\"}}"
            ),
        )
        .expect("write other");

        let mut refs = References::default();
        refs.add_notebooks(dir.path());
        let exec_sha = crate::assets::uri::sha256_hex(b"exec text");
        refs.add_executions(
            vec![
                StoredExecution {
                    id: "e-done".into(),
                    status: "completed".into(),
                    outputs:
                        json!([{"output_type": "stream", "name": "stdout", "text": "exec text"}])
                            .to_string(),
                },
                StoredExecution {
                    id: "e-run".into(),
                    status: "running".into(),
                    outputs: "[]".into(),
                },
            ],
            &[
                ("u-running".into(), "e-run".into()),
                ("u-gone".into(), "e-done".into()),
            ],
        );
        let rows = vec![
            row("u-valid", "x", future),
            row("u-nb", &sha_text, past),
            row("u-link", &linked, past),
            row("u-exec", &exec_sha, past),
            row("u-running", "y", past),
            row("u-gone", "z", past),
            row("u-missing", "w", past),
        ];
        let v = judge(&rows, &refs, now, |r| r.uri != "u-missing");
        assert_eq!(action_of(&v, "u-valid").0, Action::Keep);
        assert!(action_of(&v, "u-valid").1.contains("lease valid"));
        assert_eq!(
            action_of(&v, "u-nb"),
            (Action::Keep, "referenced by notebook sub/n.ipynb".into())
        );
        assert_eq!(
            action_of(&v, "u-link"),
            (Action::Keep, "referenced by notebook other.ipynb".into())
        );
        assert_eq!(
            action_of(&v, "u-exec"),
            (Action::Keep, "referenced by stored execution e-done".into())
        );
        assert!(action_of(&v, "u-running").1.contains("still running"));
        // Linked to a finished execution whose outputs do not hold it: collectable.
        let (a, why) = action_of(&v, "u-gone");
        assert_eq!(a, Action::Delete);
        assert!(
            why.contains("lease expired") && why.contains("no notebook"),
            "{why}"
        );
        assert_eq!(action_of(&v, "u-missing").0, Action::Forget);

        // Expiry is decided by the given time: an hour earlier nothing is deleted.
        let v = judge(&rows, &refs, past - chrono::Duration::minutes(1), |_| true);
        assert!(v.iter().all(|v| v.action == Action::Keep));

        // An unreadable notebook under the root stops deletion.
        refs.unreadable
            .push("locked.ipynb (permission denied)".into());
        let v = judge(&rows, &refs, now, |_| true);
        assert!(v.iter().all(|v| v.action != Action::Delete));
    }
}
