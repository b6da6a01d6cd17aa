//! Runtime configuration shared by every command (built by `cli` from flags and environment).

use std::path::PathBuf;
use std::time::Duration;

use crate::paths::Root;

/// What the engine needs to know; see SPEC §1 for the flags that set these.
#[derive(Debug, Clone)]
pub struct Config {
    /// Notebooks live under here.
    pub root: Root,
    /// Server state (`state.db`, `kernels/`, ...).
    pub data_dir: PathBuf,
    /// Per-cell bound on text returned to the agent, in bytes (default 8 KiB).
    pub max_text_bytes: usize,
    /// How long a kernel may take to become ready.
    pub kernel_start_timeout: Duration,
    /// Shut kernels down when the server exits (default: keep them for reattaching).
    pub stop_kernels_on_exit: bool,
    /// Kernel to use when neither the notebook nor the caller names one.
    pub default_kernel: String,
}

impl Config {
    /// `DATA_DIR/kernels`: connection files and kernel logs.
    pub fn kernels_dir(&self) -> PathBuf {
        self.data_dir.join("kernels")
    }

    /// `DATA_DIR/state.db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }
}
