//! The MCP surface (rmcp): tools over stdio and (through `crate::http`) Streamable HTTP. This is the only layer that knows MCP types;
//! it converts tool arguments into engine calls and engine views into tool results.

// Tool helpers return `Result<_, CallToolResult>` whose error is the finished tool result itself;
// it is returned to the client at once, never propagated, so its size does not matter.
#![allow(clippy::result_large_err)]

/// Inside a tool: unwraps `Result<T, CallToolResult>`, answering the call with the failure
/// result (`isError: true`) when it is one.
macro_rules! tool_try {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(failure) => return Ok(failure),
        }
    };
}

mod arguments;
mod budget;
pub(crate) mod frames;
mod params;
mod pipeline;
mod resources;
mod results;
mod server;
mod session;
mod tasks;
mod tools_assets;
mod tools_checkpoint;
mod tools_exec;
mod tools_kernel;
mod tools_notebook;
mod tools_status;
mod transport;

pub(crate) use pipeline::{Pipeline, Started};
pub use server::JupyterMcp;
pub(crate) use session::TaskScope;

use crate::engine::Engine;

/// Serves MCP over stdin/stdout until the client disconnects. Logs go to stderr.
/// The front layer in front of rmcp (`pipeline`) answers malformed input, MCP tasks
/// (2025-11-25) and revision differences.
pub async fn serve_stdio(engine: Engine) -> anyhow::Result<()> {
    transport::serve(
        JupyterMcp::new(engine),
        tokio::io::stdin(),
        tokio::io::stdout(),
    )
    .await
}
