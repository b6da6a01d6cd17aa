//! The size cap on notebook files read by the server (issue 9 item 9, `--max-notebook-bytes`).
//!
//! A notebook is parsed from one in-memory buffer, so a huge (or sparse) file would cost its
//! whole size in memory before the parser could refuse it. [`read_bounded`] checks the size
//! on the already opened descriptor (`fstat`, so a path swap cannot change what is measured)
//! and reads at most the cap plus one byte, so a file that grows after the check is refused
//! too. The cap is process-wide (set once at start from the command line).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::NotebookError;

/// Default cap: 256 MiB.
pub const DEFAULT_MAX_NOTEBOOK_BYTES: u64 = 256 * 1024 * 1024;

static MAX_NOTEBOOK_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_NOTEBOOK_BYTES);

/// Sets the largest notebook file (in bytes) that reads accept; 0 is treated as 1.
pub fn set_max_notebook_bytes(bytes: u64) {
    MAX_NOTEBOOK_BYTES.store(bytes.max(1), Ordering::Relaxed);
}

/// The current cap in bytes (default [`DEFAULT_MAX_NOTEBOOK_BYTES`]).
pub fn max_notebook_bytes() -> u64 {
    MAX_NOTEBOOK_BYTES.load(Ordering::Relaxed)
}

/// Reads the whole of the opened `file` (at `path`, for messages) if it is at most
/// [`max_notebook_bytes`] long.
///
/// Errors: [`NotebookError::TooLarge`] when the descriptor reports a larger size or more
/// bytes arrive while reading; [`NotebookError::Io`] for read failures.
pub fn read_bounded(file: &mut File, path: &Path) -> Result<Vec<u8>, NotebookError> {
    let limit = max_notebook_bytes();
    let len = file
        .metadata()
        .map_err(|e| NotebookError::io("inspect", path, e))?
        .len();
    if len > limit {
        return Err(too_large(path, len, limit));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    match file.take(limit + 1).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 > limit => Err(too_large(path, bytes.len() as u64, limit)),
        Ok(_) => Ok(bytes),
        Err(e) if e.kind() == ErrorKind::Interrupted => Err(NotebookError::io("read", path, e)),
        Err(e) => Err(NotebookError::io("read", path, e)),
    }
}

fn too_large(path: &Path, bytes: u64, limit: u64) -> NotebookError {
    NotebookError::TooLarge {
        path: path.to_path_buf(),
        bytes,
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn files_past_the_cap_are_refused_without_reading_them() {
        let dir = std::env::temp_dir().join(format!("jmcp-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.ipynb");
        std::fs::File::create(&small)
            .unwrap()
            .write_all(b"{}")
            .unwrap();
        // A sparse 3 GiB file: refused from its size alone (reading it would cost 3 GiB).
        let big = dir.join("big.ipynb");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(3 << 30).unwrap();
        let mut f = File::open(&big).unwrap();
        let err = read_bounded(&mut f, &big).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, NotebookError::TooLarge { .. }), "{msg}");
        assert!(msg.contains("--max-notebook-bytes"), "{msg}");
        assert!(msg.contains("big.ipynb"), "{msg}");
        let mut f = File::open(&small).unwrap();
        assert_eq!(read_bounded(&mut f, &small).unwrap(), b"{}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
