//! The error type of the kernel layer: every variant says what failed, for which kernel,
//! and carries what the user needs to act (installed kernelspecs, the kernel's stderr tail).

use std::path::PathBuf;

/// Errors from discovering, launching and talking to kernels.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// No kernelspec with this name in any searched directory.
    #[error(
        "kernelspec '{name}' is not installed. Installed kernelspecs: {}. Searched: {}. \
         Install the kernel (e.g. `pip install ipykernel` in the environment) or pick one of the installed names.",
        if available.is_empty() { "none".to_string() } else { available.join(", ") },
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    KernelspecNotFound {
        name: String,
        available: Vec<String>,
        searched: Vec<PathBuf>,
    },
    /// A kernel.json that cannot be used.
    #[error("kernelspec at {path} is invalid: {reason}")]
    InvalidKernelspec { path: PathBuf, reason: String },
    /// The kernel process could not be started, or exited before it was ready.
    #[error(
        "kernel '{name}' failed to start: {reason}{}",
        stderr_suffix(stderr_tail)
    )]
    StartFailed {
        name: String,
        reason: String,
        stderr_tail: Vec<String>,
    },
    /// The kernel did not answer in time.
    #[error("kernel did not answer {what} within {seconds:.1} s")]
    Timeout { what: String, seconds: f64 },
    /// The kernel process is gone.
    #[error("kernel died{}", stderr_suffix(stderr_tail))]
    Died { stderr_tail: Vec<String> },
    /// The ZeroMQ connection failed.
    #[error("kernel connection error while {action}: {source}")]
    Connection {
        action: String,
        #[source]
        source: jupyter_zmq_client::RuntimeError,
    },
    /// The client was closed (kernel shut down or the server is stopping).
    #[error("kernel connection closed")]
    Closed,
    /// A Jupyter Server / Kernel Gateway did not do what was asked (unreachable, refused the
    /// token, no such kernel, an error status). `url` is the gateway's base URL; the token is
    /// never part of any message.
    #[error("Jupyter gateway {url}: {message}")]
    Gateway { url: String, message: String },
    /// File or process I/O failed.
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

impl KernelError {
    /// Wraps an I/O error with what we were doing.
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        KernelError::Io {
            action: action.into(),
            source,
        }
    }

    /// Wraps a connection error with what we were doing.
    pub fn connection(action: impl Into<String>, source: jupyter_zmq_client::RuntimeError) -> Self {
        KernelError::Connection {
            action: action.into(),
            source,
        }
    }
}

fn stderr_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(". Last lines of the kernel's stderr:\n{}", lines.join("\n"))
    }
}
