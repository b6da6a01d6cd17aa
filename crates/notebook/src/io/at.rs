//! File operations confined beneath a directory descriptor (Linux `openat2(2)` with
//! `RESOLVE_BENEATH`).
//!
//! A [`Location`] is a root directory *descriptor* plus a path relative to it. Every open,
//! create, link and rename goes through that descriptor, so containment is checked by the
//! kernel at the moment of each operation: a folder or file swapped for a symlink that leads
//! outside the root after some earlier check makes the operation fail (`EXDEV`), it is never
//! followed. Symlinks that stay beneath the root are followed as usual. Writes never follow a
//! symlink in the last component: the temporary file is created `O_EXCL|O_NOFOLLOW` in the
//! parent directory's descriptor and renamed over the name in that same descriptor.
//!
//! Only regular files are opened for reading: the open is non-blocking (a FIFO without a
//! writer cannot hang it), the type is checked on the opened descriptor, and anything else
//! (FIFO, folder, device, socket) is refused with [`ErrorKind::InvalidInput`].
//!
//! Where `openat2` is unavailable (Linux before 5.6, or a seccomp filter refusing it) the
//! path is walked one component at a time with `O_NOFOLLOW`: then no symlink at all is
//! followed beneath the root (stricter, still never outside).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// A file beneath a root directory descriptor: `root` + `rel`. Cheap to clone (the
/// descriptor is shared).
#[derive(Debug, Clone)]
pub struct Location {
    root: Arc<OwnedFd>,
    root_path: PathBuf,
    rel: PathBuf,
}

impl Location {
    /// `rel` (relative, no `..`, not empty) beneath the directory `root`, whose path is
    /// `root_path` (used only in messages).
    pub fn beneath(
        root: Arc<OwnedFd>,
        root_path: impl Into<PathBuf>,
        rel: impl Into<PathBuf>,
    ) -> Location {
        Location {
            root,
            root_path: root_path.into(),
            rel: rel.into(),
        }
    }

    /// The file `path` confined to its own parent directory (opened now, following
    /// symlinks in the parent's path as given). Errors: the parent cannot be opened.
    pub fn of_path(path: &Path) -> io::Result<Location> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "the path names no file"))?;
        let parent = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Ok(Location::beneath(
            Arc::new(open_root(parent)?),
            parent,
            PathBuf::from(name),
        ))
    }

    /// The path for messages (`root_path/rel`).
    pub fn path(&self) -> PathBuf {
        self.root_path.join(&self.rel)
    }

    /// The path relative to the root.
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    /// The last component of the path.
    pub(crate) fn name(&self) -> &OsStr {
        self.rel.file_name().unwrap_or(self.rel.as_os_str())
    }

    /// The parent directory of the file, opened (readable, for fsync) beneath the root.
    pub(crate) fn open_parent(&self) -> io::Result<OwnedFd> {
        let dir = self.rel.parent().unwrap_or(Path::new(""));
        open_dir_beneath(self.root.as_fd(), dir)
    }

    /// Opens the file for reading if it is a regular file; `Ok(None)` if it does not exist.
    /// Errors: `InvalidInput` for anything that is not a regular file, `PermissionDenied`
    /// (`EXDEV`) when the path leads outside the root.
    pub fn open_regular(&self) -> io::Result<Option<File>> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match open_beneath(self.root.as_fd(), &self.rel, flags) {
            Ok(fd) => fd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            // A socket cannot be opened at all (ENXIO).
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(not_regular("a socket or a device without a driver"))
            }
            Err(e) => return Err(e),
        };
        let kind = FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode);
        if !kind.is_file() {
            return Err(not_regular(kind_name(kind)));
        }
        rfs::fcntl_setfl(&fd, rfs::fcntl_getfl(&fd)? - OFlags::NONBLOCK)?;
        Ok(Some(File::from(fd)))
    }

    /// Creates the folders of `rel`'s parent beneath the root (like `mkdir -p`, each step
    /// confined). Errors: a component exists and is not a folder, or leads outside.
    pub fn create_parent_dirs(&self) -> io::Result<()> {
        let Some(dir) = self.rel.parent() else {
            return Ok(());
        };
        let mut done = PathBuf::new();
        for comp in dir.components() {
            let Component::Normal(name) = comp else {
                return Err(outside());
            };
            let here = open_dir_beneath(self.root.as_fd(), &done)?;
            match rfs::mkdirat(&here, name, Mode::from_raw_mode(0o777)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            done.push(name);
        }
        // Checks that the whole chain is a folder beneath the root.
        open_dir_beneath(self.root.as_fd(), &done).map(drop)
    }

    /// Metadata of the last component itself (symlinks not followed), or `None`.
    pub(crate) fn lstat_in(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<rfs::Stat>> {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Opens `dir` as a root descriptor (`O_PATH`-like: a readable directory descriptor).
/// Errors: it does not exist or is not a folder.
pub fn open_root(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the folder `dir` (relative; empty = the root itself) beneath `root`.
fn open_dir_beneath(root: BorrowedFd<'_>, dir: &Path) -> io::Result<OwnedFd> {
    open_beneath(
        root,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
    )
}

/// `openat2(root, rel, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, or the
/// component-wise `O_NOFOLLOW` walk where `openat2` is unavailable. `EXDEV`/`ELOOP` (the
/// path leads outside) become `PermissionDenied` with a message that says so.
pub(crate) fn open_beneath(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
        return Err(outside());
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rfs::openat2(root, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::XDEV) => Err(outside()),
        Err(rustix::io::Errno::AGAIN) => {
            // The kernel saw a concurrent rename and refused to risk it: once more.
            rfs::openat2(root, rel, flags, Mode::empty(), resolve).map_err(map_outside)
        }
        Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
            walk_nofollow(root, rel, flags)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens `rel` one component at a time, never following a symlink.
fn walk_nofollow(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let names: Vec<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            _ => None,
        })
        .collect();
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let mut here = rfs::openat(root, ".", dir_flags, Mode::empty())?;
    let Some((last, dirs)) = names.split_last() else {
        return Ok(rfs::openat(root, ".", flags, Mode::empty())?);
    };
    for name in dirs {
        here =
            rfs::openat(&here, name.as_os_str(), dir_flags, Mode::empty()).map_err(map_outside)?;
    }
    rfs::openat(
        &here,
        last.as_os_str(),
        flags | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(map_outside)
}

fn map_outside(e: rustix::io::Errno) -> io::Error {
    match e {
        rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => outside(),
        other => other.into(),
    }
}

/// The error for a path that leads outside the root (a symlink, possibly swapped in).
pub(crate) fn outside() -> io::Error {
    io::Error::new(
        ErrorKind::PermissionDenied,
        "the path leads outside the notebook root (through a symlink); only files beneath the root can be used",
    )
}

fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file; a notebook must be a regular .ipynb file"),
    )
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "a folder",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symlink",
        _ => "a special file",
    }
}

#[cfg(test)]
#[path = "at_tests.rs"]
mod tests;
