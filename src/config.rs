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
    /// Save kernel variables automatically (`--auto-checkpoint`): after
    /// `auto_checkpoint_idle` without executions, and on graceful shutdown.
    pub auto_checkpoint: bool,
    /// Idle time after a kernel's last execution before an automatic checkpoint.
    pub auto_checkpoint_idle: Duration,
    /// Time limits the server enforces on running cells.
    pub limits: Limits,
    /// Asset store options (SPEC §4).
    pub assets: AssetOptions,
    /// Bounds on memory, answers and the database of a long-running server (issues 8, 9).
    pub volume: VolumeLimits,
    /// The MCP transport serving this engine (reported by `server_status`).
    pub transport: ServerTransport,
    /// Warm kernels kept ready (`--kernel-pool`; 0: none). Started after recovery.
    pub kernel_pool: usize,
    /// Storage probe and bounds (SPEC §8).
    pub storage: StorageOptions,
    /// Remote kernels (SPEC §10, `--gateway-url` / `--gateway-token`): every kernel is started
    /// on this Jupyter Server / Kernel Gateway instead of locally. `None`: local kernels.
    pub gateway: Option<jmcp_kernel::Gateway>,
    /// Limits on the kernels themselves (SPEC §9): how many, how long idle, how much memory.
    pub kernels: KernelLimits,
}

/// Resource limits on kernels (SPEC §9, issue 11 item 3): `--max-kernels`,
/// `--cull-idle-after`, `--kernel-memory-limit`. All off by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelLimits {
    /// Kernels this server may run at once, the warm pool's included; a start past it fails
    /// with the list of running kernels.
    pub max_kernels: Option<usize>,
    /// A notebook's kernel idle (nothing running or queued) this long is stopped, after an
    /// automatic checkpoint when `--auto-checkpoint` is on; its next execution says so.
    pub cull_idle_after: Option<Duration>,
    /// Resident memory in bytes one kernel (its process group) may use; past it the kernel is
    /// stopped and its execution says so.
    pub memory_limit: Option<u64>,
}

/// `--storage-probe-interval` and `--storage-timeout` (SPEC §8).
#[derive(Debug, Clone, Copy)]
pub struct StorageOptions {
    /// Time between two probes of the data dir and the root (default 5 s).
    pub probe_interval: Duration,
    /// Bound on each probe attempt and on every storage touch of a tool call (default 5 s).
    pub timeout: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            probe_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The MCP transport a server speaks (`serve --transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerTransport {
    /// One client over stdin/stdout (the default).
    #[default]
    Stdio,
    /// Streamable HTTP daemon (SPEC §7).
    Http,
}

impl ServerTransport {
    /// `stdio` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerTransport::Stdio => "stdio",
            ServerTransport::Http => "http",
        }
    }
}

/// Bounds for a server that runs for months: `--max-result-bytes`,
/// `--max-execution-output-bytes`, `--max-notebook-bytes`, `--keep-executions-days`,
/// `--keep-executions`.
#[derive(Debug, Clone, Copy)]
pub struct VolumeLimits {
    /// Total bytes of one tool result for the model (text content plus structured content;
    /// images are counted apart, see `mcp::budget`). Default 48 KiB.
    pub max_result_bytes: usize,
    /// Bytes of nbformat outputs one execution keeps in memory, in its record and in the
    /// notebook; past it the middle outputs go to an asset and a marker output replaces them
    /// (head and tail kept). Default 16 MiB.
    pub max_execution_output_bytes: usize,
    /// Largest notebook file read, in bytes (default 256 MiB).
    pub max_notebook_bytes: u64,
    /// Finished executions older than this are deleted (default 30 days; `None`: kept).
    pub keep_executions_days: Option<f64>,
    /// At most this many finished executions are kept, newest first (default 100,000).
    pub keep_executions: Option<u64>,
    /// A notebook without a kernel, queue or pending writes, that no call uses, is forgotten
    /// after this long (its worker task ends; the next call starts a new one). Default 10 min.
    pub retire_idle_notebooks_after: Duration,
}

impl Default for VolumeLimits {
    fn default() -> Self {
        VolumeLimits {
            max_result_bytes: 48 * 1024,
            max_execution_output_bytes: 16 * 1024 * 1024,
            max_notebook_bytes: jmcp_notebook::limit::DEFAULT_MAX_NOTEBOOK_BYTES,
            keep_executions_days: Some(30.0),
            keep_executions: Some(100_000),
            retire_idle_notebooks_after: Duration::from_secs(600),
        }
    }
}

/// Asset store options: `--offload-outputs-over`, `--image-max-bytes`, `--image-max-dim`,
/// `--asset-lease-hours`.
#[derive(Debug, Clone, Copy)]
pub struct AssetOptions {
    /// Outputs larger than this many JSON bytes go into notebook files as asset links (off).
    pub offload_outputs_over: Option<usize>,
    /// Images shown to agents above this encoded size are downscaled.
    pub image_max_bytes: usize,
    /// Images shown to agents wider or taller than this are downscaled.
    pub image_max_dim: u32,
    /// Lease of an asset after it was last produced or read, in hours.
    pub lease_hours: f64,
}

impl Default for AssetOptions {
    fn default() -> Self {
        AssetOptions {
            offload_outputs_over: None,
            image_max_bytes: 512 * 1024,
            image_max_dim: 1024,
            lease_hours: 24.0,
        }
    }
}

/// Time limits on executions (SPEC §5 "Time limits"; issue 3).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Interrupt a cell running longer than this (`--max-cell-seconds`; default off).
    pub max_cell: Option<Duration>,
    /// Interrupt a cell whose `input()` prompt stays unanswered this long.
    pub input_timeout: Duration,
    /// Let cells call `input()` (`allow_stdin` of each `execute_request`). `run` turns it off
    /// so that `input()` fails at once, as under nbclient.
    pub allow_stdin: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cell: None,
            input_timeout: Duration::from_secs(300),
            allow_stdin: true,
        }
    }
}

impl Config {
    /// Connection files and kernel logs: a private runtime folder *outside* the data dir,
    /// `$XDG_RUNTIME_DIR/jupyter-mcp-<hash>` (else `/tmp/jupyter-mcp-<uid>/<hash>`), where
    /// `<hash>` is 16 hex digits of the SHA-256 of the data dir's path. A kernel's argv names
    /// its connection file, so this keeps the data dir (and `secret.key` in it) out of every
    /// kernel's argv (issue 9 item 2). Created mode 0700 by the launcher.
    pub fn kernels_dir(&self) -> PathBuf {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.data_dir.as_os_str().as_encoded_bytes());
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
            Some(dir) if dir.is_absolute() && dir.is_dir() => {
                dir.join(format!("jupyter-mcp-{hash}"))
            }
            _ => std::env::temp_dir()
                .join(format!(
                    "jupyter-mcp-{}",
                    rustix::process::geteuid().as_raw()
                ))
                .join(hash),
        }
    }

    /// `DATA_DIR/state.db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }
}
