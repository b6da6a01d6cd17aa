//! Plain data the engine hands to its callers (the MCP layer converts these at its edge).

use serde_json::Value;

use crate::store::{ExecutionRecord, Status};

/// One code cell to queue.
#[derive(Debug, Clone)]
pub struct SubmitItem {
    /// Cell id (None for `execute_code`).
    pub cell_id: Option<String>,
    /// Code to run.
    pub code: String,
    /// Errors do not stop a batch (nbclient tag `raises-exception`).
    pub allow_error: bool,
}

/// An execution as the caller sees it: stored state plus, while it runs, outputs so far.
#[derive(Debug, Clone)]
pub struct ExecutionView {
    /// Stored record (outputs replaced by the live ones while running).
    pub record: ExecutionRecord,
    /// Prompt of an unanswered `input()`, while running.
    pub input_prompt: Option<String>,
}

impl ExecutionView {
    /// Current status.
    pub fn status(&self) -> Status {
        self.record.status
    }

    /// Milliseconds between start and finish, when both are known.
    pub fn duration_ms(&self) -> Option<i64> {
        let parse = |s: &Option<String>| {
            s.as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        Some(
            (parse(&self.record.finished_at)? - parse(&self.record.started_at)?).num_milliseconds(),
        )
    }
}

/// A kernel serving a notebook.
#[derive(Debug, Clone)]
pub struct KernelView {
    /// Notebook path relative to the root.
    pub notebook: String,
    /// Kernelspec name.
    pub kernel_name: String,
    /// Process id.
    pub pid: Option<u32>,
    /// `starting`, `idle`, `busy`, `dead`, or `none` when no kernel runs.
    pub state: String,
    /// Executions waiting in this notebook's queue.
    pub queue_depth: i64,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// Where a remote kernel runs: `<gateway URL> kernel <id>` (SPEC §10); `None` locally.
    pub location: Option<String>,
    /// Resident bytes of the kernel's process group at the last memory sample.
    pub memory_bytes: Option<u64>,
    /// Seconds since the kernel last became idle; `None` unless idle.
    pub idle_seconds: Option<f64>,
}

/// A cell as listed by `read_notebook`.
#[derive(Debug, Clone)]
pub struct CellView {
    /// Cell id.
    pub id: String,
    /// Position.
    pub index: usize,
    /// `code`, `markdown`, `raw`.
    pub cell_type: String,
    /// Source text.
    pub source: String,
    /// Prompt number.
    pub execution_count: Option<i64>,
    /// nbformat outputs.
    pub outputs: Vec<Value>,
    /// Tags from metadata.
    pub tags: Vec<String>,
}
