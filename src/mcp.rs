//! The MCP surface (rmcp): tools over stdio. This is the only layer that knows MCP types;
//! it converts tool arguments into engine calls and engine views into tool results.

// Tool helpers return `Result<_, CallToolResult>` whose error is the finished tool result itself;
// it is returned to the client at once, never propagated, so its size does not matter.
#![allow(clippy::result_large_err)]

mod params;
mod results;
mod server;
mod tools_exec;
mod tools_kernel;
mod tools_notebook;

pub use server::JupyterMcp;

use rmcp::ServiceExt as _;

use crate::engine::Engine;

/// Serves MCP over stdin/stdout until the client disconnects. Logs go to stderr.
pub async fn serve_stdio(engine: Engine) -> anyhow::Result<()> {
    let service = JupyterMcp::new(engine)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP initialization failed: {e}"))?;
    service.waiting().await?;
    Ok(())
}
