//! Reading and writing notebook files with blocking `std` I/O (call it off async threads).
//!
//! Writes are atomic: the new contents go to a temporary file in the target's directory,
//! which is fsynced and then renamed over (or, for [`create_new`], hard-linked to) the
//! target, and the directory is fsynced. On any error the temporary file is removed and the
//! target is left as it was. [`FileStamp`] identifies the bytes we read or wrote so that
//! [`save`] can notice that someone else changed the file and merge instead of clobbering.

use crate::error::NotebookError;
use crate::merge::merge;
use crate::{Loaded, Notebook};
use sha2::{Digest, Sha256};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The identity of a file's contents as we last read or wrote them: length, modification
/// time (if the platform reports one) and SHA-256 of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub len: u64,
    /// Modification time, if available.
    pub modified: Option<SystemTime>,
    /// SHA-256 of the contents.
    pub sha256: [u8; 32],
}

impl FileStamp {
    fn new(bytes: &[u8], metadata: &Metadata) -> FileStamp {
        FileStamp {
            len: bytes.len() as u64,
            modified: metadata.modified().ok(),
            sha256: Sha256::digest(bytes).into(),
        }
    }

    /// Whether both stamps describe the same bytes (length and hash; the time is ignored,
    /// so a `touch` alone does not count as a change).
    pub fn same_content(&self, other: &FileStamp) -> bool {
        self.len == other.len && self.sha256 == other.sha256
    }
}

/// What [`save`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The file was unchanged since it was read; our version was written as is.
    Written,
    /// The file had changed on disk; the three-way merge (see [`merge`]) was written.
    /// `notes` describe conflicts and other decisions in plain words (may be empty).
    Merged {
        /// One line per conflict or decision.
        notes: Vec<String>,
    },
}

/// Reads and parses the notebook at `path` (see [`Notebook::parse`]), returning it with
/// the stamp of the bytes read.
///
/// Errors: [`NotebookError::Io`] if the file cannot be read; parse errors wrapped in
/// [`NotebookError::AtPath`] so they name the file.
pub fn read_notebook(path: &Path) -> Result<(Loaded, FileStamp), NotebookError> {
    let (bytes, stamp) = read_with_stamp(path)?
        .ok_or_else(|| NotebookError::io("read", path, ErrorKind::NotFound.into()))?;
    let loaded = Notebook::parse(&bytes).map_err(|e| e.at_path(path))?;
    Ok((loaded, stamp))
}

/// The stamp of the file at `path` as it is now (reads and hashes it), or `None` if it
/// does not exist. Errors: [`NotebookError::Io`] for any other failure.
pub fn stamp_of(path: &Path) -> Result<Option<FileStamp>, NotebookError> {
    Ok(read_with_stamp(path)?.map(|(_, stamp)| stamp))
}

/// Atomically replaces (or creates) `path` with `notebook.to_json()`, returning the stamp
/// of what was written. A symlink at `path` is followed (its target is replaced); an
/// existing file's permission bits (and, where allowed, owner) are kept.
///
/// Errors: [`NotebookError::Io`] naming the step that failed, e.g. when the directory is
/// not writable or the existing file is read-only. The target is then untouched.
pub fn write_atomic(path: &Path, notebook: &Notebook) -> Result<FileStamp, NotebookError> {
    let target = resolve_symlink(path)?;
    let existing = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(NotebookError::io("inspect", &target, e)),
    };
    if let Some(meta) = &existing {
        if meta.is_file() && meta.permissions().readonly() {
            let e = io::Error::new(
                ErrorKind::PermissionDenied,
                "the file is read-only; make it writable (chmod u+w) to save it",
            );
            return Err(NotebookError::io("overwrite", &target, e));
        }
    }
    let bytes = notebook.to_json().into_bytes();
    let temp = TempFile::create(&target)?;
    let like = existing.as_ref().filter(|meta| meta.is_file());
    let metadata = temp.write_and_sync(&bytes, like)?;
    temp.rename_onto(&target)?;
    sync_dir(&target);
    Ok(FileStamp::new(&bytes, &metadata))
}

/// Writes `notebook` to `path`, which must not exist: never clobbers. The contents are
/// written and fsynced under a temporary name and then hard-linked to `path` (the link
/// fails if `path` exists); on file systems without hard links the file is created with
/// `O_EXCL` and written directly.
///
/// Errors: [`NotebookError::AlreadyExists`] if `path` exists (even as a dangling symlink),
/// [`NotebookError::Io`] otherwise; no temporary file is left behind.
pub fn create_new(path: &Path, notebook: &Notebook) -> Result<FileStamp, NotebookError> {
    let bytes = notebook.to_json().into_bytes();
    let temp = TempFile::create(path)?;
    let metadata = temp.write_and_sync(&bytes, None)?;
    let linked = fs::hard_link(&temp.path, path);
    drop(temp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(NotebookError::AlreadyExists {
                path: path.to_path_buf(),
            })
        }
        Err(_) => return write_exclusive(path, &bytes),
    }
    sync_dir(path);
    Ok(FileStamp::new(&bytes, &metadata))
}

/// Saves `ours` to `path`, which we read as `base` with stamp `base_stamp`. If the file
/// still holds exactly those bytes, `ours` is written ([`SaveOutcome::Written`]). If it
/// changed, the current file is parsed as `theirs`, [`merge`]`(base, ours, theirs)` is
/// written and returned with [`SaveOutcome::Merged`]. If it was deleted, `ours` is written
/// again, with a note saying so. Returns the notebook now on disk and its stamp.
///
/// A change made between our check and our rename can still be overwritten; the window is
/// the time of one write. Errors: as [`read_notebook`] and [`write_atomic`].
pub fn save(
    path: &Path,
    base: &Notebook,
    base_stamp: &FileStamp,
    ours: &Notebook,
) -> Result<(Notebook, FileStamp, SaveOutcome), NotebookError> {
    let Some((bytes, current)) = read_with_stamp(path)? else {
        let stamp = write_atomic(path, ours)?;
        let notes = vec![format!(
            "{} had been deleted on disk since it was read; wrote the agent's version again",
            path.display()
        )];
        return Ok((ours.clone(), stamp, SaveOutcome::Merged { notes }));
    };
    if current.same_content(base_stamp) {
        let stamp = write_atomic(path, ours)?;
        return Ok((ours.clone(), stamp, SaveOutcome::Written));
    }
    let theirs = Notebook::parse(&bytes).map_err(|e| e.at_path(path))?;
    let (merged, merge_notes) = merge(base, ours, &theirs.notebook);
    let notes = theirs
        .upgraded
        .iter()
        .map(|note| format!("on-disk version: {note}"))
        .chain(merge_notes)
        .collect();
    let stamp = write_atomic(path, &merged)?;
    Ok((merged, stamp, SaveOutcome::Merged { notes }))
}

/// The bytes at `path` and their stamp; `None` if the file does not exist.
fn read_with_stamp(path: &Path) -> Result<Option<(Vec<u8>, FileStamp)>, NotebookError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NotebookError::io("open", path, e)),
    };
    let bytes = crate::limit::read_bounded(&mut file, path)?;
    let metadata = file
        .metadata()
        .map_err(|e| NotebookError::io("inspect", path, e))?;
    let stamp = FileStamp::new(&bytes, &metadata);
    Ok(Some((bytes, stamp)))
}

/// `path` itself, or the file a symlink at `path` points to (so saving keeps the link).
fn resolve_symlink(path: &Path) -> Result<PathBuf, NotebookError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => Ok(target),
            // A dangling link: replace the link itself rather than guess.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(path.to_path_buf()),
            Err(e) => Err(NotebookError::io("resolve the symlink", path, e)),
        },
        _ => Ok(path.to_path_buf()),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes a rename or link in `path`'s directory durable. Failures are ignored: the data
/// file itself is already fsynced and renamed, and some file systems refuse to fsync a
/// directory; reporting an error now would wrongly suggest the save did not happen.
fn sync_dir(path: &Path) {
    if let Ok(dir) = File::open(parent_dir(path)) {
        let _ = dir.sync_all();
    }
}

/// `O_EXCL` create-and-write of `path`, for file systems without hard links.
fn write_exclusive(path: &Path, bytes: &[u8]) -> Result<FileStamp, NotebookError> {
    let mut file = match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(NotebookError::AlreadyExists {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(NotebookError::io("create", path, e)),
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| file.metadata());
    match written {
        Ok(metadata) => {
            sync_dir(path);
            Ok(FileStamp::new(bytes, &metadata))
        }
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(NotebookError::io("write", path, e))
        }
    }
}

/// A temporary file `.<name>.<random>.tmp` next to a target; removed on drop unless it
/// was renamed away.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
    renamed: bool,
}

impl TempFile {
    fn create(target: &Path) -> Result<TempFile, NotebookError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "notebook".to_string());
        let dir = parent_dir(target);
        let mut attempts = 0;
        loop {
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let path = dir.join(format!(".{name}.{}.tmp", &suffix[..12]));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                        renamed: false,
                    })
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
                Err(e) => {
                    return Err(NotebookError::io("create a temporary file in", dir, e));
                }
            }
        }
    }

    /// Writes `bytes`, copies `like`'s permissions (and owner, where allowed), fsyncs and
    /// closes the file; returns its metadata.
    fn write_and_sync(
        &self,
        bytes: &[u8],
        like: Option<&Metadata>,
    ) -> Result<Metadata, NotebookError> {
        let err = |action, e| NotebookError::io(action, &self.path, e);
        let mut file: &File = self
            .file
            .as_ref()
            .ok_or_else(|| err("write", io::Error::other("temporary file already closed")))?;
        inject_failure().map_err(|e| err("write", e))?;
        file.write_all(bytes).map_err(|e| err("write", e))?;
        if let Some(like) = like {
            #[cfg(unix)]
            {
                use std::os::unix::fs::{fchown, MetadataExt};
                // Only root may give a file away; for everyone else this is a no-op or fails.
                let _ = fchown(file, Some(like.uid()), Some(like.gid()));
            }
            file.set_permissions(like.permissions())
                .map_err(|e| err("set permissions on", e))?;
        }
        file.sync_all().map_err(|e| err("fsync", e))?;
        file.metadata().map_err(|e| err("inspect", e))
    }

    fn rename_onto(mut self, target: &Path) -> Result<(), NotebookError> {
        self.file = None;
        fs::rename(&self.path, target).map_err(|e| NotebookError::io("replace", target, e))?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
#[path = "io_tests.rs"]
mod tests;

#[cfg(not(test))]
fn inject_failure() -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Set by tests to make the next temporary-file write fail after the file was created.
    pub(crate) static FAIL_NEXT_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn inject_failure() -> io::Result<()> {
    if FAIL_NEXT_WRITE.with(|f| f.replace(false)) {
        return Err(io::Error::other("injected write failure"));
    }
    Ok(())
}
