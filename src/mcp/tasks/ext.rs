//! The tasks extension of MCP 2026-07-28 (`io.modelcontextprotocol/tasks`, ext-tasks
//! specification 2026-07-28, SEP-2663) for `execute_cell`, `execute_code` and
//! `run_all_cells`.
//!
//! * A client opts in per request: `params._meta["io.modelcontextprotocol/clientCapabilities"]
//!   .extensions["io.modelcontextprotocol/tasks"]`. The server decides per request: the call
//!   waits up to the tool's `timeout_s` (default 30 s) as a plain call does; finished by then,
//!   it answers with the plain `CallToolResult`; still running, it answers with a
//!   `CreateTaskResult` (`resultType: "task"`) instead of the `status: "running"` snapshot. A
//!   client that did not opt in gets plain calls only (the spec forbids a task handle then).
//! * `tasks/get` answers a `DetailedTask` from the durable execution records (task id =
//!   execution id; for `run_all_cells` the batch's last execution), so it works from any
//!   session, on the stateless HTTP pipeline and after a restart. `completed` inlines the
//!   tool's `CallToolResult` (a cell that raised is `completed` with `status: "failed"` in
//!   it: not a JSON-RPC error); stopped on request (`cancelled` / `interrupted`) is
//!   `cancelled`; `failed` is never used (no JSON-RPC error happens after a task exists).
//! * `input()`: a running execution waiting for input is `input_required` with one
//!   `elicitation/create` form request (one string property `input`); `tasks/update` with
//!   `action: "accept"` sends `content.input` through the engine path of `send_input`;
//!   `decline` / `cancel` interrupt the execution (input() cannot be refused otherwise).
//!   Keys are `input-<execution id>-<n>`, never reused by this process (see [`Prompts`]).
//! * `tasks/cancel` cancels through the engine path of `cancel_execution` and acknowledges;
//!   cancelling a finished task is acknowledged and changes nothing (cooperative, per spec).
//! * Errors: unknown task `-32602`; `tasks/*` without the extension in the request's
//!   capabilities `-32021` with `data.requiredCapabilities`; there is no `tasks/list`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::super::server::JupyterMcp;
use super::super::session::{Session, TASK_TOOLS};
use super::super::tools_exec::{wait_duration, DEFAULT_TIMEOUT_S};
use super::{records, render, task_id, task_state, RpcResult, INVALID_PARAMS};
use crate::store::Status;

/// The extension's identifier (capability key).
pub(in crate::mcp) const EXTENSION: &str = "io.modelcontextprotocol/tasks";
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// MCP 2026-07-28 "Missing Required Client Capability".
const MISSING_CAPABILITY: i64 = -32021;
/// Most executions whose input keys are remembered (an entry is dropped when its task is seen
/// finished; past this, entries of executions no longer waiting for input are dropped).
const MAX_PROMPTS: usize = 4096;

/// A request this extension answers.
pub(in crate::mcp) struct Request {
    pub(in crate::mcp) id: Value,
    pub(in crate::mcp) method: String,
    pub(in crate::mcp) params: Value,
}

/// Whether a request carries the extension in its per-request client capabilities.
pub(in crate::mcp) fn opted_in(params: &Value) -> bool {
    params
        .get("_meta")
        .and_then(|m| m.get(CLIENT_CAPABILITIES))
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(EXTENSION))
        .is_some_and(Value::is_object)
}

/// Whether a request of a 2026-07-28 client is answered here rather than by rmcp:
/// `tasks/get|update|cancel` (answered `-32021` without the capability), and calls of the
/// task tools from a client that opted in.
pub(in crate::mcp) fn is_ours(method: &str, params: &Value) -> bool {
    match method {
        "tasks/get" | "tasks/update" | "tasks/cancel" => true,
        "tools/call" => {
            opted_in(params)
                && params
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| TASK_TOOLS.contains(&n))
        }
        _ => false,
    }
}

/// Answers one request with a JSON-RPC response (every result carries `resultType`).
pub(in crate::mcp) async fn answer(svc: &JupyterMcp, session: &Session, req: Request) -> Value {
    if req.method != "tools/call" && !opted_in(&req.params) {
        return json!({"jsonrpc": "2.0", "id": req.id, "error": {
            "code": MISSING_CAPABILITY,
            "message": format!(
                "Missing required client capability: {} needs the {EXTENSION} extension in \
                 the request's _meta[\"{CLIENT_CAPABILITIES}\"].extensions",
                req.method
            ),
            "data": {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
        }});
    }
    let result = match req.method.as_str() {
        "tools/call" => call(svc, session, &req.params).await,
        "tasks/get" => get(svc, &req.params).await,
        "tasks/update" => update(svc, &req.params).await,
        _ => cancel(svc, &req.params).await,
    };
    match result {
        Ok(mut result) => {
            if let Some(obj) = result.as_object_mut() {
                obj.entry("resultType").or_insert(json!("complete"));
                obj.entry("_meta").or_insert(json!({SERVER_INFO: {
                    "name": "jupyter-mcp", "version": env!("CARGO_PKG_VERSION")}}));
            }
            json!({"jsonrpc": "2.0", "id": req.id, "result": result})
        }
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": req.id, "error": {"code": code, "message": message}})
        }
    }
}

/// A task tool's call: the plain result when it finishes within `timeout_s`, else a task.
async fn call(svc: &JupyterMcp, session: &Session, params: &Value) -> RpcResult {
    let timeout_s = params
        .pointer("/arguments/timeout_s")
        .and_then(Value::as_f64);
    let deadline = Instant::now() + wait_duration(timeout_s, DEFAULT_TIMEOUT_S);
    let plain = |r: rmcp::model::CallToolResult| {
        serde_json::to_value(&r).map_err(|e| (super::INTERNAL, e.to_string()))
    };
    let (ids, skipped) = match super::submit(svc, params).await {
        Ok(queued) => queued,
        Err(failure) => return plain(failure),
    };
    let Some(last) = ids.last().cloned() else {
        let none = super::super::tools_exec::Progress::none();
        return plain(svc.run_all_result(&ids, skipped, deadline, &none).await);
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let finished = match svc.engine.wait(&last, left).await {
        Ok(view) => view.status().is_terminal(),
        Err(e) => return plain(super::super::server::tool_error(e)),
    };
    if finished {
        let none = super::super::tools_exec::Progress::none();
        return plain(
            if ids.len() == 1 && skipped.is_empty() && params["name"] != "run_all_cells" {
                svc.wait_result(&last, deadline, &none).await
            } else {
                svc.run_all_result(&ids, skipped, deadline, &none).await
            },
        );
    }
    session.created_task(&last);
    let mut task = detailed(svc, &last).await?;
    task["resultType"] = json!("task");
    Ok(task)
}

/// The extension's shape of a task (spec "Task") from the 2025-11-25 one.
async fn detailed(svc: &JupyterMcp, id: &str) -> RpcResult {
    let mut task = task_state(svc, id).await?;
    let obj = task
        .as_object_mut()
        .ok_or((super::INTERNAL, "no task".into()))?;
    let ttl = obj.remove("ttl").unwrap_or(Value::Null);
    obj.insert("ttlMs".into(), ttl);
    if let Some(poll) = obj.remove("pollInterval") {
        obj.insert("pollIntervalMs".into(), poll);
    }
    if obj.get("status").and_then(Value::as_str) == Some("input_required") {
        obj.insert(
            "statusMessage".into(),
            json!("waiting for input(): answer inputRequests with tasks/update"),
        );
    }
    Ok(task)
}

/// `tasks/get`: the `DetailedTask` (with `result` or `inputRequests` by status).
async fn get(svc: &JupyterMcp, params: &Value) -> RpcResult {
    let id = task_id(params)?;
    let mut task = detailed(svc, &id).await?;
    let recs = records(svc, &id).await?;
    match task["status"].as_str() {
        Some("completed") => {
            task["result"] = render(svc, &recs, &id, Instant::now()).await?;
            task["result"]["resultType"] = json!("complete");
        }
        Some("input_required") => {
            let mut requests = Map::new();
            for rec in recs.iter().filter(|r| r.status == Status::Running) {
                if let Some(prompt) = svc.engine.live_input_prompt(&rec.id) {
                    let key = svc
                        .prompts
                        .key_for(&rec.id, |e| svc.engine.live_input_prompt(e).is_some());
                    requests.insert(key, elicitation(&prompt));
                }
            }
            task["inputRequests"] = Value::Object(requests);
        }
        _ => {}
    }
    for rec in &recs {
        if rec.status.is_terminal() {
            svc.prompts.forget(&rec.id);
        } else if svc.engine.live_input_prompt(&rec.id).is_none() {
            // Answered elsewhere (send_input): that key is satisfied.
            svc.prompts.satisfied(&rec.id);
        }
    }
    Ok(task)
}

/// The `elicitation/create` form request standing for one `input()` prompt.
fn elicitation(prompt: &str) -> Value {
    let message = if prompt.is_empty() {
        "The running cell called input() and waits for a line of text.".to_string()
    } else {
        format!("The running cell called input({prompt:?}) and waits for a line of text.")
    };
    json!({"method": "elicitation/create", "params": {
        "mode": "form",
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": {"input": {"type": "string", "description": "the line input() returns"}},
            "required": ["input"],
        },
    }})
}

/// `tasks/update`: answers outstanding `input()` prompts; keys not outstanding are ignored.
async fn update(svc: &JupyterMcp, params: &Value) -> RpcResult {
    let id = task_id(params)?;
    let responses = params
        .get("inputResponses")
        .and_then(Value::as_object)
        .ok_or((
            INVALID_PARAMS,
            "inputResponses (an object) is required".into(),
        ))?;
    let recs = records(svc, &id).await?;
    for (key, response) in responses {
        let Some(rec) = recs
            .iter()
            .find(|r| r.status == Status::Running && svc.prompts.is_outstanding(&r.id, key))
        else {
            continue;
        };
        if svc.engine.live_input_prompt(&rec.id).is_none() {
            svc.prompts.satisfied(&rec.id);
            continue;
        }
        let accepted = response.get("action").and_then(Value::as_str) == Some("accept");
        if accepted {
            let text = response
                .pointer("/content/input")
                .and_then(Value::as_str)
                .ok_or((
                    INVALID_PARAMS,
                    format!(
                        "inputResponses.{key}: an accepted answer needs content.input (a string)"
                    ),
                ))?;
            let path = svc.path(&rec.notebook).await.map_err(super::tool_failure)?;
            svc.engine
                .send_input(&path, text)
                .await
                .map_err(|e| (INVALID_PARAMS, e.to_string()))?;
        } else {
            svc.engine
                .cancel(&rec.id)
                .await
                .map_err(|e| (super::INTERNAL, e.to_string()))?;
        }
        svc.prompts.satisfied(&rec.id);
    }
    Ok(json!({}))
}

/// `tasks/cancel`: cancels what is unfinished; always an empty acknowledgement.
async fn cancel(svc: &JupyterMcp, params: &Value) -> RpcResult {
    let id = task_id(params)?;
    let recs = records(svc, &id).await?;
    if recs.iter().any(|r| !r.status.is_terminal()) && !svc.cancelled.contains(&id) {
        super::cancel_unfinished(svc, &id, &recs).await?;
    }
    Ok(json!({}))
}

/// The `inputRequests` keys of this server: per execution, how many keys it has issued and
/// the one still outstanding. A key is never reused by this process (the count only grows
/// while the entry lives, and an entry is dropped only once its execution has finished). A
/// prompt answered through `send_input` is noticed at the next `tasks/get`.
#[derive(Default)]
pub(crate) struct Prompts {
    keys: Mutex<HashMap<String, (u64, Option<String>)>>,
}

impl Prompts {
    /// The outstanding key of an execution's prompt, issuing a new one if none is.
    /// `waiting(execution)` says whether an execution still waits (for eviction).
    fn key_for(&self, exec: &str, waiting: impl Fn(&str) -> bool) -> String {
        let Ok(mut keys) = self.keys.lock() else {
            return format!("input-{exec}");
        };
        if keys.len() >= MAX_PROMPTS && !keys.contains_key(exec) {
            keys.retain(|e, _| waiting(e));
        }
        let entry = keys.entry(exec.to_string()).or_insert((0, None));
        if let Some(key) = &entry.1 {
            return key.clone();
        }
        entry.0 += 1;
        let key = format!("input-{exec}-{}", entry.0);
        entry.1 = Some(key.clone());
        key
    }

    fn is_outstanding(&self, exec: &str, key: &str) -> bool {
        self.keys
            .lock()
            .is_ok_and(|k| k.get(exec).and_then(|e| e.1.as_deref()) == Some(key))
    }

    fn satisfied(&self, exec: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            if let Some(entry) = keys.get_mut(exec) {
                entry.1 = None;
            }
        }
    }

    fn forget(&self, exec: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(exec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opting_in_is_per_request() {
        let yes = json!({"_meta": {CLIENT_CAPABILITIES: {"extensions": {EXTENSION: {}}}},
            "name": "execute_code"});
        let no = json!({"_meta": {CLIENT_CAPABILITIES: {}}, "name": "execute_code"});
        assert!(opted_in(&yes) && is_ours("tools/call", &yes));
        assert!(!opted_in(&no) && !is_ours("tools/call", &no));
        assert!(is_ours("tasks/get", &no), "answered with -32021");
        assert!(
            !is_ours("tasks/list", &yes),
            "the extension has no tasks/list"
        );
        let other = json!({"_meta": yes["_meta"], "name": "list_notebooks"});
        assert!(!is_ours("tools/call", &other));
    }

    #[test]
    fn input_keys_are_never_reused() {
        let p = Prompts::default();
        let a = p.key_for("e1", |_| true);
        assert_eq!(p.key_for("e1", |_| true), a, "outstanding: the same key");
        assert!(p.is_outstanding("e1", &a));
        p.satisfied("e1");
        assert!(!p.is_outstanding("e1", &a));
        let b = p.key_for("e1", |_| true);
        assert_ne!(a, b, "a later prompt gets a new key");
        assert_ne!(p.key_for("e2", |_| true), b);
    }
}
