//! jupyter-mcp: an MCP server that lets AI agents work in Jupyter — real kernels, real
//! notebooks, durable executions. See ARCHITECTURE.md for the map.
//!
//! - [`engine`]: notebooks, kernels and executions, independent of transport.
//! - [`mcp`]: the MCP surface (rmcp), the only layer that knows MCP types.
//! - [`http`]: daemon mode (MCP Streamable HTTP, health, metrics); [`connect`]: the stdio bridge to it.
//! - [`run`]: the headless `jupyter-mcp run` command.
//! - [`store`]: the SQLite state database.
//! - [`paths`]: confinement of paths to the root.
//! - [`storage`]: storage probe, breakers and bounded storage calls (SPEC §8).
//! - [`web`]: the live web view served by the daemon at `/`.

pub mod assets;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod connect;
pub mod doctor;
pub mod engine;
pub mod events;
pub mod http;
pub mod lock;
pub mod mcp;
pub mod metrics;
pub mod paths;
pub mod run;
pub mod storage;
pub mod store;
pub mod web;
