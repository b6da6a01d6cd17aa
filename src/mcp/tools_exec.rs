//! Execution tools: run cells and code, follow and cancel executions, answer input().

use std::time::{Duration, Instant};

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock as Content, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::{Peer, RequestContext, RoleServer};
use rmcp::{tool, tool_router, ErrorData as McpError};
use schemars::JsonSchema;
use serde::Serialize;

use super::params::*;
use super::results::{self, fail, ok, ExecutionResult};
use super::server::{tool_error, JupyterMcp};
use crate::engine::{EngineError, ExecutionView, SubmitItem};
use crate::paths::RootedPath;
use crate::store::Status;

pub(super) const DEFAULT_TIMEOUT_S: f64 = 30.0;
/// Longest a single call may wait (a cell keeps running past it).
const MAX_WAIT_S: f64 = 3600.0;

pub(super) fn wait_duration(secs: Option<f64>, default: f64) -> Duration {
    let s = secs.unwrap_or(default);
    Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.0, MAX_WAIT_S)
    } else {
        default
    })
}

#[derive(Serialize, JsonSchema)]
pub struct SkippedCell {
    /// The cell.
    pub cell_id: String,
    /// Its position.
    pub index: usize,
    /// Why it was not run: markdown/raw cell, empty, or tagged skip-execution.
    pub reason: String,
}

#[derive(Serialize, JsonSchema)]
pub struct RunAllResult {
    /// One entry per queued code cell, in notebook order.
    pub executions: Vec<ExecutionResult>,
    /// Cells not run, with the reason.
    pub skipped: Vec<SkippedCell>,
    /// Executions of the batch not in `executions` because the result's byte budget
    /// (--max-result-bytes) was spent: they run all the same (see get_execution).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlisted: Option<Unlisted>,
}

/// Executions of a run_all_cells batch left out of its result (they are in cell order).
#[derive(Serialize, JsonSchema)]
pub struct Unlisted {
    /// How many.
    pub count: usize,
    /// The first one left out.
    pub first_execution_id: String,
    /// The last one (the batch's last execution).
    pub last_execution_id: String,
}

#[derive(Serialize, JsonSchema)]
pub struct ExecutionList {
    /// Executions, newest first.
    pub executions: Vec<ExecutionResult>,
}

#[derive(Serialize, JsonSchema)]
pub struct InputSent {
    /// Always true.
    pub ok: bool,
}

impl JupyterMcp {
    async fn execution_result(&self, view: ExecutionView) -> CallToolResult {
        self.execution_page(view, None).await
    }

    /// Renders an execution within the result budget, from `output_offset` when given (on
    /// the blocking pool: rendering may write assets).
    async fn execution_page(
        &self,
        view: ExecutionView,
        output_offset: Option<usize>,
    ) -> CallToolResult {
        let r = results::execution_off_runtime(view, self.budget(), output_offset).await;
        ok(&r.result, r.text, r.images)
    }

    /// Checks the kernelspec is installed before queuing (so the agent gets a clear error now).
    /// Nothing to check once the notebook has a live kernel (its kernelspec was found when it
    /// started); otherwise the notebook is read and kernelspecs are looked up on the blocking
    /// pool, not on the async runtime.
    async fn check_kernel(&self, path: &RootedPath) -> Result<(), CallToolResult> {
        if self.engine.has_live_kernel(path) {
            return Ok(());
        }
        self.engine
            .refresh_gateway_kernelspecs()
            .await
            .map_err(tool_error)?;
        let (engine, path) = (self.engine.clone(), path.clone());
        tokio::task::spawn_blocking(move || engine.kernelspec_for(&path, None).map(|_| ()))
            .await
            .map_err(|e| {
                tool_error(EngineError::InvalidArgument(format!(
                    "looking up the notebook's kernelspec failed: {e}"
                )))
            })?
            .map_err(tool_error)
    }

    /// Waits for an execution until `deadline`; when the client asked for progress, sends
    /// `notifications/progress` about once a second meanwhile (MCP spec "Progress").
    async fn wait_reporting(
        &self,
        id: &str,
        deadline: Instant,
        progress: &Progress,
        done_before: usize,
        total: Option<usize>,
    ) -> Result<ExecutionView, EngineError> {
        let Some((token, peer)) = progress.0.as_ref() else {
            return self
                .engine
                .wait(id, deadline.saturating_duration_since(Instant::now()))
                .await;
        };
        let started = Instant::now();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let view = self.engine.wait(id, left.min(PROGRESS_EVERY)).await?;
            if view.status().is_terminal() || left <= PROGRESS_EVERY {
                return Ok(view);
            }
            let last_line = view
                .record
                .outputs
                .iter()
                .rev()
                .find_map(|o| o.get("text").and_then(|t| t.as_str()))
                .and_then(|t| t.trim_end().lines().last())
                .map(|l| l.chars().take(120).collect::<String>());
            let mut message = format!(
                "{} {} for {:.0} s",
                view.record
                    .cell_id
                    .as_deref()
                    .map(|c| format!("cell {c}"))
                    .unwrap_or_else(|| "code".into()),
                view.status().as_str(),
                started.elapsed().as_secs_f64()
            );
            if let Some(l) = last_line {
                message.push_str(&format!(": {l}"));
            }
            // Increases with every notification: finished cells plus a fraction (< 1) that
            // grows with the current cell's running time.
            let secs = started.elapsed().as_secs_f64();
            let mut p = ProgressNotificationParam::new(
                token.clone(),
                done_before as f64 + secs / (secs + 1.0),
            );
            p.total = total.map(|t| t as f64);
            p.message = Some(message);
            let _ = peer.notify_progress(p).await;
        }
    }

    /// Validates an execute_cell request and queues it; returns the execution id.
    pub(crate) async fn submit_cell(
        &self,
        a: &ExecuteCellArgs,
    ) -> Result<(RootedPath, String), CallToolResult> {
        let path = self.path(&a.notebook).await?;
        let cell = self
            .engine
            .cell(&path, a.cell_id.as_deref(), a.index)
            .await
            .map_err(tool_error)?;
        if cell.cell_type != "code" {
            return Err(tool_error(EngineError::NotCode {
                cell_id: cell.id,
                cell_type: cell.cell_type,
            }));
        }
        self.submit_one(path, Some(cell.id), cell.source).await
    }

    /// Validates an execute_code request and queues it; returns the execution id.
    pub(crate) async fn submit_code(
        &self,
        a: &ExecuteCodeArgs,
    ) -> Result<(RootedPath, String), CallToolResult> {
        let path = self.path(&a.notebook).await?;
        if !self
            .engine
            .notebook_exists(&path)
            .await
            .map_err(tool_error)?
        {
            return Err(tool_error(EngineError::NotebookMissing {
                notebook: path.rel,
            }));
        }
        self.submit_one(path, None, a.code.clone()).await
    }

    /// Checks the kernel can run and queues one execution (not part of a batch).
    async fn submit_one(
        &self,
        path: RootedPath,
        cell_id: Option<String>,
        code: String,
    ) -> Result<(RootedPath, String), CallToolResult> {
        self.check_kernel(&path).await?;
        let item = SubmitItem {
            cell_id,
            code,
            allow_error: true,
        };
        let ids = self
            .engine
            .submit_as(&path, vec![item], false, true, Some(self.requester()))
            .await
            .map_err(tool_error)?;
        Ok((path, ids[0].clone()))
    }

    /// Queues every runnable code cell as one batch (nbclient rules for what is skipped).
    pub(crate) async fn submit_all(
        &self,
        a: &RunAllArgs,
    ) -> Result<(Vec<String>, Vec<SkippedCell>), CallToolResult> {
        let path = self.path(&a.notebook).await?;
        let cells = self.engine.all_cells(&path).await.map_err(tool_error)?;
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for c in cells {
            let reason = if c.cell_type != "code" {
                Some(format!("{} cell", c.cell_type))
            } else if c.source.trim().is_empty() {
                Some("empty".to_string())
            } else if c.tags.iter().any(|t| t == "skip-execution") {
                Some("tagged skip-execution".to_string())
            } else {
                None
            };
            match reason {
                Some(reason) => skipped.push(SkippedCell {
                    cell_id: c.id,
                    index: c.index,
                    reason,
                }),
                None => items.push(SubmitItem {
                    allow_error: c.tags.iter().any(|t| t == "raises-exception"),
                    cell_id: Some(c.id),
                    code: c.source,
                }),
            }
        }
        if !items.is_empty() {
            self.check_kernel(&path).await?;
        } else if let Err(e) = self.engine.record_kernel_info(&path, None).await {
            // Nothing to run: the kernel metadata is a courtesy (issue 8 item 16).
            tracing::warn!("{}: kernel metadata not recorded: {e}", path.rel);
        }
        let ids = self
            .engine
            .submit_as(
                &path,
                items,
                true,
                a.stop_on_error.unwrap_or(true),
                Some(self.requester()),
            )
            .await
            .map_err(tool_error)?;
        Ok((ids, skipped))
    }

    /// Waits for one execution until `deadline` and renders it.
    pub(crate) async fn wait_result(
        &self,
        id: &str,
        deadline: Instant,
        progress: &Progress,
    ) -> CallToolResult {
        match self.wait_reporting(id, deadline, progress, 0, None).await {
            Ok(view) => self.execution_result(view).await,
            Err(e) => tool_error(e),
        }
    }

    /// Waits for a batch until `deadline` and renders what is done.
    pub(crate) async fn run_all_result(
        &self,
        ids: &[String],
        skipped: Vec<SkippedCell>,
        deadline: Instant,
        progress: &Progress,
    ) -> CallToolResult {
        let mut executions = Vec::new();
        let mut text = format!("queued {} cell(s), skipped {}\n", ids.len(), skipped.len());
        let mut images: Vec<Content> = Vec::new();
        // The result budget is shared by the executions in order; once it is spent the rest
        // are not listed (list_executions / get_execution have them), and only the last one
        // is waited for, so the call still answers when the batch is done or at the deadline.
        let budget = self.budget();
        let mut left = budget
            .total
            .saturating_sub(text.len() + skipped.len() * 160);
        let mut unlisted: Vec<&String> = Vec::new();
        for (done, id) in ids.iter().enumerate() {
            if !unlisted.is_empty() || (done > 0 && left < budget.total / 8) {
                unlisted.push(id);
                continue;
            }
            match self
                .wait_reporting(id, deadline, progress, done, Some(ids.len()))
                .await
            {
                Ok(view) => {
                    let r =
                        results::execution_off_runtime(view, budget.with_total(left), None).await;
                    let cost = super::budget::measure(&r.result, &r.text, &r.images);
                    if done > 0 && cost > left {
                        unlisted.push(id);
                        continue;
                    }
                    left = left.saturating_sub(cost);
                    text.push_str(&r.text);
                    images.extend(r.images);
                    executions.push(r.result);
                }
                Err(e) => return tool_error(e),
            }
        }
        if let Some(last) = unlisted.last() {
            let done = ids.len() - 1;
            if let Err(e) = self
                .wait_reporting(last, deadline, progress, done, Some(ids.len()))
                .await
            {
                return tool_error(e);
            }
            text.push_str(&format!(
                "{} more execution(s) not listed (result budget, --max-result-bytes), ids {} .. {}: see them with get_execution or list_executions\n",
                unlisted.len(),
                unlisted[0],
                last
            ));
        }
        let images = super::budget::cap_images(images);
        let unfinished = executions
            .iter()
            .filter(|e| !e.status.is_terminal())
            .count();
        if unfinished > 0 {
            text.push_str(&format!(
                "{unfinished} execution(s) still pending or running: poll them with get_execution\n"
            ));
        }
        ok(
            &RunAllResult {
                executions,
                skipped,
                unlisted: (!unlisted.is_empty()).then(|| Unlisted {
                    count: unlisted.len(),
                    first_execution_id: unlisted[0].clone(),
                    last_execution_id: unlisted[unlisted.len() - 1].clone(),
                }),
            },
            text,
            images,
        )
    }
}

const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The client's progress token and a handle to notify it, when it sent one.
pub(crate) struct Progress(Option<(ProgressToken, Peer<RoleServer>)>);

impl Progress {
    /// No progress reporting.
    pub(crate) fn none() -> Progress {
        Progress(None)
    }

    fn from_ctx(ctx: &RequestContext<RoleServer>) -> Progress {
        Progress(ctx.meta.get_progress_token().map(|t| (t, ctx.peer.clone())))
    }
}

#[tool_router(router = exec_router, vis = "pub(crate)")]
impl JupyterMcp {
    /// Run one code cell in the notebook's kernel and return its outputs. If it takes longer than timeout_s the call returns status "running" with an execution_id while the cell keeps running (poll with get_execution). An exception in the cell is status "failed" with the error, not a tool failure.
    #[tool(output_schema = schema_for_output::<ExecutionResult>())]
    async fn execute_cell(
        &self,
        Parameters(a): Parameters<ExecuteCellArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let (_, id) = tool_try!(self.submit_cell(&a).await);
        let deadline = Instant::now() + wait_duration(a.timeout_s, DEFAULT_TIMEOUT_S);
        Ok(self
            .wait_result(&id, deadline, &Progress::from_ctx(&ctx))
            .await)
    }

    /// Run code in the notebook's kernel without adding it to the notebook (for quick checks: df.shape, installed versions, ...). Same result shape as execute_cell.
    #[tool(output_schema = schema_for_output::<ExecutionResult>())]
    async fn execute_code(
        &self,
        Parameters(a): Parameters<ExecuteCodeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let t0 = Instant::now();
        let (_, id) = tool_try!(self.submit_code(&a).await);
        let t_submit = t0.elapsed();
        let deadline = Instant::now() + wait_duration(a.timeout_s, DEFAULT_TIMEOUT_S);
        let r = self
            .wait_result(&id, deadline, &Progress::from_ctx(&ctx))
            .await;
        tracing::debug!(
            submit_us = t_submit.as_micros() as u64,
            total_us = t0.elapsed().as_micros() as u64,
            "tool timings"
        );
        Ok(r)
    }

    /// Run every code cell of the notebook in order, as Jupyter's "Run All" does. Cells tagged skip-execution and empty cells are skipped; with stop_on_error (default) the rest is cancelled at the first error, except after cells tagged raises-exception. Waits up to timeout_s, then returns what is done; poll the rest with get_execution.
    #[tool(output_schema = schema_for_output::<RunAllResult>())]
    async fn run_all_cells(
        &self,
        Parameters(a): Parameters<RunAllArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let progress = Progress::from_ctx(&ctx);
        let (ids, skipped) = tool_try!(self.submit_all(&a).await);
        let deadline = Instant::now() + wait_duration(a.timeout_s, DEFAULT_TIMEOUT_S);
        Ok(self
            .run_all_result(&ids, skipped, deadline, &progress)
            .await)
    }

    /// Get an execution's status and outputs by execution_id; with wait_s, wait up to that many seconds for it to finish first.
    #[tool(output_schema = schema_for_output::<ExecutionResult>())]
    async fn get_execution(
        &self,
        Parameters(a): Parameters<GetExecutionArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(
            match self
                .engine
                .wait(&a.execution_id, wait_duration(a.wait_s, 0.0))
                .await
            {
                Ok(view) => self.execution_page(view, a.output_offset).await,
                Err(e) => tool_error(e),
            },
        )
    }

    /// Cancel an execution: a queued one is removed (cancelled); a running one is interrupted in the kernel (interrupted).
    #[tool(output_schema = schema_for_output::<ExecutionResult>())]
    async fn cancel_execution(
        &self,
        Parameters(a): Parameters<ExecutionIdArg>,
    ) -> Result<CallToolResult, McpError> {
        Ok(match self.engine.cancel(&a.execution_id).await {
            Ok(view) => self.execution_result(view).await,
            Err(e) => tool_error(e),
        })
    }

    /// List recent executions (status, cell, timing; no outputs: get_execution has them), optionally of one notebook and/or with one status.
    #[tool(output_schema = schema_for_output::<ExecutionList>())]
    async fn list_executions(
        &self,
        Parameters(a): Parameters<ListExecutionsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let notebook = tool_try!(self.optional_notebook(a.notebook.as_deref()).await);
        let status = match a.status.as_deref().map(|s| Status::parse(s).ok_or(s)).transpose() {
            Ok(s) => s,
            Err(bad) => return Ok(fail(format!(
                "unknown status {bad:?}: use pending, running, completed, failed, cancelled or interrupted"
            ))),
        };
        let limit = a.limit.unwrap_or(50).min(1000);
        let rows = self
            .engine
            .store()
            .call(move |c| crate::store::executions::list(c, notebook.as_deref(), status, limit))
            .await;
        Ok(match rows {
            Ok(rows) => {
                let mut text = String::new();
                let mut executions = Vec::new();
                let budget = self.budget();
                let mut left = budget.total;
                for mut rec in rows {
                    // A listing summarises; outputs come with get_execution.
                    rec.outputs.clear();
                    let view = ExecutionView {
                        record: rec,
                        input_prompt: None,
                    };
                    let r = results::execution(&view, super::budget::Budget::new(4096, 512), None);
                    let cost = super::budget::measure(&r.result, &r.text, &[]);
                    if cost > left {
                        text.push_str("[older executions not listed (result budget, --max-result-bytes): ask with a smaller limit or a status/notebook filter]\n");
                        break;
                    }
                    left -= cost;
                    text.push_str(r.text.lines().next().unwrap_or(""));
                    text.push('\n');
                    executions.push(r.result);
                }
                if text.is_empty() {
                    text = "no executions".into();
                }
                ok(&ExecutionList { executions }, text, vec![])
            }
            Err(e) => fail(e.to_string()),
        })
    }

    /// Answer an input() prompt that the notebook's running cell is waiting on (get_execution shows the prompt).
    #[tool(output_schema = schema_for_output::<InputSent>())]
    async fn send_input(
        &self,
        Parameters(a): Parameters<SendInputArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = tool_try!(self.path(&a.notebook).await);
        Ok(match self.engine.send_input(&path, &a.text).await {
            Ok(()) => ok(&InputSent { ok: true }, "input sent".into(), vec![]),
            Err(e) => tool_error(e),
        })
    }
}
