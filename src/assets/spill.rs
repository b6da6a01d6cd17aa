//! Outputs that one execution cannot keep in memory (issue 8 item 9,
//! `--max-execution-output-bytes`) are appended here, one JSON line per nbformat output, and
//! become one `text/plain` asset when the execution ends (read it with `read_asset`: one line
//! per output). The file is written as the outputs come, hashed on the way, so neither memory
//! nor the store ever holds them; only the rename at the end makes it an asset.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::leases::{self, stamp, AssetRow};
use super::uri::AssetId;
use super::{AssetError, Assets};

/// A spill file (removed on drop unless stored with [`Assets::put_spill`]). Nothing touches
/// the disk until the first [`SpillFile::append`] (SPEC §8: most executions never spill, and
/// an execution must not wait on a data dir that does not answer just to start).
pub struct SpillFile {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    hasher: Sha256,
    bytes: u64,
    outputs: u64,
}

impl SpillFile {
    /// A new spill file under `assets_dir/.spill/`, created on the first append.
    pub fn create(assets_dir: &Path) -> std::io::Result<SpillFile> {
        let dir = assets_dir.join(".spill");
        let path = dir.join(format!("{}.jsonl.tmp", uuid::Uuid::new_v4().simple()));
        Ok(SpillFile {
            path,
            file: None,
            hasher: Sha256::new(),
            bytes: 0,
            outputs: 0,
        })
    }

    /// Appends outputs, one JSON line each (creating the file on the first call).
    pub fn append(&mut self, outputs: &[Value]) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(BufWriter::new(File::create(&self.path)?));
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        for o in outputs {
            let mut line = serde_json::to_vec(o).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
            self.hasher.update(&line);
            self.bytes += line.len() as u64;
            self.outputs += 1;
        }
        Ok(())
    }

    /// Outputs appended so far.
    pub fn outputs(&self) -> u64 {
        self.outputs
    }

    /// Bytes appended so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for SpillFile {
    /// Closes and removes the file on a thread of its own: on a data dir that does not answer
    /// (SPEC §8) the close and the unlink hang, and the dropping worker must not.
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let path = std::mem::take(&mut self.path);
            let spawned = std::thread::Builder::new()
                .name("jmcp-spill-drop".into())
                .spawn(move || {
                    drop(file);
                    let _ = std::fs::remove_file(&path);
                });
            if let Err(e) = spawned {
                tracing::warn!("could not remove a spill file: no thread ({e})");
            }
        }
    }
}

impl Assets {
    /// Makes a spill file an asset of `notebook` linked to `execution_id` (fsync, rename into
    /// place, lease). Blocking.
    pub fn put_spill(
        &self,
        notebook: &str,
        execution_id: &str,
        mut spill: SpillFile,
    ) -> Result<AssetId, AssetError> {
        let io = |what: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| AssetError::Io {
                what,
                path: p,
                source,
            }
        };
        let file = spill.file.take().ok_or_else(|| AssetError::Io {
            what: "store",
            path: spill.path.clone(),
            source: std::io::Error::other("the spill file was already stored"),
        })?;
        let tmp = spill.path.clone();
        let result = (|| {
            let file = file
                .into_inner()
                .map_err(|e| e.into_error())
                .map_err(io("write", &tmp))?;
            file.sync_all().map_err(io("fsync", &tmp))?;
            let sha = hex(&std::mem::take(&mut spill.hasher).finalize());
            let id = AssetId::new(notebook, &sha, "txt");
            let now = Utc::now();
            let row = AssetRow {
                uri: id.uri(),
                notebook: notebook.to_owned(),
                sha256: sha,
                ext: "txt".into(),
                mime_type: "text/plain".into(),
                bytes: spill.bytes as i64,
                created_at: stamp(now),
                lease_until: self.lease_from(now),
            };
            let _guard = self
                .inner
                .write_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let path = self.inner.dir.join(id.rel_path());
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            }
            std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
            let exec = execution_id.to_owned();
            self.inner
                .store
                .call_blocking(move |c| leases::upsert(c, &row, Some(&exec)))?;
            Ok(id)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
