//! The web view's JSON read endpoints (`GET /api/view/*`, behind the daemon's token check;
//! the page authenticates with its session cookie). Shapes:
//!
//! - `overview`: `{server: {version, root, now, uptime_s, queue_depth, events_clients},
//!   notebooks: [{path, bytes?, modified?, kernel: {state, pid?, kernel_name, started_at?,
//!   memory_bytes?, idle_seconds?} | null, queue_depth, running: {execution_id, cell_id?} | null,
//!   last_finished_at?}]}` (memory: the kernel process's resident set, from `/proc`);
//! - `notebook?path=P`: `{path, kernelspec, cells: [{id, index, cell_type, source,
//!   execution_count, tags, outputs, execution: {execution_id, status} | null}]}`; the running
//!   cell's outputs are the live ones so far;
//! - `executions?notebook=P&limit=N`: the timeline, newest first (`queries::TimelineRow`);
//! - `execution?id=ID`: one execution with bounded outputs;
//! - `output?notebook=P&cell_id=C&index=I` or `output?execution_id=ID&index=I` (`&mime=M`):
//!   the whole text of one output, as `text/plain` (never rendered);
//! - `checkpoints?notebook=P`: `[{name, notebook, created_at, bytes, python_version,
//!   variables, verified}]`.
//!
//! Outputs are bounded as [`super::bound`] says, with links to the whole.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::queries::{self, Activity};
use super::{bound, encode};
use crate::engine::{EngineError, ExecutionView};
use crate::http::auth::error;
use crate::http::AppState;

/// Most notebooks listed.
const MAX_NOTEBOOKS: usize = 2000;
/// Default and largest timeline length.
const TIMELINE: usize = 200;

/// An engine error as an HTTP answer: a refused path or unknown id is the caller's (400/404),
/// the rest is ours (500).
pub(super) fn failed(e: EngineError) -> Response {
    let status = match &e {
        EngineError::Path(_) | EngineError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        EngineError::NotebookMissing { .. }
        | EngineError::ExecutionNotFound { .. }
        | EngineError::CellNotFound { .. }
        | EngineError::NoKernel { .. } => StatusCode::NOT_FOUND,
        EngineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

fn json_ok(v: Value) -> Response {
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/PID/status`).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn activity(app: &AppState) -> Result<BTreeMap<String, Activity>, Response> {
    app.engine
        .store()
        .call(|c| queries::activity(c))
        .await
        .map_err(|e| failed(e.into()))
}

/// `GET /api/view/overview`.
pub async fn overview(State(app): State<AppState>) -> Response {
    let engine = &app.engine;
    let files = match engine.list_notebooks(None, MAX_NOTEBOOKS).await {
        Ok(f) => f,
        Err(e) => return failed(e),
    };
    let kernels = match engine.list_kernels().await {
        Ok(k) => k,
        Err(e) => return failed(e),
    };
    let mut act = match activity(&app).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut rows: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (path, bytes, modified) in files {
        let mut m = serde_json::Map::new();
        m.insert("bytes".into(), json!(bytes));
        m.insert("modified".into(), json!(modified));
        rows.insert(path, m);
    }
    for k in kernels {
        // The engine's sample (the kernel's process group), else the process's own RSS.
        let memory = k.memory_bytes.or_else(|| k.pid.and_then(rss_bytes));
        let m = rows.entry(k.notebook.clone()).or_default();
        m.insert(
            "kernel".into(),
            json!({"state": k.state, "pid": k.pid, "kernel_name": k.kernel_name,
                   "started_at": k.started_at, "memory_bytes": memory,
                   "idle_seconds": k.idle_seconds}),
        );
    }
    let notebooks: Vec<Value> = rows
        .into_iter()
        .map(|(path, mut m)| {
            let a = act.remove(&path).unwrap_or_default();
            m.insert("path".into(), json!(path));
            m.entry("kernel").or_insert(Value::Null);
            m.insert("queue_depth".into(), json!(a.queue_depth));
            m.insert(
                "running".into(),
                a.running
                    .map(|(id, cell)| json!({"execution_id": id, "cell_id": cell}))
                    .unwrap_or(Value::Null),
            );
            m.insert("last_finished_at".into(), json!(a.last_finished_at));
            Value::Object(m)
        })
        .collect();
    json_ok(json!({
        "server": {
            "version": env!("CARGO_PKG_VERSION"),
            "root": engine.config().root.path().display().to_string(),
            "now": crate::store::now(),
            "uptime_s": engine.started().elapsed().as_secs(),
            "queue_depth": engine.queue_depth(),
            "events_clients": engine.events().subscribers(),
        },
        "notebooks": notebooks,
    }))
}

/// `?path=` of a notebook.
#[derive(Debug, Deserialize)]
pub struct NotebookQuery {
    path: String,
}

/// `GET /api/view/notebook?path=P`.
pub async fn notebook(State(app): State<AppState>, Query(q): Query<NotebookQuery>) -> Response {
    let engine = &app.engine;
    let path = match engine.resolve_notebook(&q.path).await {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    match engine.notebook_exists(&path).await {
        Ok(true) => {}
        Ok(false) => return failed(EngineError::NotebookMissing { notebook: path.rel }),
        Err(e) => return failed(e),
    }
    let (cells, _, kernelspec) = match engine.read_notebook(&path, None, None).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let act = match activity(&app).await {
        Ok(mut a) => a.remove(&path.rel).unwrap_or_default(),
        Err(r) => return r,
    };
    let mut marks: BTreeMap<String, Value> = BTreeMap::new();
    for (id, cell) in &act.pending {
        if let Some(c) = cell {
            marks
                .entry(c.clone())
                .or_insert(json!({"execution_id": id, "status": "pending"}));
        }
    }
    let mut live: Option<(String, String, Vec<Value>)> = None;
    if let Some((id, Some(cell))) = &act.running {
        marks.insert(
            cell.clone(),
            json!({"execution_id": id, "status": "running"}),
        );
        if let Ok(view) = engine.execution(id).await {
            live = Some((cell.clone(), id.clone(), view.record.outputs));
        }
    }
    let rel = path.rel.clone();
    let cells: Vec<Value> = cells
        .into_iter()
        .map(|c| {
            let outputs = match &live {
                Some((cell, id, outs)) if *cell == c.id => {
                    let id = id.clone();
                    bound::outputs(outs, &move |i| {
                        format!("/api/view/output?execution_id={}&index={i}", encode(&id))
                    })
                }
                _ => {
                    let (nb, cid) = (rel.clone(), c.id.clone());
                    bound::outputs(&c.outputs, &move |i| {
                        format!(
                            "/api/view/output?notebook={}&cell_id={}&index={i}",
                            encode(&nb),
                            encode(&cid)
                        )
                    })
                }
            };
            json!({
                "id": c.id, "index": c.index, "cell_type": c.cell_type, "source": c.source,
                "execution_count": c.execution_count, "tags": c.tags, "outputs": outputs,
                "execution": marks.get(&c.id).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    json_ok(json!({"path": path.rel, "kernelspec": kernelspec, "cells": cells}))
}

/// `?notebook=&limit=` of the timeline.
#[derive(Debug, Deserialize)]
pub struct TimelineQuery {
    notebook: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/view/executions`.
pub async fn executions(State(app): State<AppState>, Query(q): Query<TimelineQuery>) -> Response {
    let notebook = match q.notebook.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => match app.engine.resolve_notebook(n).await {
            Ok(p) => Some(p.rel),
            Err(e) => return failed(e),
        },
        None => None,
    };
    let limit = q.limit.unwrap_or(TIMELINE).clamp(1, TIMELINE);
    match app
        .engine
        .store()
        .call(move |c| queries::timeline(c, notebook.as_deref(), limit))
        .await
    {
        Ok(rows) => json_ok(json!({ "executions": rows })),
        Err(e) => failed(e.into()),
    }
}

/// `?id=` of an execution.
#[derive(Debug, Deserialize)]
pub struct ExecutionQuery {
    id: String,
}

/// One execution for the page (bounded outputs).
pub fn execution_json(view: &ExecutionView) -> Value {
    let r = &view.record;
    let id = r.id.clone();
    let outputs = bound::outputs(&r.outputs, &move |i| {
        format!("/api/view/output?execution_id={}&index={i}", encode(&id))
    });
    json!({
        "execution_id": r.id, "notebook": r.notebook, "cell_id": r.cell_id,
        "status": r.status.as_str(), "execution_count": r.execution_count,
        "requested_by": r.requested_by, "note": r.note, "error": r.error,
        "created_at": r.created_at, "started_at": r.started_at, "finished_at": r.finished_at,
        "duration_ms": view.duration_ms(), "input_prompt": view.input_prompt,
        "outputs": outputs,
    })
}

/// `GET /api/view/execution?id=ID`.
pub async fn execution(State(app): State<AppState>, Query(q): Query<ExecutionQuery>) -> Response {
    match app.engine.execution(&q.id).await {
        Ok(view) => json_ok(execution_json(&view)),
        Err(e) => failed(e),
    }
}

/// Which output to give whole.
#[derive(Debug, Deserialize)]
pub struct OutputQuery {
    execution_id: Option<String>,
    notebook: Option<String>,
    cell_id: Option<String>,
    index: usize,
    mime: Option<String>,
}

/// `GET /api/view/output`: the whole text of one output, as `text/plain` (never rendered:
/// `nosniff` and a sandboxing CSP).
pub async fn output(State(app): State<AppState>, Query(q): Query<OutputQuery>) -> Response {
    let engine = &app.engine;
    let outputs = match (&q.execution_id, &q.notebook, &q.cell_id) {
        (Some(id), _, _) => match engine.execution(id).await {
            Ok(v) => v.record.outputs,
            Err(e) => return failed(e),
        },
        (None, Some(nb), Some(cell)) => {
            let path = match engine.resolve_notebook(nb).await {
                Ok(p) => p,
                Err(e) => return failed(e),
            };
            match engine.cell(&path, Some(cell.as_str()), None).await {
                Ok(c) => c.outputs,
                Err(e) => return failed(e),
            }
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give execution_id, or notebook and cell_id, with index",
            )
        }
    };
    let Some((_, text)) = outputs
        .get(q.index)
        .and_then(|o| bound::whole(o, q.mime.as_deref()))
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("there is no output {} here", q.index),
        );
    };
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `?notebook=` of the checkpoint list.
#[derive(Debug, Deserialize)]
pub struct CheckpointQuery {
    notebook: Option<String>,
}

/// `GET /api/view/checkpoints`.
pub async fn checkpoints(
    State(app): State<AppState>,
    Query(q): Query<CheckpointQuery>,
) -> Response {
    let notebook = q.notebook.as_deref().filter(|n| !n.is_empty());
    match crate::checkpoint::list(&app.engine, notebook).await {
        Ok(list) => {
            let rows: Vec<Value> = list
                .into_iter()
                .map(|c| {
                    json!({"name": c.name, "notebook": c.notebook, "created_at": c.created_at,
                           "bytes": c.bytes, "python_version": c.python_version,
                           "variables": c.variables, "verified": c.verified})
                })
                .collect();
            json_ok(json!({ "checkpoints": rows }))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
