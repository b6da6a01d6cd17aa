//! The files of a checkpoint and the blocking steps that write, verify and remove them.
//!
//! A checkpoint is two files in `DATA_DIR/checkpoints/<notebook-hash>/`:
//! - `<stem>.<generation>.dill`: the data the kernel wrote (framed dill entries, see
//!   `python.rs`), never modified after it is placed;
//! - `<stem>.json`: the signed metadata, naming the data file of its generation.
//!
//! Commit order (a crash at any point leaves the old checkpoint or the new one):
//! 1. hash the kernel's temp file (HMAC + SHA-256, constant memory), fsync it;
//! 2. rename it to `<stem>.<new generation>.dill` (a new name: the old data file is
//!    untouched), fsync the directory;
//! 3. write the metadata to a temp file, fsync, rename over `<stem>.json` (the commit point),
//!    fsync the directory;
//! 4. remove data files of other generations of this stem.
//!
//! Before 3 the old metadata still names the old data file; after 3 the new metadata names the
//! new one. Orphans (a new data file without metadata, stale temp files) are removed by later
//! saves in the same directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use hmac::Mac as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::SecretKey;
use super::name::{hex, is_generation, new_generation, CheckpointPaths};
use super::sign;
use super::CheckpointError;

/// Format tag of the metadata.
pub const FORMAT: &str = "jupyter-mcp-checkpoint/1";
/// Largest metadata file read.
const MAX_METADATA_BYTES: u64 = 64 << 20;
/// Temp files and orphaned data files older than this are removed by the next save.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// A package installed in the kernel's environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Package {
    /// Distribution name as installed.
    pub name: String,
    /// Installed version.
    pub version: String,
}

/// A variable in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedVariable {
    /// Global name.
    pub name: String,
    /// `module.QualName` (builtins without module).
    #[serde(rename = "type")]
    pub type_name: String,
    /// Bytes of its dill entry.
    pub bytes: u64,
    /// `name==version` of the distributions its pickle refers to.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// A variable that was not saved or not restored, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SkippedVariable {
    /// Global name.
    pub name: String,
    /// Why, in words an agent can act on.
    pub reason: String,
}

/// The signed metadata of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// [`FORMAT`].
    pub format: String,
    /// Checkpoint name.
    pub name: String,
    /// Notebook path relative to the root.
    pub notebook: String,
    /// Generation id tying this metadata to its data file.
    pub generation: String,
    /// File name of the data file (`<stem>.<generation>.dill`).
    pub data_file: String,
    /// RFC 3339.
    pub created_at: String,
    /// The kernel's Python version.
    pub python_version: String,
    /// The kernel's interpreter.
    pub python_executable: String,
    /// The kernel's installed distributions.
    pub packages: Vec<Package>,
    /// Saved variables.
    pub variables: Vec<SavedVariable>,
    /// Variables that could not be saved.
    pub skipped: Vec<SkippedVariable>,
    /// Size of the data file.
    pub bytes: u64,
    /// SHA-256 of the data file, hex.
    pub sha256: String,
    /// HMAC-SHA256 of the data file, hex.
    pub hmac: String,
    /// Signature of all other fields (see `sign.rs`), hex.
    #[serde(default)]
    pub signature: String,
}

/// What the kernel reported about a save, before the server signs it.
#[derive(Debug, Clone)]
pub struct Unsigned {
    pub name: String,
    pub notebook: String,
    pub created_at: String,
    pub python_version: String,
    pub python_executable: String,
    pub packages: Vec<Package>,
    pub variables: Vec<SavedVariable>,
    pub skipped: Vec<SkippedVariable>,
}

/// Timings of the server's part of a save.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitTimes {
    /// Streaming HMAC + SHA-256 over the data.
    pub hash: Duration,
    /// Everything else (fsyncs, renames, metadata).
    pub write: Duration,
}

fn io_err(action: &str, path: &Path, source: io::Error) -> CheckpointError {
    CheckpointError::Io {
        action: action.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

/// fsync a directory (makes renames and removals in it durable).
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the directory of a notebook's checkpoints (0700).
pub fn ensure_dir(dir: &Path) -> Result<(), CheckpointError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("create the checkpoint directory", dir, e))
}

/// Opens a regular file for reading: no symlink followed in the last component, and a
/// non-blocking open (a FIFO put in place of a checkpoint file cannot hang it) whose type is
/// checked on the descriptor before the non-blocking flag is cleared.
pub(super) fn open_nofollow(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(
            "not a regular file (a FIFO, folder, device or socket was put in its place)",
        ));
    }
    let flags = rustix::fs::fcntl_getfl(&f)?;
    rustix::fs::fcntl_setfl(&f, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(f)
}

/// Steps 1-2: hashes and fsyncs the kernel's temp file and renames it to a new generation's
/// data file. Returns the generation, the digests and the time spent hashing.
pub fn place_data(
    paths: &CheckpointPaths,
    key: &SecretKey,
    temp: &Path,
) -> Result<(String, sign::Streamed, Duration), CheckpointError> {
    let t = Instant::now();
    let file =
        open_nofollow(temp).map_err(|e| io_err("open the kernel's checkpoint file", temp, e))?;
    let streamed = sign::stream(&file, sign::mac(key))
        .map_err(|e| io_err("read the kernel's checkpoint file", temp, e))?;
    let hashed = t.elapsed();
    file.sync_all()
        .map_err(|e| io_err("sync the checkpoint file", temp, e))?;
    drop(file);
    let generation = new_generation();
    let data = paths.data(&generation);
    fs::rename(temp, &data).map_err(|e| io_err("rename the checkpoint file", &data, e))?;
    fsync_dir(&paths.dir).map_err(|e| io_err("sync the checkpoint directory", &paths.dir, e))?;
    Ok((generation, streamed, hashed))
}

/// Step 2 for a data file already hashed and fsynced while it was written (a checkpoint
/// received over the wire, `wire.rs`): renames it to a new generation's data file and fsyncs
/// the directory. Returns the generation.
pub fn place_hashed(paths: &CheckpointPaths, temp: &Path) -> Result<String, CheckpointError> {
    let generation = new_generation();
    let data = paths.data(&generation);
    fs::rename(temp, &data).map_err(|e| io_err("rename the checkpoint file", &data, e))?;
    fsync_dir(&paths.dir).map_err(|e| io_err("sync the checkpoint directory", &paths.dir, e))?;
    Ok(generation)
}

/// Steps 2-4 for a data file hashed while it was written (see [`place_hashed`]).
pub fn commit_hashed(
    paths: &CheckpointPaths,
    key: &SecretKey,
    temp: &Path,
    streamed: sign::Streamed,
    unsigned: Unsigned,
) -> Result<Metadata, CheckpointError> {
    let generation = place_hashed(paths, temp)?;
    let meta = match write_metadata(paths, key, &generation, streamed, unsigned) {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_file(paths.data(&generation));
            return Err(e);
        }
    };
    remove_other_generations(paths, Some(&meta.data_file));
    Ok(meta)
}

/// Step 3: signs and writes the metadata for a placed data file; the rename is the commit.
pub fn write_metadata(
    paths: &CheckpointPaths,
    key: &SecretKey,
    generation: &str,
    streamed: sign::Streamed,
    unsigned: Unsigned,
) -> Result<Metadata, CheckpointError> {
    let mut meta = Metadata {
        format: FORMAT.into(),
        name: unsigned.name,
        notebook: unsigned.notebook,
        generation: generation.to_string(),
        data_file: paths.data_file_name(generation),
        created_at: unsigned.created_at,
        python_version: unsigned.python_version,
        python_executable: unsigned.python_executable,
        packages: unsigned.packages,
        variables: unsigned.variables,
        skipped: unsigned.skipped,
        bytes: streamed.bytes,
        sha256: hex(&streamed.sha256),
        hmac: hex(&streamed.mac.finalize().into_bytes()),
        signature: String::new(),
    };
    let value =
        serde_json::to_value(&meta).map_err(|e| CheckpointError::Internal(e.to_string()))?;
    meta.signature = hex(&sign::sign_metadata(key, &value));
    let mut text =
        serde_json::to_vec_pretty(&meta).map_err(|e| CheckpointError::Internal(e.to_string()))?;
    text.push(b'\n');
    let tmp = paths
        .dir
        .join(format!(".tmp-{}.json", uuid::Uuid::new_v4().simple()));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write the checkpoint metadata", &tmp, e));
    }
    let target = paths.meta();
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("rename the checkpoint metadata", &target, e));
    }
    fsync_dir(&paths.dir).map_err(|e| io_err("sync the checkpoint directory", &paths.dir, e))?;
    Ok(meta)
}

/// Step 4: removes data files of this stem other than `keep` (old generations, orphans).
pub fn remove_other_generations(paths: &CheckpointPaths, keep: Option<&str>) {
    let Ok(entries) = fs::read_dir(&paths.dir) else {
        return;
    };
    let mut removed = false;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if paths.is_own_data_file(name) && Some(name) != keep {
            removed |= fs::remove_file(e.path()).is_ok();
        }
    }
    if removed {
        let _ = fsync_dir(&paths.dir);
    }
}

/// Steps 1-4.
pub fn commit(
    paths: &CheckpointPaths,
    key: &SecretKey,
    temp: &Path,
    unsigned: Unsigned,
) -> Result<(Metadata, CommitTimes), CheckpointError> {
    let t = Instant::now();
    let (generation, streamed, hash) = place_data(paths, key, temp)?;
    let meta = match write_metadata(paths, key, &generation, streamed, unsigned) {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_file(paths.data(&generation));
            return Err(e);
        }
    };
    remove_other_generations(paths, Some(&meta.data_file));
    Ok((
        meta,
        CommitTimes {
            hash,
            write: t.elapsed().saturating_sub(hash),
        },
    ))
}

/// Why a checkpoint failed verification (each one counts as a signature failure).
fn integrity(notebook: &str, name: &str, what: impl Into<String>) -> CheckpointError {
    CheckpointError::Integrity {
        notebook: notebook.to_string(),
        name: name.to_string(),
        what: what.into(),
    }
}

/// Reads the metadata file; `Ok(None)` when it does not exist.
pub fn read_metadata_value(path: &Path) -> Result<Option<Vec<u8>>, io::Error> {
    let f = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.take(MAX_METADATA_BYTES).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

/// Checks the metadata's signature and that it describes `name` of `notebook` at `paths`.
pub fn verify_metadata_bytes(
    paths: &CheckpointPaths,
    key: &SecretKey,
    notebook: &str,
    name: &str,
    raw: &[u8],
) -> Result<Metadata, CheckpointError> {
    let value: Value = serde_json::from_slice(raw).map_err(|_| {
        integrity(
            notebook,
            name,
            "its metadata file is not valid JSON (modified or truncated)",
        )
    })?;
    if !sign::verify_metadata(key, &value) {
        return Err(integrity(
            notebook,
            name,
            "its metadata signature does not match: the metadata was modified, or it was signed \
             with another key (a different secret.key or JUPYTER_MCP_SECRET)",
        ));
    }
    let meta: Metadata = serde_json::from_value(value).map_err(|e| {
        integrity(
            notebook,
            name,
            format!("its signed metadata has an unknown shape ({e})"),
        )
    })?;
    if meta.format != FORMAT {
        return Err(integrity(
            notebook,
            name,
            format!("unknown format {:?}", meta.format),
        ));
    }
    if meta.name != name || meta.notebook != notebook {
        return Err(integrity(
            notebook,
            name,
            format!(
                "its metadata belongs to checkpoint '{}' of '{}' (metadata files were swapped or renamed)",
                meta.name, meta.notebook
            ),
        ));
    }
    if !is_generation(&meta.generation) || meta.data_file != paths.data_file_name(&meta.generation)
    {
        return Err(integrity(
            notebook,
            name,
            "its metadata names a data file of another checkpoint",
        ));
    }
    Ok(meta)
}

/// Verifies a checkpoint end to end: metadata signature and identity, then the data file's
/// size, HMAC (constant-time, over every byte) and SHA-256. Nothing else reads the data file
/// before this succeeds. `Ok(None)` when there is no checkpoint of that name.
pub fn verify(
    paths: &CheckpointPaths,
    key: &SecretKey,
    notebook: &str,
    name: &str,
) -> Result<Option<Metadata>, CheckpointError> {
    let meta_path = paths.meta();
    let Some(raw) = read_metadata_value(&meta_path)
        .map_err(|e| io_err("read the checkpoint metadata", &meta_path, e))?
    else {
        return Ok(None);
    };
    let meta = verify_metadata_bytes(paths, key, notebook, name, &raw)?;
    let data_path = paths.data(&meta.generation);
    let file = match open_nofollow(&data_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(integrity(
                notebook,
                name,
                "its data file is missing (deleted or renamed)",
            ))
        }
        Err(e) => {
            return Err(integrity(
                notebook,
                name,
                format!("its data file cannot be opened ({e})"),
            ))
        }
    };
    let len = file
        .metadata()
        .map_err(|e| io_err("stat the checkpoint data", &data_path, e))?
        .len();
    if len != meta.bytes {
        return Err(integrity(
            notebook,
            name,
            format!(
                "its data file has {len} bytes but {} were signed (truncated or appended to)",
                meta.bytes
            ),
        ));
    }
    let expected = super::name::unhex(&meta.hmac)
        .ok_or_else(|| integrity(notebook, name, "its signed HMAC is not hex"))?;
    let (bytes, mac) = sign::stream_mac(&file, sign::mac(key))
        .map_err(|e| io_err("read the checkpoint data", &data_path, e))?;
    // Constant-time comparison over a MAC of every byte. A valid HMAC also proves the signed
    // SHA-256 (computed over the same bytes at save) is the digest of these bytes.
    if bytes != meta.bytes || mac.verify_slice(&expected).is_err() {
        return Err(integrity(
            notebook,
            name,
            "its data file does not match its signature (modified, replaced, or signed with another key)",
        ));
    }
    Ok(Some(meta))
}

/// Removes a checkpoint: metadata first (after that it no longer exists), then its data files.
/// Returns false when there was no metadata.
pub fn delete(paths: &CheckpointPaths) -> Result<bool, CheckpointError> {
    let meta = paths.meta();
    let existed = match fs::remove_file(&meta) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err("remove the checkpoint metadata", &meta, e)),
    };
    if existed {
        fsync_dir(&paths.dir)
            .map_err(|e| io_err("sync the checkpoint directory", &paths.dir, e))?;
    }
    remove_other_generations(paths, None);
    Ok(existed)
}

/// One metadata file found on disk, with whether its signature holds.
pub struct Listed {
    /// Parsed metadata (unverified when `verified` is false).
    pub meta: Metadata,
    /// The signature matches the key.
    pub verified: bool,
}

/// Metadata files of one notebook directory (unparsable files are skipped).
pub fn list_dir(dir: &Path, key: Option<&SecretKey>) -> Vec<Listed> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let Ok(Some(raw)) = read_metadata_value(&e.path()) else {
            continue;
        };
        let Ok(value) = serde_json::from_slice::<Value>(&raw) else {
            continue;
        };
        let verified = key.is_some_and(|k| sign::verify_metadata(k, &value));
        if let Ok(meta) = serde_json::from_value::<Metadata>(value) {
            // The file must sit where its own name and notebook put it.
            let at = CheckpointPaths::new(dir.parent().unwrap_or(dir), &meta.notebook, &meta.name);
            let verified = verified && at.meta() == e.path();
            out.push(Listed { meta, verified });
        }
    }
    out
}

/// Removes stale temp files (older than an hour) and data files no metadata in the directory
/// names (orphans of a crash between steps 2 and 3; older than an hour, so a save in progress
/// elsewhere is never touched).
pub fn collect_garbage(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<_> = entries.flatten().collect();
    let referenced: Vec<String> = entries
        .iter()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            (!n.starts_with('.') && n.ends_with(".json")).then(|| e.path())
        })
        .filter_map(|p| read_metadata_value(&p).ok().flatten())
        .filter_map(|raw| serde_json::from_slice::<Value>(&raw).ok())
        .filter_map(|v| v.get("data_file")?.as_str().map(str::to_string))
        .collect();
    let now = SystemTime::now();
    let mut removed = false;
    for e in &entries {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let stale = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > STALE_AFTER);
        let orphan =
            name.ends_with(".dill") && !name.starts_with('.') && !referenced.contains(&name);
        if stale && (name.starts_with(".tmp-") || orphan) {
            removed |= fs::remove_file(e.path()).is_ok();
        }
    }
    if removed {
        let _ = fsync_dir(dir);
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
