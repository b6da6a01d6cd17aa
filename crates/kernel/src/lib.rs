//! Jupyter kernels for jupyter-mcp: find kernelspecs, launch kernels in their own process
//! group, and talk to them over ZeroMQ following the Jupyter messaging protocol (v5.3).
//!
//! - [`spec`]: kernelspec discovery the way `jupyter_client` does it.
//! - [`launch`]: connection files, port reservation, spawning, kernel log capture.
//! - [`client`]: one [`KernelClient`] per kernel; IOPub, shell, stdin and control replies are
//!   routed to the request that caused them by exact `parent_header.msg_id`.
//! - [`wire`]: the raw message shape we keep (header/parent/content as JSON, losslessly).
//! - [`ports`]: ports handed to kernels still starting, so that starts run in parallel.
//! - [`orphans`]: bounded buffer for messages whose parent is not known yet.
//! - [`process`]: PIDs, process start times, exit notification and signals.
//! - `transport`: the boundary of a client: ZeroMQ sockets of a local kernel, or the kernel
//!   WebSocket of a remote one; routing, orphans and states are shared.
//! - [`remote`]: kernels on a Jupyter Server / Kernel Gateway (REST lifecycle + WebSocket).
//! - [`memory`]: resident memory of kernels (their process groups) from `/proc`.

pub mod client;
pub mod error;
pub mod launch;
pub mod memory;
pub mod orphans;
pub mod ports;
pub mod process;
pub mod remote;
pub mod sandbox;
pub mod spec;
pub mod start;
mod transport;
pub mod wire;

pub use client::{ExecuteOptions, KernelClient, KernelEvent, RequestHandle};
pub use error::KernelError;
pub use launch::{LaunchOptions, LaunchedKernel};
pub use remote::{Gateway, RemoteKernel};
pub use spec::{find_kernelspec, list_kernelspecs, InterruptMode, KernelSpec};
pub use start::{start_kernel, StartedKernel};
pub use wire::WireMessage;

/// Result alias for this crate.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;
