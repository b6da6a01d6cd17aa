//! The MCP server handler: server info, instructions, and the tool routers of the three tool
//! families (notebook editing, execution, kernels).

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool_handler, ServerHandler};

use crate::engine::{Engine, EngineError};
use crate::paths::RootedPath;

use super::results::fail;

const INSTRUCTIONS: &str = "jupyter-mcp runs code in real Jupyter kernels and keeps the work in \
.ipynb notebook files under a root folder. Typical flow: create_notebook (or list_notebooks / \
read_notebook), insert_cell, execute_cell, read the outputs. Every notebook has its own kernel (a \
live Python process whose variables persist between cells) that starts on first execution. Long \
cells keep running after the call returns: you get status \"running\" and an execution_id to poll \
with get_execution(wait_s=...). Cell ids (not positions) address cells.";

/// The MCP service: an engine plus the tool router.
#[derive(Clone)]
pub struct JupyterMcp {
    pub(crate) engine: Engine,
    tool_router: ToolRouter<JupyterMcp>,
    /// Tasks cancelled through this server, shared by every session (see `tasks`).
    pub(crate) cancelled: std::sync::Arc<super::tasks::Cancelled>,
    /// `inputRequests` keys of 2026-07-28 tasks, shared by every session (see `tasks::ext`).
    pub(crate) prompts: std::sync::Arc<super::tasks::ext::Prompts>,
    /// Who this session's executions are recorded as requested by (`requested_by`, shown
    /// by the web view): "MCP session <id> (<clientInfo name> <version>)". Fresh per
    /// pipeline ([`JupyterMcp::for_session`]); the client part is set at `initialize`.
    requester: std::sync::Arc<std::sync::Mutex<String>>,
}

impl JupyterMcp {
    /// A service over `engine`.
    pub fn new(engine: Engine) -> JupyterMcp {
        let assets_router = Self::assets_router(&engine);
        JupyterMcp {
            engine,
            tool_router: Self::notebook_router()
                + Self::exec_router()
                + Self::kernel_router()
                + Self::checkpoint_router()
                + Self::status_router()
                + assets_router,
            cancelled: Default::default(),
            prompts: Default::default(),
            requester: std::sync::Arc::new(std::sync::Mutex::new("MCP client".into())),
        }
    }

    /// This service for one new MCP session: same engine and tools, its own requester label
    /// ("MCP session" and 8 hex digits of a fresh id, until `initialize` names the client).
    pub(crate) fn for_session(&self) -> JupyterMcp {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut svc = self.clone();
        svc.requester =
            std::sync::Arc::new(std::sync::Mutex::new(format!("MCP session {}", &id[..8])));
        svc
    }

    /// Records the client's `clientInfo` (from `initialize`) in the requester label.
    pub(crate) fn set_client_info(&self, name: &str, version: &str) {
        let clean = |s: &str| -> String {
            s.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        };
        let client = format!("{} {}", clean(name), clean(version));
        if let Ok(mut r) = self.requester.lock() {
            let base = r.split(" (").next().unwrap_or("MCP client").to_string();
            *r = format!("{base} ({})", client.trim());
        }
    }

    /// Who this session's executions are requested by (see the `requester` field).
    pub(crate) fn requester(&self) -> String {
        self.requester
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|_| "MCP client".into())
    }

    /// Resolves a notebook path or returns the tool error to give back. Bounded by
    /// `--storage-timeout` (resolving symlinks touches the root, SPEC §8).
    pub(crate) async fn path(
        &self,
        notebook: &str,
    ) -> Result<RootedPath, rmcp::model::CallToolResult> {
        self.engine
            .resolve_notebook(notebook)
            .await
            .map_err(|e| fail(e.to_string()))
    }

    /// Resolves an optional notebook filter to its root-relative path.
    pub(crate) async fn optional_notebook(
        &self,
        notebook: Option<&str>,
    ) -> Result<Option<String>, rmcp::model::CallToolResult> {
        match notebook {
            None => Ok(None),
            Some(n) => self.path(n).await.map(|p| Some(p.rel)),
        }
    }

    /// The input schema of the tool called `name`, if there is one.
    pub(crate) fn input_schema(
        &self,
        name: &str,
    ) -> Option<std::sync::Arc<rmcp::model::JsonObject>> {
        self.tool_router.get(name).map(|t| t.input_schema.clone())
    }

    /// Bound on text per cell.
    pub(crate) fn max_text(&self) -> usize {
        self.engine.config().max_text_bytes
    }

    /// The byte budget of one result (`--max-result-bytes`, `--max-text-bytes`).
    pub(crate) fn budget(&self) -> super::budget::Budget {
        super::budget::Budget::new(
            self.engine.config().volume.max_result_bytes,
            self.max_text(),
        )
    }
}

/// Engine errors become tool errors (`isError: true`) with the engine's message.
pub(crate) fn tool_error(e: EngineError) -> rmcp::model::CallToolResult {
    fail(e.to_string())
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for JupyterMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(
            "jupyter-mcp",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS)
    }

    /// Assets as resources (see `resources`).
    async fn list_resources(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, rmcp::ErrorData> {
        super::resources::list(request).await
    }

    /// One asset's content (see `resources`).
    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        super::resources::read(request).await.map(Into::into)
    }
}
