//! Storage checks that cannot hang the caller: a write/fsync/read/delete probe of a folder and
//! its free space, each run on a thread of its own that is abandoned (never joined) when it does
//! not answer in time. A stale NFS mount blocks a system call in the kernel where no signal ends
//! it (FACTS.md): only a thread built to be sacrificed may make such a call.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a pre-flight storage check may take before the folder counts as not answering
/// (SPEC §8's `--storage-timeout` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Free space under which a folder fails pre-flight: too little for SQLite's WAL and a
/// notebook write to succeed at all. Above it a nearly full disk is only a warning: the
/// server then serves what it can and a write that fails says so (issue 8: nothing saved is
/// lost), rather than refusing to start.
pub const MIN_FREE_BYTES: u64 = 4 * 1024 * 1024;
/// Free space under which a folder gets a warning.
pub const LOW_FREE_BYTES: u64 = 1024 * 1024 * 1024;

/// Why a probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The folder did not answer within the timeout (the probe thread is left behind).
    TimedOut {
        /// The folder probed.
        dir: PathBuf,
        /// The bound that passed.
        after: Duration,
    },
    /// A step failed.
    Io {
        /// The folder probed.
        dir: PathBuf,
        /// Which step: create, write, fsync, read back, delete.
        step: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::TimedOut { dir, after } => write!(
                f,
                "{} did not answer within {:.1} s (a stale network mount or a hung disk?): check \
                 the mount / VPN, then start again",
                dir.display(),
                after.as_secs_f64()
            ),
            ProbeError::Io { dir, step, source } => {
                let hint = match source.raw_os_error() {
                    Some(libc::EROFS) => "the file system is read-only: remount it read-write or choose another folder",
                    Some(libc::EACCES) | Some(libc::EPERM) => "permission denied: give this user write access (or pick another folder)",
                    Some(libc::ENOSPC) | Some(libc::EDQUOT) => "the disk is full: free space there",
                    Some(libc::ENOTDIR) => "a path component is a file, not a folder: pick a folder",
                    _ => "check the folder and its file system",
                };
                write!(f, "{}: cannot {step}: {source}; {hint}", dir.display())
            }
        }
    }
}

impl std::error::Error for ProbeError {}

/// Runs `f` on a new thread and waits at most `timeout` for its answer; `None` when it did not
/// answer in time (the thread is abandoned, still blocked where it was).
pub fn on_own_thread<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("jmcp-preflight".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if spawned.is_err() {
        return None;
    }
    rx.recv_timeout(timeout).ok()
}

/// Creates `dir` if needed, then writes, fsyncs, reads back and deletes a small file in it, on
/// a sacrificial thread bounded by `timeout`. `create` says whether a missing folder may be
/// created (the data dir) or must already exist (the notebook root). Returns how long it took.
pub fn probe_dir(dir: &Path, create: bool, timeout: Duration) -> Result<Duration, ProbeError> {
    let owned = dir.to_path_buf();
    let started = Instant::now();
    match on_own_thread(timeout, move || probe_blocking(&owned, create)) {
        Some(Ok(())) => Ok(started.elapsed()),
        Some(Err((step, source))) => Err(ProbeError::Io {
            dir: dir.to_path_buf(),
            step,
            source,
        }),
        None => Err(ProbeError::TimedOut {
            dir: dir.to_path_buf(),
            after: timeout,
        }),
    }
}

fn probe_blocking(dir: &Path, create: bool) -> Result<(), (&'static str, std::io::Error)> {
    if create {
        std::fs::create_dir_all(dir).map_err(|e| ("create the folder", e))?;
    }
    let name = format!(
        ".jupyter-mcp-probe-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let path = dir.join(name);
    let payload = b"jupyter-mcp storage probe\n";
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ("create a file", e))?;
        f.write_all(payload).map_err(|e| ("write", e))?;
        f.sync_all().map_err(|e| ("fsync", e))?;
        let mut back = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut back))
            .map_err(|e| ("read back", e))?;
        if back != payload {
            return Err((
                "read back",
                std::io::Error::other("the bytes read differ from the bytes written"),
            ));
        }
        Ok(())
    })();
    let removed = std::fs::remove_file(&path);
    result?;
    removed.map_err(|e| ("delete", e))
}

/// Bytes available to this user on the file system holding `dir` (`statvfs`), on a sacrificial
/// thread; `None` when it did not answer in time, `Some(Err)` when `statvfs` failed.
pub fn free_bytes(dir: &Path, timeout: Duration) -> Option<std::io::Result<u64>> {
    let owned = dir.to_path_buf();
    on_own_thread(timeout, move || {
        rustix::fs::statvfs(&owned)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .map_err(std::io::Error::from)
    })
}

/// Human-readable bytes (MiB / GiB), for check lines.
pub fn human(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_folder_passes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new");
        probe_dir(&target, true, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_root_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let err = probe_dir(&dir.path().join("absent"), false, DEFAULT_TIMEOUT).unwrap_err();
        assert!(err.to_string().contains("cannot create a file"), "{err}");
        assert!(!dir.path().join("absent").exists());
    }

    #[test]
    fn a_call_that_never_answers_times_out() {
        let (_keep, rx) = mpsc::channel::<()>();
        let answer = on_own_thread(Duration::from_millis(50), move || rx.recv().is_ok());
        assert!(answer.is_none(), "no answer: the caller was not held");
    }

    #[test]
    fn free_space_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path(), DEFAULT_TIMEOUT).unwrap().unwrap();
        assert!(free > 0);
    }
}
