//! MCP tasks (spec 2025-11-25, "Tasks") for `execute_cell`, `execute_code` and
//! `run_all_cells`: a client may augment those calls with `params.task` and then poll
//! `tasks/get`, wait on `tasks/result`, and use `tasks/list` and `tasks/cancel`. Task ids are
//! execution ids (for `run_all_cells`, the id of the batch's last execution), so tasks survive a
//! server restart: everything is answered from the durable execution records.
//!
//! rmcp 3.9 implements the later SEP-2663 task model and drops the 2025-11-25 `params.task`
//! field, so this layer sits between the transport and rmcp, one newline-delimited JSON-RPC
//! message at a time: task-augmented calls and `tasks/*` requests are answered here; all else
//! passes through unchanged, except that rmcp's `initialize` result gains
//! `capabilities.tasks` and its `tools/list` result marks the three tools
//! `execution.taskSupport: "optional"`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::params::{ExecuteCellArgs, ExecuteCodeArgs, RunAllArgs};
use super::server::JupyterMcp;
use super::session::{Session, TASK_TOOLS};
use super::tools_exec::{Progress, SkippedCell};
use crate::store::{self, ExecutionRecord, Status};

pub(super) mod ext;

const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// Suggested polling interval for clients, in milliseconds.
const POLL_INTERVAL_MS: u64 = 1000;
/// Longest `tasks/result` waits before answering with what is done (the task goes on; the
/// client calls `tasks/result` again). Bounded so that a disconnected client's waits end.
const RESULT_WAIT: Duration = Duration::from_secs(3600);
/// At most this many `tasks/result` calls wait at once; past it a call answers at once with
/// what is done, so waits cannot pile up without bound.
const MAX_RESULT_WAITS: usize = 256;
static RESULT_WAITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_RESULT_WAITS);

/// The deadline of one `tasks/result` wait and the permit that counts it (see
/// [`MAX_RESULT_WAITS`]); without a permit the deadline is now.
fn result_wait(now: Instant) -> (Instant, Option<tokio::sync::SemaphorePermit<'static>>) {
    match RESULT_WAITS.try_acquire() {
        Ok(permit) => (now + RESULT_WAIT, Some(permit)),
        Err(_) => (now, None),
    }
}

/// A request this layer answers.
pub(super) struct Request {
    pub(super) id: Value,
    pub(super) method: String,
    pub(super) params: Value,
}

/// Whether a client request (of a 2025-11-25 session) is answered here rather than by rmcp:
/// `tasks/*`, and task-augmented calls of the task tools.
pub(super) fn is_ours(method: &str, params: &Value) -> bool {
    match method {
        "tasks/get" | "tasks/result" | "tasks/list" | "tasks/cancel" => true,
        "tools/call" => {
            params.get("task").is_some_and(Value::is_object)
                && params
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| TASK_TOOLS.contains(&n))
        }
        _ => false,
    }
}

/// Answers one intercepted request with a JSON-RPC response.
pub(super) async fn answer(svc: &JupyterMcp, session: &Session, req: Request) -> Value {
    let result = match req.method.as_str() {
        "tools/call" => create_task(svc, session, &req.params).await,
        "tasks/get" => match task_id(&req.params) {
            Ok(id) => task_state(svc, &id).await,
            Err(e) => Err(e),
        },
        "tasks/result" => match task_id(&req.params) {
            Ok(id) => task_result(svc, &id).await,
            Err(e) => Err(e),
        },
        "tasks/cancel" => match task_id(&req.params) {
            Ok(id) => cancel_task(svc, &id).await,
            Err(e) => Err(e),
        },
        _ => list_tasks(svc, session).await,
    };
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": req.id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": req.id, "error": {"code": code, "message": message}})
        }
    }
}

pub(super) type RpcResult = Result<Value, (i64, String)>;
pub(super) const INVALID_PARAMS: i64 = -32602;
pub(super) const INTERNAL: i64 = -32603;

pub(super) fn task_id(params: &Value) -> Result<String, (i64, String)> {
    params
        .get("taskId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or((INVALID_PARAMS, "taskId is required".into()))
}

fn args<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T, (i64, String)> {
    serde_json::from_value(params.get("arguments").cloned().unwrap_or(json!({})))
        .map_err(|e| (INVALID_PARAMS, format!("invalid arguments: {e}")))
}

pub(super) fn tool_failure(result: rmcp::model::CallToolResult) -> (i64, String) {
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    (INVALID_PARAMS, text)
}

/// Validates and queues a task tool's work (`params` of its `tools/call`): the execution
/// ids (one, or a `run_all_cells` batch in order) and the cells `run_all_cells` skipped; a
/// tool failure (bad notebook, no kernel) is the tool's own `CallToolResult`.
pub(super) async fn submit(
    svc: &JupyterMcp,
    params: &Value,
) -> Result<(Vec<String>, Vec<SkippedCell>), rmcp::model::CallToolResult> {
    let bad_args = |e: (i64, String)| super::results::fail(e.1);
    match params.get("name").and_then(Value::as_str).unwrap_or("") {
        "execute_cell" => svc
            .submit_cell(&args::<ExecuteCellArgs>(params).map_err(bad_args)?)
            .await
            .map(|(_, id)| (vec![id], vec![])),
        "execute_code" => svc
            .submit_code(&args::<ExecuteCodeArgs>(params).map_err(bad_args)?)
            .await
            .map(|(_, id)| (vec![id], vec![])),
        _ => {
            svc.submit_all(&args::<RunAllArgs>(params).map_err(bad_args)?)
                .await
        }
    }
}

/// Queues the tool's work and answers with a `CreateTaskResult`.
async fn create_task(svc: &JupyterMcp, session: &Session, params: &Value) -> RpcResult {
    let (ids, _) = submit(svc, params).await.map_err(tool_failure)?;
    let id = ids.last().cloned().ok_or_else(|| {
        tool_failure(super::results::fail(
            "the notebook has no code cell to run, so there is no task",
        ))
    })?;
    session.created_task(&id);
    Ok(json!({ "task": task_state(svc, &id).await? }))
}

pub(super) async fn records(
    svc: &JupyterMcp,
    id: &str,
) -> Result<Vec<ExecutionRecord>, (i64, String)> {
    let owned = id.to_string();
    let rec = svc
        .engine
        .store()
        .call(move |c| store::executions::get(c, &owned))
        .await
        .map_err(|e| (INTERNAL, e.to_string()))?
        .ok_or((
            INVALID_PARAMS,
            format!("Failed to retrieve task: task '{id}' not found"),
        ))?;
    match rec.batch_id.clone() {
        Some(batch) => svc
            .engine
            .store()
            .call(move |c| store::executions::by_batch(c, &batch))
            .await
            .map_err(|e| (INTERNAL, e.to_string())),
        None => Ok(vec![rec]),
    }
}

/// Tasks cancelled through this server (any session) whose interrupt the kernel may not have
/// confirmed yet: they are `cancelled` from the cancel response on (the execution is marked
/// interrupted and settles as such; after a restart, recovery settles it the same way). One
/// per [`JupyterMcp`] (shared by its clones, so by every session of one server); entries are
/// dropped once the task has finished.
#[derive(Default)]
pub(crate) struct Cancelled {
    ids: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Cancelled {
    pub(super) fn contains(&self, id: &str) -> bool {
        self.ids.lock().is_ok_and(|c| c.contains(id))
    }

    pub(super) fn insert(&self, id: &str) {
        if let Ok(mut c) = self.ids.lock() {
            c.insert(id.to_string());
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut c) = self.ids.lock() {
            c.remove(id);
        }
    }
}

/// The task (spec "Task" object) for an execution id.
pub(super) async fn task_state(svc: &JupyterMcp, id: &str) -> RpcResult {
    let recs = records(svc, id).await?;
    let waiting_input = recs
        .iter()
        .any(|r| r.status == Status::Running && svc.engine.live_input_prompt(&r.id).is_some());
    let unfinished = recs.iter().filter(|r| !r.status.is_terminal()).count();
    if unfinished == 0 {
        // The records say how it ended from now on.
        svc.cancelled.forget(id);
    }
    let last = recs.iter().max_by_key(|r| r.seq);
    let (status, message) = if waiting_input {
        (
            "input_required",
            "waiting for input(): answer with send_input".to_string(),
        )
    } else if unfinished > 0 && svc.cancelled.contains(id) {
        (
            "cancelled",
            "cancelled; the kernel is still confirming the interrupt".to_string(),
        )
    } else if unfinished > 0 {
        (
            "working",
            format!("{unfinished} of {} execution(s) not finished", recs.len()),
        )
    } else if !recs.iter().any(|r| r.status == Status::Failed)
        && recs
            .iter()
            .any(|r| matches!(r.status, Status::Cancelled | Status::Interrupted))
    {
        // Stopped on request (tasks/cancel, cancel_execution, interrupt_kernel) before it
        // could complete; a run stopped by its own error is "completed" with that error.
        ("cancelled", "cancelled before it completed".to_string())
    } else {
        let failed = recs
            .iter()
            .filter(|r| r.status != Status::Completed)
            .count();
        (
            "completed",
            if failed == 0 {
                "completed".into()
            } else {
                format!("{failed} execution(s) did not complete")
            },
        )
    };
    let created = recs
        .first()
        .map(|r| r.created_at.clone())
        .unwrap_or_default();
    let updated = last
        .and_then(|r| r.finished_at.clone().or_else(|| r.started_at.clone()))
        .unwrap_or_else(|| created.clone());
    Ok(json!({
        "taskId": id,
        "status": status,
        "statusMessage": message,
        "createdAt": created,
        "lastUpdatedAt": updated,
        "ttl": null,
        "pollInterval": POLL_INTERVAL_MS,
    }))
}

/// Waits for the task to finish and answers with the tool's own `CallToolResult`.
async fn task_result(svc: &JupyterMcp, id: &str) -> RpcResult {
    let recs = records(svc, id).await?;
    let (deadline, _permit) = result_wait(Instant::now());
    let mut value = render(svc, &recs, id, deadline).await?;
    value["_meta"] = json!({ RELATED_TASK: { "taskId": id } });
    Ok(value)
}

/// The tool's own `CallToolResult` for a task's executions `recs` (as JSON), waiting for them
/// until `deadline` (now: what is done so far).
pub(super) async fn render(
    svc: &JupyterMcp,
    recs: &[ExecutionRecord],
    id: &str,
    deadline: Instant,
) -> RpcResult {
    let result = if recs.len() == 1 && recs[0].batch_id.is_none() {
        svc.wait_result(id, deadline, &Progress::none()).await
    } else {
        let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
        svc.run_all_result(&ids, vec![], deadline, &Progress::none())
            .await
    };
    serde_json::to_value(&result).map_err(|e| (INTERNAL, e.to_string()))
}

/// Cancels a task's unfinished executions through the engine path of `cancel_execution`
/// (queued ones removed, newest first so none starts after its predecessor stops; the
/// running one interrupted) and remembers the task as cancelled.
pub(super) async fn cancel_unfinished(
    svc: &JupyterMcp,
    id: &str,
    recs: &[ExecutionRecord],
) -> Result<(), (i64, String)> {
    let mut unfinished: Vec<&ExecutionRecord> =
        recs.iter().filter(|r| !r.status.is_terminal()).collect();
    unfinished.sort_by_key(|r| std::cmp::Reverse(r.seq));
    for rec in unfinished {
        svc.engine
            .cancel(&rec.id)
            .await
            .map_err(|e| (INTERNAL, e.to_string()))?;
    }
    svc.cancelled.insert(id);
    Ok(())
}

/// `tasks/cancel` (2025-11-25): a working task is cancelled (queued executions removed, the
/// running one interrupted) and answered `cancelled`; a finished one is an error (-32602).
async fn cancel_task(svc: &JupyterMcp, id: &str) -> RpcResult {
    let recs = records(svc, id).await?;
    let already = svc.cancelled.contains(id) && recs.iter().any(|r| !r.status.is_terminal());
    if already || recs.iter().all(|r| r.status.is_terminal()) {
        let state = task_state(svc, id).await?;
        return Err((
            INVALID_PARAMS,
            format!(
                "Cannot cancel task '{id}': it already finished (status {}); only a working task \
                 can be cancelled",
                state["status"].as_str().unwrap_or("unknown")
            ),
        ));
    }
    cancel_unfinished(svc, id, &recs).await?;
    task_state(svc, id).await
}

async fn list_tasks(svc: &JupyterMcp, session: &Session) -> RpcResult {
    if let Some(own) = session.own_tasks() {
        let mut tasks = Vec::new();
        for id in own.iter().take(100) {
            match task_state(svc, id).await {
                Ok(task) => tasks.push(task),
                // Deleted by retention since: no longer a task.
                Err((INVALID_PARAMS, _)) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(json!({ "tasks": tasks }));
    }
    let recs = svc
        .engine
        .store()
        .call(|c| store::executions::list(c, None, None, 100))
        .await
        .map_err(|e| (INTERNAL, e.to_string()))?;
    let mut tasks = Vec::new();
    let mut seen_batches = std::collections::HashSet::new();
    for r in recs {
        // One task per batch: its id is the batch's last execution (the newest row seen first).
        if let Some(b) = &r.batch_id {
            if !seen_batches.insert(b.clone()) {
                continue;
            }
        }
        tasks.push(task_state(svc, &r.id).await?);
    }
    Ok(json!({ "tasks": tasks }))
}

#[cfg(test)]
mod wait_tests {
    use super::*;

    #[test]
    fn result_waits_are_bounded_in_time_and_number() {
        let now = Instant::now();
        let mut held = Vec::new();
        for _ in 0..MAX_RESULT_WAITS {
            let (deadline, permit) = result_wait(now);
            assert!(deadline <= now + RESULT_WAIT);
            assert!(permit.is_some());
            held.push(permit);
        }
        let (deadline, permit) = result_wait(now);
        assert!(permit.is_none(), "waits past the cap answer at once");
        assert_eq!(deadline, now);
        held.clear();
        assert!(result_wait(now).1.is_some(), "ended waits free their place");
        assert!(RESULT_WAIT <= Duration::from_secs(3600));
    }
}
