//! One MCP session, independent of its transport: an rmcp service loop fed by in-memory
//! lines, with the front layer in front of it. Both transports use it: stdio is "frames of
//! stdin → pipeline → stdout" ([`super::transport`]), HTTP runs one pipeline per
//! `Mcp-Session-Id` plus one shared pipeline for stateless 2026-07-28 requests
//! (`crate::http`).
//!
//! The front layer, per message: a frame is judged ([`super::frames::judge`]; malformed ones
//! are answered with JSON-RPC errors); 2025-11-25 task requests are answered by
//! [`super::tasks`], 2026-07-28 ones (the `io.modelcontextprotocol/tasks` extension) by
//! [`super::tasks::ext`]; tool arguments are checked against the tool's input schema
//! ([`super::arguments`]); everything else goes to rmcp, whose answers are rewritten for the
//! session's revision ([`super::session`]). Requests run concurrently (rmcp spawns a task
//! per request; the answers made here are spawned too), so a long call never delays the
//! next request of the same session. Output lines are whole JSON-RPC messages, in the order
//! they were produced; answers may come back out of request order.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frames::{self, Frame, Verdict};
use super::server::JupyterMcp;
use super::session::{Session, TaskScope};
use super::tasks;

/// Messages waiting for rmcp, per pipeline (backpressure for stdin; HTTP bounds its
/// in-flight requests before this).
const INPUT_QUEUE: usize = 1024;

/// The input side of one MCP session. Dropping it (or [`Pipeline::close`]) ends the input:
/// rmcp's loop then ends, and the output channel closes once every answer has been sent.
pub(crate) struct Pipeline {
    svc: JupyterMcp,
    session: Arc<Session>,
    to_rmcp: mpsc::Sender<String>,
    out: mpsc::UnboundedSender<String>,
}

/// A started pipeline: its input, its output lines, and the task that ends with rmcp.
pub(crate) struct Started {
    pub(crate) pipeline: Pipeline,
    pub(crate) output: mpsc::UnboundedReceiver<String>,
    /// Ends when rmcp's service loop ends (its input closed); an error if rmcp never started
    /// (the input ended before `initialize` or a first 2026-07-28 request).
    pub(crate) service: JoinHandle<anyhow::Result<()>>,
}

impl Pipeline {
    /// Starts rmcp for `svc` behind the front layer. `scope` says which tasks `tasks/list`
    /// shows in this session.
    pub(crate) fn start(svc: JupyterMcp, scope: TaskScope) -> Started {
        use rmcp::ServiceExt as _;
        let svc = svc.for_session();
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (rmcp_in, rmcp_out) = tokio::io::split(theirs);
        let (from_rmcp, mut into_rmcp) = tokio::io::split(ours);
        let (out_tx, out_rx) = mpsc::unbounded_channel::<String>();
        let (to_rmcp, mut queue) = mpsc::channel::<String>(INPUT_QUEUE);
        let session = Arc::new(Session::new(scope));

        // rmcp's output -> the output channel, rewritten for the session.
        let (tx, s) = (out_tx.clone(), session.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(from_rmcp).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(s.rewrite(line));
            }
        });
        // The one writer of rmcp's input; closing the queue closes rmcp's input.
        let feeder = tokio::spawn(async move {
            while let Some(line) = queue.recv().await {
                if into_rmcp.write_all(line.as_bytes()).await.is_err()
                    || into_rmcp.write_all(b"\n").await.is_err()
                {
                    break;
                }
            }
            let _ = into_rmcp.shutdown().await;
        });
        let service = {
            let svc = svc.clone();
            tokio::spawn(async move {
                let result = match svc.serve((rmcp_in, rmcp_out)).await {
                    Ok(running) => running
                        .waiting()
                        .await
                        .map(drop)
                        .map_err(|e| anyhow::anyhow!("MCP session ended abnormally: {e}")),
                    Err(e) => Err(anyhow::anyhow!("MCP initialization failed: {e}")),
                };
                feeder.abort();
                result
            })
        };
        Started {
            pipeline: Pipeline {
                svc,
                session,
                to_rmcp,
                out: out_tx,
            },
            output: out_rx,
            service,
        }
    }

    /// One raw frame of a byte-stream transport: judged, then answered or passed on.
    pub(crate) async fn frame(&self, frame: Frame) -> bool {
        match frames::judge(frame) {
            Verdict::Skip => true,
            Verdict::Reply(errors) => {
                for e in errors {
                    tracing::warn!("answered a malformed message: {}", e["error"]["message"]);
                    let _ = self.out.send(e.to_string());
                }
                true
            }
            Verdict::Drop(why) => {
                tracing::warn!("ignored a malformed notification: {why}");
                true
            }
            Verdict::Forward(line, msg) => self.message(line, &msg).await,
        }
    }

    /// One well-formed message (`line` is its text, `msg` the parsed value). Returns false
    /// when rmcp's input has closed (the session is over).
    pub(crate) async fn message(&self, line: String, msg: &Value) -> bool {
        match route(&self.svc, &self.session, msg) {
            Route::Here(answer) => {
                let tx = self.out.clone();
                tokio::spawn(async move {
                    let _ = tx.send(answer.await.to_string());
                });
                true
            }
            Route::Drop(why) => {
                tracing::warn!("ignored a message: {why}");
                true
            }
            Route::Rmcp => {
                self.session.forwarding(msg);
                self.to_rmcp.send(line).await.is_ok()
            }
        }
    }

    /// Ends the input (as dropping does).
    pub(crate) fn close(self) {}
}

type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Value> + Send>>;

/// Where one well-formed client message goes.
enum Route {
    /// Answered here by this future.
    Here(Answer),
    /// To rmcp, unchanged.
    Rmcp,
    /// Nowhere (logged).
    Drop(String),
}

fn route(svc: &JupyterMcp, session: &Arc<Session>, msg: &Value) -> Route {
    if msg.get("method").and_then(Value::as_str) == Some("initialize") {
        if let Some(info) = msg.pointer("/params/clientInfo") {
            let field = |k: &str| info.get(k).and_then(Value::as_str).unwrap_or("");
            svc.set_client_info(field("name"), field("version"));
        }
    }
    let method = msg.get("method").and_then(Value::as_str);
    let id = msg.get("id").cloned();
    let (Some(method), Some(id)) = (method, id) else {
        // A notification or a response: rmcp stops serving if one arrives before its session
        // has started, and none means anything then.
        return if session.started() {
            Route::Rmcp
        } else {
            Route::Drop(format!(
                "{} before initialize",
                method.unwrap_or("a response")
            ))
        };
    };
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    if session.extension_tasks_for(msg) && tasks::ext::is_ours(method, &params) {
        if method == "tools/call" {
            if let Some(failure) = super::arguments::check(svc, &params) {
                let mut failure = serde_json::to_value(failure).unwrap_or_default();
                failure["resultType"] = serde_json::json!("complete");
                return Route::Here(Box::pin(async move {
                    serde_json::json!({"jsonrpc": "2.0", "id": id, "result": failure})
                }));
            }
        }
        let (svc, session, method) = (svc.clone(), session.clone(), method.to_string());
        return Route::Here(Box::pin(async move {
            let req = tasks::ext::Request { id, method, params };
            tasks::ext::answer(&svc, &session, req).await
        }));
    }
    if session.tasks_for(msg) && tasks::is_ours(method, &params) {
        let (svc, session, method) = (svc.clone(), session.clone(), method.to_string());
        return Route::Here(Box::pin(async move {
            tasks::answer(&svc, &session, tasks::Request { id, method, params }).await
        }));
    }
    if method == "tools/call" {
        if let Some(failure) = super::arguments::check(svc, &params) {
            return Route::Here(Box::pin(async move {
                serde_json::json!({"jsonrpc": "2.0", "id": id, "result": failure})
            }));
        }
    }
    Route::Rmcp
}
