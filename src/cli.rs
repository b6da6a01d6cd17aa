//! Command line (SPEC §1): `serve`, `connect`, `run`, `doctor`, and the shared options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::paths::Root;

pub mod bytes;
pub mod seconds;

/// jupyter-mcp: AI agents work in real Jupyter kernels and notebooks over MCP.
#[derive(Debug, Parser)]
#[command(name = "jupyter-mcp", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP (stdio by default).
    Serve(ServeArgs),
    /// Execute every code cell of a notebook headlessly and write the outputs into it.
    Run(RunArgs),
    /// A stdio MCP server that forwards every message to the shared daemon's /mcp (SPEC §7).
    Connect(ConnectArgs),
    /// Pre-flight checks, one line each: data dir and root writable and answering, disk space,
    /// state.db integrity, server.lock, leftover kernels, kernelspecs, port. Exits 1 on a
    /// failed check.
    Doctor(DoctorArgs),
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Shared {
    /// Notebooks live under here; no path may resolve outside it (default: working directory).
    #[arg(long, env = "JUPYTER_MCP_ROOT")]
    pub root: Option<PathBuf>,
    /// Server state directory (default: ~/.local/share/jupyter-mcp).
    #[arg(long, env = "JUPYTER_MCP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Bytes of output text per cell returned to the agent.
    #[arg(long, default_value_t = 8192)]
    pub max_text_bytes: usize,
    /// Seconds a kernel may take to start.
    #[arg(long, default_value_t = 60.0, value_parser = seconds::seconds)]
    pub kernel_start_timeout: f64,
    /// Interrupt any cell that runs longer than this many seconds (default: no limit).
    #[arg(long, value_parser = seconds::seconds)]
    pub max_cell_seconds: Option<f64>,
    /// Interrupt a cell whose input() prompt is not answered (send_input) within this many seconds.
    #[arg(long, default_value_t = 300.0, value_parser = seconds::seconds)]
    pub input_timeout: f64,
    /// Write outputs larger than this many bytes into the notebook file as a link to their
    /// asset instead of in full (default: off; the execution record keeps them whole).
    #[arg(long, value_name = "BYTES")]
    pub offload_outputs_over: Option<usize>,
    /// Images shown to the agent larger than this many bytes are downscaled (the asset keeps
    /// the original).
    #[arg(long, default_value_t = 512 * 1024, value_name = "BYTES")]
    pub image_max_bytes: usize,
    /// Images shown to the agent wider or taller than this many pixels are downscaled.
    #[arg(long, default_value_t = 1024, value_name = "PIXELS")]
    pub image_max_dim: u32,
    /// Keep an asset at least this many hours after it was last produced or read (garbage
    /// collection by prune_assets also requires that nothing references it).
    #[arg(long, default_value_t = 24.0, value_name = "HOURS", value_parser = seconds::hours)]
    pub asset_lease_hours: f64,
    /// Total bytes of one tool result for the model (all text and structured content of the
    /// call; the rest is paged: read_asset, offsets, get_execution).
    #[arg(long, default_value_t = 48 * 1024, value_name = "BYTES")]
    pub max_result_bytes: usize,
    /// Resident memory one kernel (with its child processes) may use, in bytes or with a unit
    /// (512M, 2G, 1.5GiB). A kernel past it is stopped; the execution says so and how to raise
    /// it (default: no limit).
    #[arg(long, value_name = "BYTES", value_parser = bytes::parse_bytes)]
    pub kernel_memory_limit: Option<u64>,
    /// Bytes of outputs one execution keeps (memory, record, notebook); past it the middle
    /// outputs are stored as an asset and replaced by one marker output (head and tail kept).
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub max_execution_output_bytes: usize,
    /// Refuse notebook files larger than this many bytes (they are not read).
    #[arg(long, default_value_t = jmcp_notebook::limit::DEFAULT_MAX_NOTEBOOK_BYTES, value_name = "BYTES")]
    pub max_notebook_bytes: u64,
    /// Delete finished executions older than this many days (0: keep forever). Pending and
    /// running ones, and the last one of each notebook cell, are never deleted.
    #[arg(long, default_value_t = 30.0, value_name = "DAYS")]
    pub keep_executions_days: f64,
    /// Keep at most this many finished executions, newest first (0: no count limit).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub keep_executions: u64,
    /// Seconds between two storage probes (write, fsync, read back, delete a small file in
    /// the data dir and in the root; SPEC §8).
    #[arg(long, env = "JUPYTER_MCP_STORAGE_PROBE_INTERVAL", value_name = "SECONDS", default_value_t = 5.0, value_parser = seconds::seconds)]
    pub storage_probe_interval: f64,
    /// Seconds a storage probe or any file or database operation of a tool call may take
    /// before the storage counts as not answering (the call fails with what to do).
    #[arg(long, env = "JUPYTER_MCP_STORAGE_TIMEOUT", value_name = "SECONDS", default_value_t = 5.0, value_parser = seconds::seconds)]
    pub storage_timeout: f64,
    /// Run kernels on this Jupyter Server / Kernel Gateway / Enterprise Gateway
    /// (http://HOST:PORT[/base]) instead of locally (SPEC §10).
    #[arg(long, env = "JUPYTER_MCP_GATEWAY_URL", value_name = "URL")]
    pub gateway_url: Option<String>,
    /// Token of the gateway, sent as `Authorization: token T` (never logged).
    #[arg(
        long,
        env = "JUPYTER_MCP_GATEWAY_TOKEN",
        value_name = "T",
        hide_env_values = true
    )]
    pub gateway_token: Option<String>,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub shared: Shared,
    /// Transport: stdio (one client), or http (the daemon: MCP Streamable HTTP at /mcp, plus
    /// /health/live, /health/ready and /metrics).
    #[arg(long, value_enum, default_value = "stdio")]
    pub transport: Transport,
    /// HTTP: the address and port to listen on (port 0 picks a free one; the URL is written
    /// to DATA_DIR/daemon.json). A non-loopback address is reachable from other machines.
    #[arg(long, value_name = "ADDR:PORT", default_value = crate::http::DEFAULT_BIND)]
    pub bind: std::net::SocketAddr,
    /// HTTP: the bearer token clients must send (default: the content of DATA_DIR/token,
    /// generated on first start). Prefer the environment variable: flags show in `ps`.
    #[arg(long, env = "JUPYTER_MCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// HTTP: also accept requests whose Origin header is this URL (scheme://host[:port]);
    /// repeatable. The server's own origins are always accepted.
    #[arg(long = "allowed-origin", value_name = "URL")]
    pub allowed_origins: Vec<String>,
    /// HTTP: after SIGTERM/SIGINT, how many seconds running executions may take to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 25.0, value_parser = seconds::seconds_or_zero)]
    pub shutdown_grace: f64,
    /// Start a new session (setsid) first, detached from the caller's terminal (used by
    /// `connect --spawn`).
    #[arg(long, hide = true)]
    pub detach: bool,
    /// Stop kernels when the server exits (default: keep them running for the next start).
    #[arg(long)]
    pub stop_kernels_on_exit: bool,
    /// Save the kernels' variables automatically (rolling checkpoints auto-1..auto-3):
    /// when a kernel has been idle for --auto-checkpoint-idle after its last execution,
    /// and on graceful shutdown. After a kernel dies, the next result offers to restore.
    #[arg(long)]
    pub auto_checkpoint: bool,
    /// Idle time before an automatic checkpoint, e.g. 90s, 30m, 2h.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = crate::checkpoint::auto::parse_duration)]
    pub auto_checkpoint_idle: Duration,
    /// Keep this many kernels of the default kernelspec started and idle, so that the first
    /// execution in a new notebook does not wait for a kernel to boot (default 0: none). Pool
    /// kernels are stopped when the server exits.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub kernel_pool: usize,
    /// At most N kernels at once, the warm pool's included (default: no limit). A start past
    /// it fails with the list of running kernels and how to stop one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_kernels: Option<u32>,
    /// Stop a notebook's kernel after it stayed idle (nothing running or queued) this long,
    /// e.g. 30m, 2h (default: never). With --auto-checkpoint its variables are saved first and
    /// the next execution offers to restore them.
    #[arg(long, value_name = "DURATION", value_parser = crate::checkpoint::auto::parse_duration)]
    pub cull_idle_after: Option<Duration>,
    /// What to do at start with executions that were running when the server died:
    /// `interrupt` (default; a surviving kernel is asked how they ended) or `retry` (run again).
    #[arg(long, value_enum, default_value = "interrupt")]
    pub recover: Recover,
}

/// `--recover` values.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Recover {
    Interrupt,
    Retry,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The notebook to execute (relative to the working directory).
    pub notebook: PathBuf,
    /// Per-cell time limit in seconds (default: none). A cell over it is interrupted.
    #[arg(long, value_parser = seconds::seconds)]
    pub timeout: Option<f64>,
    /// Kernel to run the notebook with, overriding the kernelspec its metadata names
    /// (default: the notebook's own, else python3).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Keep going after a cell raises (like nbclient's allow_errors).
    #[arg(long)]
    pub allow_errors: bool,
    #[command(flatten)]
    pub shared: Shared,
}

/// `connect` options.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The daemon's MCP URL (default: from DATA_DIR/daemon.json, else
    /// http://127.0.0.1:3000/mcp).
    pub url: Option<String>,
    /// Start the daemon (detached, logging to DATA_DIR/daemon.log) when none answers, bound
    /// to the URL's address and port.
    #[arg(long)]
    pub spawn: bool,
    /// The bearer token (default: JUPYTER_MCP_TOKEN, else the content of DATA_DIR/token).
    #[arg(long, env = "JUPYTER_MCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With --spawn: one more `serve` option for the daemon it starts, e.g.
    /// `--serve-arg=--kernel-pool=1` (repeatable). The options every command takes (--root,
    /// --max-text-bytes, ...) are passed on already.
    #[arg(long = "serve-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    #[command(flatten)]
    pub shared: Shared,
}

/// `doctor` options.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The daemon address to check (default: 127.0.0.1:3000, where a taken port is only a
    /// warning; given explicitly, a taken port fails the check).
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub shared: Shared,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// MCP transport.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    Http,
}

impl Shared {
    /// Builds the engine configuration; `default_root` is used when `--root` is absent.
    pub fn config(
        &self,
        default_root: &Path,
        stop_kernels_on_exit: bool,
    ) -> anyhow::Result<Config> {
        let root_dir = self
            .root
            .clone()
            .unwrap_or_else(|| default_root.to_path_buf());
        let root = Root::new(&root_dir)?;
        let data_dir = self.data_dir()?;
        Ok(Config {
            root,
            data_dir,
            max_text_bytes: self.max_text_bytes.max(256),
            kernel_start_timeout: Duration::from_secs_f64(
                self.kernel_start_timeout.clamp(1.0, 3600.0),
            ),
            stop_kernels_on_exit,
            default_kernel: "python3".into(),
            auto_checkpoint: false,
            auto_checkpoint_idle: crate::checkpoint::auto::DEFAULT_IDLE,
            limits: crate::config::Limits {
                max_cell: self
                    .max_cell_seconds
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64),
                input_timeout: Duration::from_secs_f64(self.input_timeout.clamp(1.0, 86_400.0)),
                allow_stdin: true,
            },
            assets: crate::config::AssetOptions {
                offload_outputs_over: self.offload_outputs_over.filter(|n| *n > 0),
                image_max_bytes: self.image_max_bytes.max(1024),
                image_max_dim: self.image_max_dim.clamp(16, 16_384),
                lease_hours: if self.asset_lease_hours.is_finite() {
                    self.asset_lease_hours.clamp(0.0, 24.0 * 3650.0)
                } else {
                    24.0
                },
            },
            volume: self.volume()?,
            transport: crate::config::ServerTransport::Stdio,
            kernel_pool: 0,
            storage: crate::config::StorageOptions {
                probe_interval: Duration::from_secs_f64(self.storage_probe_interval.max(0.05)),
                timeout: Duration::from_secs_f64(self.storage_timeout.max(0.05)),
            },
            gateway: match self.gateway_url.as_deref().filter(|u| !u.trim().is_empty()) {
                Some(url) => Some(jmcp_kernel::Gateway::new(url, self.gateway_token.clone())?),
                None => None,
            },
            kernels: crate::config::KernelLimits {
                memory_limit: self.kernel_memory_limit,
                ..Default::default()
            },
        })
    }

    /// The data dir: `--data-dir` / `JUPYTER_MCP_DATA_DIR`, else the platform data dir.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(d) => Ok(d.clone()),
            None => dirs::data_dir()
                .map(|d| d.join("jupyter-mcp"))
                .ok_or_else(|| anyhow::anyhow!("no data directory: pass --data-dir")),
        }
    }

    /// The volume bounds; refuses values that cannot work (with the flag's name).
    fn volume(&self) -> anyhow::Result<crate::config::VolumeLimits> {
        if !self.keep_executions_days.is_finite() || self.keep_executions_days < 0.0 {
            anyhow::bail!(
                "--keep-executions-days must be a number of days >= 0 (0 keeps executions forever), not {}",
                self.keep_executions_days
            );
        }
        jmcp_notebook::limit::set_max_notebook_bytes(self.max_notebook_bytes);
        Ok(crate::config::VolumeLimits {
            max_result_bytes: self.max_result_bytes.max(4096),
            max_execution_output_bytes: self.max_execution_output_bytes.max(64 * 1024),
            max_notebook_bytes: self.max_notebook_bytes.max(1),
            keep_executions_days: (self.keep_executions_days > 0.0)
                .then_some(self.keep_executions_days.min(365.0 * 100.0)),
            keep_executions: (self.keep_executions > 0).then_some(self.keep_executions),
            ..Default::default()
        })
    }

    /// Installs the stderr logger (RUST_LOG sets levels; default warn, and error for the
    /// ZeroMQ crate, whose reconnect warnings are noise when a kernel exits).
    pub fn init_logging(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,zeromq=error"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let _ = match self.log_format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
    }
}
