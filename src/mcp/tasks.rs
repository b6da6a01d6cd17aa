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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use super::params::{ExecuteCellArgs, ExecuteCodeArgs, RunAllArgs};
use super::server::JupyterMcp;
use super::tools_exec::Progress;
use crate::store::{self, ExecutionRecord, Status};

const TASK_TOOLS: [&str; 3] = ["execute_cell", "execute_code", "run_all_cells"];
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

/// What rmcp's answer to a request needs rewritten.
#[derive(Clone, Copy)]
enum Rewrite {
    Initialize,
    ToolsList,
}

/// Serves `service` over the given byte streams with the task layer in front of rmcp.
/// Returns when the input ends (the client disconnected).
pub async fn serve<R, W>(service: JupyterMcp, input: R, output: W) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use rmcp::ServiceExt as _;
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (rmcp_in, rmcp_out) = tokio::io::split(theirs);
    let (from_rmcp, mut to_rmcp) = tokio::io::split(ours);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let rewrites: Arc<Mutex<HashMap<String, Rewrite>>> = Arc::default();

    // The only writer of the output: whole lines, in the order they were produced.
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(line) = out_rx.recv().await {
            if output.write_all(line.as_bytes()).await.is_err()
                || output.write_all(b"\n").await.is_err()
                || output.flush().await.is_err()
            {
                break;
            }
        }
    });
    // rmcp's output -> client, with the two rewrites.
    let (tx, rw) = (out_tx.clone(), rewrites.clone());
    tokio::spawn(async move {
        let mut lines = BufReader::new(from_rmcp).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(rewrite_response(&rw, line));
        }
    });
    // client -> rmcp, or answered here.
    let (tx, rw, svc) = (out_tx.clone(), rewrites.clone(), service.clone());
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(input).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match intercept(&line, &rw) {
                Some(request) => {
                    let (tx, svc) = (tx.clone(), svc.clone());
                    tokio::spawn(async move {
                        let reply = answer(&svc, request).await;
                        let _ = tx.send(reply.to_string());
                    });
                }
                None => {
                    if to_rmcp.write_all(line.as_bytes()).await.is_err()
                        || to_rmcp.write_all(b"\n").await.is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Client gone: closing rmcp's input ends the service.
        let _ = to_rmcp.shutdown().await;
    });
    drop(out_tx);
    let running = service
        .serve((rmcp_in, rmcp_out))
        .await
        .map_err(|e| anyhow::anyhow!("MCP initialization failed: {e}"))?;
    running.waiting().await?;
    reader.abort();
    let _ = writer.await;
    Ok(())
}

/// A request this layer answers.
struct Request {
    id: Value,
    method: String,
    params: Value,
}

/// Decides whether a client message is answered here; remembers requests whose responses
/// need rewriting.
fn intercept(line: &str, rewrites: &Mutex<HashMap<String, Rewrite>>) -> Option<Request> {
    // Fast path: most messages are neither task-related nor responses we rewrite; skip parsing.
    if !line.contains("task") && !line.contains("initialize") && !line.contains("tools/list") {
        return None;
    }
    let msg: Value = serde_json::from_str(line).ok()?;
    let method = msg.get("method")?.as_str()?;
    let id = msg.get("id")?.clone();
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let ours = match method {
        "tasks/get" | "tasks/result" | "tasks/list" | "tasks/cancel" => true,
        "tools/call" => {
            params.get("task").is_some_and(Value::is_object)
                && params
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| TASK_TOOLS.contains(&n))
        }
        "initialize" | "tools/list" => {
            if let Ok(mut r) = rewrites.lock() {
                let kind = if method == "initialize" {
                    Rewrite::Initialize
                } else {
                    Rewrite::ToolsList
                };
                r.insert(id.to_string(), kind);
            }
            false
        }
        _ => false,
    };
    ours.then(|| Request {
        id,
        method: method.to_string(),
        params,
    })
}

fn rewrite_response(rewrites: &Mutex<HashMap<String, Rewrite>>, line: String) -> String {
    if rewrites.lock().map(|r| r.is_empty()).unwrap_or(true) {
        return line;
    }
    let Ok(mut msg) = serde_json::from_str::<Value>(&line) else {
        return line;
    };
    let Some(id) = msg.get("id").map(Value::to_string) else {
        return line;
    };
    let Some(kind) = rewrites.lock().ok().and_then(|mut r| r.remove(&id)) else {
        return line;
    };
    let Some(result) = msg.get_mut("result").and_then(Value::as_object_mut) else {
        return line;
    };
    match kind {
        Rewrite::Initialize => {
            if let Some(caps) = result
                .get_mut("capabilities")
                .and_then(Value::as_object_mut)
            {
                caps.insert(
                    "tasks".into(),
                    json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}),
                );
            }
        }
        Rewrite::ToolsList => {
            if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
                for tool in tools {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
                    if TASK_TOOLS.contains(&name) {
                        tool["execution"] = json!({"taskSupport": "optional"});
                    }
                }
            }
        }
    }
    msg.to_string()
}

/// Answers one intercepted request with a JSON-RPC response.
async fn answer(svc: &JupyterMcp, req: Request) -> Value {
    let result = match req.method.as_str() {
        "tools/call" => create_task(svc, &req.params).await,
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
        _ => list_tasks(svc).await,
    };
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": req.id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": req.id, "error": {"code": code, "message": message}})
        }
    }
}

type RpcResult = Result<Value, (i64, String)>;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL: i64 = -32603;

fn task_id(params: &Value) -> Result<String, (i64, String)> {
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

fn tool_failure(result: rmcp::model::CallToolResult) -> (i64, String) {
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    (INVALID_PARAMS, text)
}

/// Queues the tool's work and answers with a `CreateTaskResult`.
async fn create_task(svc: &JupyterMcp, params: &Value) -> RpcResult {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let id = match name {
        "execute_cell" => svc
            .submit_cell(&args::<ExecuteCellArgs>(params)?)
            .await
            .map(|(_, id)| id),
        "execute_code" => svc
            .submit_code(&args::<ExecuteCodeArgs>(params)?)
            .await
            .map(|(_, id)| id),
        _ => svc
            .submit_all(&args::<RunAllArgs>(params)?)
            .await
            .and_then(|(ids, _)| {
                ids.last().cloned().ok_or_else(|| {
                    super::results::fail(
                        "the notebook has no code cell to run, so there is no task",
                    )
                })
            }),
    }
    .map_err(tool_failure)?;
    Ok(json!({ "task": task_state(svc, &id).await? }))
}

async fn records(svc: &JupyterMcp, id: &str) -> Result<Vec<ExecutionRecord>, (i64, String)> {
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

/// The task (spec "Task" object) for an execution id.
async fn task_state(svc: &JupyterMcp, id: &str) -> RpcResult {
    let recs = records(svc, id).await?;
    let waiting_input = recs
        .iter()
        .any(|r| r.status == Status::Running && svc.engine.live_input_prompt(&r.id).is_some());
    let unfinished = recs.iter().filter(|r| !r.status.is_terminal()).count();
    let last = recs.iter().max_by_key(|r| r.seq);
    let (status, message) = if waiting_input {
        (
            "input_required",
            "waiting for input(): answer with send_input".to_string(),
        )
    } else if unfinished > 0 {
        (
            "working",
            format!("{unfinished} of {} execution(s) not finished", recs.len()),
        )
    } else if recs.iter().all(|r| r.status == Status::Cancelled) {
        ("cancelled", "cancelled".to_string())
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
    let result = if recs.len() == 1 && recs[0].batch_id.is_none() {
        svc.wait_result(id, deadline, &Progress::none()).await
    } else {
        let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
        svc.run_all_result(&ids, vec![], deadline, &Progress::none())
            .await
    };
    let mut value = serde_json::to_value(&result).map_err(|e| (INTERNAL, e.to_string()))?;
    value["_meta"] = json!({ RELATED_TASK: { "taskId": id } });
    Ok(value)
}

async fn cancel_task(svc: &JupyterMcp, id: &str) -> RpcResult {
    for rec in records(svc, id).await? {
        if !rec.status.is_terminal() {
            svc.engine
                .cancel(&rec.id)
                .await
                .map_err(|e| (INTERNAL, e.to_string()))?;
        }
    }
    task_state(svc, id).await
}

async fn list_tasks(svc: &JupyterMcp) -> RpcResult {
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
