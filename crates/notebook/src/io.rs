//! Reading and writing notebook files with blocking `std` I/O (call it off async threads).
//!
//! Writes are atomic: the new contents go to a temporary file in the target's directory,
//! which is fsynced and then renamed over (or, for [`create_new`], hard-linked to) the
//! target, and the directory is fsynced. On any error the temporary file is removed and the
//! target is left as it was. The `*_at` functions work beneath a root directory
//! descriptor ([`Location`], module `at`): every open, create, link and rename is confined
//! beneath the root by the kernel at the moment it happens, and only regular files are read. [`FileStamp`] identifies the bytes we read or wrote so that
//! [`save`] can notice that someone else changed the file and merge instead of clobbering.

use crate::error::NotebookError;
use crate::merge::merge;
use crate::{Loaded, Notebook};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod at;
pub use at::{open_root, Location};

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
/// the stamp of the bytes read. Only a regular file is read (see [`read_notebook_at`]).
///
/// Errors: [`NotebookError::Io`] if the file cannot be read; parse errors wrapped in
/// [`NotebookError::AtPath`] so they name the file.
pub fn read_notebook(path: &Path) -> Result<(Loaded, FileStamp), NotebookError> {
    read_notebook_at(&locate(path, "open")?)
}

/// [`read_notebook`] of a file beneath a root descriptor: the open is confined beneath the
/// root at the moment it happens, non-blocking, and refuses anything but a regular file
/// (FIFO, folder, device, socket: [`NotebookError::Io`] with kind `InvalidInput`).
pub fn read_notebook_at(loc: &Location) -> Result<(Loaded, FileStamp), NotebookError> {
    let path = loc.path();
    let (bytes, stamp) = read_with_stamp(loc)?
        .ok_or_else(|| NotebookError::io("read", &path, ErrorKind::NotFound.into()))?;
    let loaded = Notebook::parse(&bytes).map_err(|e| e.at_path(&path))?;
    Ok((loaded, stamp))
}

/// The stamp of the file at `path` as it is now (reads and hashes it), or `None` if it
/// does not exist. Errors: [`NotebookError::Io`] for any other failure.
pub fn stamp_of(path: &Path) -> Result<Option<FileStamp>, NotebookError> {
    Ok(read_with_stamp(&locate(path, "open")?)?.map(|(_, stamp)| stamp))
}

/// Atomically replaces (or creates) `path` with `notebook.to_json()`, returning the stamp
/// of what was written. A symlink at `path` is followed (its target is replaced); an
/// existing file's permission bits (and, where allowed, owner) are kept.
///
/// Errors: [`NotebookError::Io`] naming the step that failed, e.g. when the directory is
/// not writable or the existing file is read-only. The target is then untouched.
pub fn write_atomic(path: &Path, notebook: &Notebook) -> Result<FileStamp, NotebookError> {
    let target = resolve_symlink(path)?;
    write_atomic_at(&locate(&target, "open the folder of")?, notebook)
}

/// [`write_atomic`] beneath a root descriptor. The temporary file is created in the parent
/// folder's descriptor (opened beneath the root now) and renamed over the name in that same
/// descriptor, so a symlink in the last component is replaced, never followed, and a folder
/// swapped for a symlink leading outside makes the write fail.
pub fn write_atomic_at(loc: &Location, notebook: &Notebook) -> Result<FileStamp, NotebookError> {
    let path = loc.path();
    let dir = loc
        .open_parent()
        .map_err(|e| NotebookError::io("open the folder of", &path, e))?;
    let existing = Location::lstat_in(dir.as_fd(), loc.name())
        .map_err(|e| NotebookError::io("inspect", &path, e))?
        .filter(|st| FileType::from_raw_mode(st.st_mode).is_file());
    if let Some(st) = &existing {
        if st.st_mode & 0o222 == 0 {
            let e = io::Error::new(
                ErrorKind::PermissionDenied,
                "the file is read-only; make it writable (chmod u+w) to save it",
            );
            return Err(NotebookError::io("overwrite", &path, e));
        }
    }
    let bytes = notebook.to_json().into_bytes();
    let temp = TempFile::create(dir, loc)?;
    let metadata = temp.write_and_sync(&bytes, existing.as_ref())?;
    temp.rename_onto(loc)?;
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
    create_new_at(&locate(path, "open the folder of")?, notebook)
}

/// [`create_new`] beneath a root descriptor (temporary file and link in the parent
/// folder's descriptor, opened beneath the root now).
pub fn create_new_at(loc: &Location, notebook: &Notebook) -> Result<FileStamp, NotebookError> {
    let path = loc.path();
    let dir = loc
        .open_parent()
        .map_err(|e| NotebookError::io("open the folder of", &path, e))?;
    let bytes = notebook.to_json().into_bytes();
    let temp = TempFile::create(dir, loc)?;
    let metadata = temp.write_and_sync(&bytes, None)?;
    let linked = rfs::linkat(
        &temp.dir,
        temp.name.as_os_str(),
        &temp.dir,
        loc.name(),
        AtFlags::empty(),
    );
    let dir = temp.dir.try_clone().ok();
    drop(temp);
    match linked {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => return Err(NotebookError::AlreadyExists { path }),
        Err(_) => return write_exclusive(loc, &bytes),
    }
    if let Some(dir) = dir {
        let _ = rfs::fsync(dir);
    }
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
    let target = resolve_symlink(path)?;
    save_at(
        &locate(&target, "open the folder of")?,
        base,
        base_stamp,
        ours,
    )
}

/// [`save`] beneath a root descriptor (reads and writes as [`read_notebook_at`] and
/// [`write_atomic_at`]).
pub fn save_at(
    loc: &Location,
    base: &Notebook,
    base_stamp: &FileStamp,
    ours: &Notebook,
) -> Result<(Notebook, FileStamp, SaveOutcome), NotebookError> {
    let path = loc.path();
    let Some((bytes, current)) = read_with_stamp(loc)? else {
        let stamp = write_atomic_at(loc, ours)?;
        let notes = vec![format!(
            "{} had been deleted on disk since it was read; wrote the agent's version again",
            path.display()
        )];
        return Ok((ours.clone(), stamp, SaveOutcome::Merged { notes }));
    };
    if current.same_content(base_stamp) {
        let stamp = write_atomic_at(loc, ours)?;
        return Ok((ours.clone(), stamp, SaveOutcome::Written));
    }
    let theirs = Notebook::parse(&bytes).map_err(|e| e.at_path(&path))?;
    let (merged, merge_notes) = merge(base, ours, &theirs.notebook);
    let notes = theirs
        .upgraded
        .iter()
        .map(|note| format!("on-disk version: {note}"))
        .chain(merge_notes)
        .collect();
    let stamp = write_atomic_at(loc, &merged)?;
    Ok((merged, stamp, SaveOutcome::Merged { notes }))
}

/// `path` as a [`Location`] beneath its own parent folder.
fn locate(path: &Path, action: &'static str) -> Result<Location, NotebookError> {
    Location::of_path(path).map_err(|e| NotebookError::io(action, path, e))
}

/// The bytes at `loc` and their stamp; `None` if the file does not exist.
fn read_with_stamp(loc: &Location) -> Result<Option<(Vec<u8>, FileStamp)>, NotebookError> {
    let path = loc.path();
    let mut file = match loc.open_regular() {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(None),
        Err(e) => return Err(NotebookError::io("open", &path, e)),
    };
    let bytes = crate::limit::read_bounded(&mut file, &path)?;
    let metadata = file
        .metadata()
        .map_err(|e| NotebookError::io("inspect", &path, e))?;
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

/// `O_EXCL` create-and-write of `loc`, for file systems without hard links.
fn write_exclusive(loc: &Location, bytes: &[u8]) -> Result<FileStamp, NotebookError> {
    let path = loc.path();
    let dir = loc
        .open_parent()
        .map_err(|e| NotebookError::io("open the folder of", &path, e))?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut file = match rfs::openat(&dir, loc.name(), flags, Mode::from_raw_mode(0o666)) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::EXIST) => return Err(NotebookError::AlreadyExists { path }),
        Err(e) => return Err(NotebookError::io("create", &path, e.into())),
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| file.metadata());
    match written {
        Ok(metadata) => {
            let _ = rfs::fsync(&dir);
            Ok(FileStamp::new(bytes, &metadata))
        }
        Err(e) => {
            let _ = rfs::unlinkat(&dir, loc.name(), AtFlags::empty());
            Err(NotebookError::io("write", &path, e))
        }
    }
}

/// A temporary file `.<name>.<random>.tmp` in a directory descriptor; removed on drop
/// unless it was renamed away.
struct TempFile {
    dir: OwnedFd,
    name: OsString,
    /// For messages.
    path: PathBuf,
    file: Option<File>,
    renamed: bool,
}

impl TempFile {
    fn create(dir: OwnedFd, target: &Location) -> Result<TempFile, NotebookError> {
        let name = target.name().to_string_lossy().into_owned();
        let shown = target.path();
        let shown_dir = parent_dir(&shown).to_path_buf();
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut attempts = 0;
        loop {
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let temp = OsString::from(format!(".{name}.{}.tmp", &suffix[..12]));
            match rfs::openat(&dir, temp.as_os_str(), flags, Mode::from_raw_mode(0o666)) {
                Ok(fd) => {
                    return Ok(TempFile {
                        path: shown_dir.join(&temp),
                        dir,
                        name: temp,
                        file: Some(File::from(fd)),
                        renamed: false,
                    })
                }
                Err(rustix::io::Errno::EXIST) if attempts < 8 => attempts += 1,
                Err(e) => {
                    return Err(NotebookError::io(
                        "create a temporary file in",
                        &shown_dir,
                        e.into(),
                    ));
                }
            }
        }
    }

    /// Writes `bytes`, copies `like`'s permissions (and owner, where allowed), fsyncs and
    /// closes the file; returns its metadata.
    fn write_and_sync(
        &self,
        bytes: &[u8],
        like: Option<&rfs::Stat>,
    ) -> Result<Metadata, NotebookError> {
        let err = |action, e| NotebookError::io(action, &self.path, e);
        let mut file: &File = self
            .file
            .as_ref()
            .ok_or_else(|| err("write", io::Error::other("temporary file already closed")))?;
        inject_failure().map_err(|e| err("write", e))?;
        file.write_all(bytes).map_err(|e| err("write", e))?;
        if let Some(like) = like {
            // Only root may give a file away; for everyone else this is a no-op or fails.
            let _ = rfs::fchown(
                file,
                Some(rustix::fs::Uid::from_raw(like.st_uid)),
                Some(rustix::fs::Gid::from_raw(like.st_gid)),
            );
            rfs::fchmod(file, Mode::from_raw_mode(like.st_mode & 0o7777))
                .map_err(|e| err("set permissions on", e.into()))?;
        }
        file.sync_all().map_err(|e| err("fsync", e))?;
        file.metadata().map_err(|e| err("inspect", e))
    }

    /// Renames the temporary file over `target`'s name in the same directory descriptor,
    /// then fsyncs the directory (failures of that fsync are ignored: the data is already
    /// fsynced and renamed, and some file systems refuse to fsync a directory).
    fn rename_onto(mut self, target: &Location) -> Result<(), NotebookError> {
        self.file = None;
        rfs::renameat(&self.dir, self.name.as_os_str(), &self.dir, target.name())
            .map_err(|e| NotebookError::io("replace", &target.path(), e.into()))?;
        self.renamed = true;
        let _ = rfs::fsync(&self.dir);
        Ok(())
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.renamed {
            let _ = rfs::unlinkat(&self.dir, self.name.as_os_str(), AtFlags::empty());
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
