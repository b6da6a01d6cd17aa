//! `server_status` (issue 10 item 8): what this server is and how busy it is — version,
//! transport, uptime, data dir, kernels by state, the warm pool, queue depth, MCP sessions,
//! `/events` subscribers and the storage state. Reads memory only (no file or database I/O),
//! so it answers even when storage does not (SPEC §8).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rmcp::handler::server::common::schema_for_output;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData as McpError};
use schemars::JsonSchema;
use serde::Serialize;

use super::results::ok;
use super::server::JupyterMcp;
use crate::config::ServerTransport;

/// The warm kernel pool (`--kernel-pool`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct PoolStatus {
    /// Kernels the pool keeps started and idle (0: no pool).
    pub size: usize,
    /// Pool kernels ready now (the rest are starting).
    pub ready: usize,
    /// Process ids of the ready pool kernels.
    pub pids: Vec<u32>,
}

/// Structured result of `server_status`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerStatus {
    /// jupyter-mcp version.
    pub version: String,
    /// MCP transport: stdio or http.
    pub transport: String,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
    /// Server state directory.
    pub data_dir: String,
    /// Notebook root folder.
    pub root: String,
    /// Kernels of this server by state (starting, idle, busy; pool = warm pool kernels not yet
    /// given to a notebook). States with no kernel are absent.
    pub kernels: BTreeMap<String, usize>,
    /// Kernels in all (every state, pool included).
    pub kernels_total: usize,
    /// The warm kernel pool.
    pub pool: PoolStatus,
    /// Executions queued (pending), all notebooks.
    pub queue_depth: usize,
    /// MCP sessions connected (stdio: the one client).
    pub sessions: usize,
    /// Clients subscribed to /events.
    pub events_clients: usize,
    /// Storage state (SPEC §8): "ok" while both storage breakers (data dir, root) are
    /// closed, else what is not answering and since when.
    pub storage: String,
}

#[tool_router(router = status_router, vis = "pub(crate)")]
impl JupyterMcp {
    /// Status of this jupyter-mcp server: version, transport, uptime, data dir, kernels by state, warm pool, queued executions, sessions, storage.
    #[tool(output_schema = schema_for_output::<ServerStatus>())]
    async fn server_status(&self) -> Result<CallToolResult, McpError> {
        let e = &self.engine;
        let cfg = e.config();
        let kernels = e.kernels_by_state();
        let transport = cfg.transport;
        let status = ServerStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            transport: transport.as_str().to_string(),
            uptime_seconds: e.started().elapsed().as_secs(),
            data_dir: cfg.data_dir.display().to_string(),
            root: cfg.root.path().display().to_string(),
            kernels_total: kernels.values().sum(),
            kernels,
            pool: PoolStatus {
                size: e.pool_target(),
                ready: e.pool_ready(),
                pids: e.pool_pids(),
            },
            queue_depth: e.queue_depth(),
            sessions: match transport {
                ServerTransport::Stdio => 1,
                ServerTransport::Http => e.mcp_sessions().load(Ordering::Relaxed),
            },
            events_clients: e.events().subscribers(),
            storage: e.storage().state(),
        };
        let by_state = if status.kernels.is_empty() {
            "none".to_string()
        } else {
            status
                .kernels
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = format!(
            "jupyter-mcp {} over {}, up {} s\ndata dir: {}\nroot: {}\nkernels: {by_state}\nwarm pool: {} of {} ready\nqueued executions: {}\nsessions: {}\n/events clients: {}\nstorage: {}",
            status.version,
            status.transport,
            status.uptime_seconds,
            status.data_dir,
            status.root,
            status.pool.ready,
            status.pool.size,
            status.queue_depth,
            status.sessions,
            status.events_clients,
            status.storage,
        );
        Ok(ok(&status, text, vec![]))
    }
}
