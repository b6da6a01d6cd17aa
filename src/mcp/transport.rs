//! The stdio layer in front of rmcp: one newline-delimited JSON-RPC message at a time,
//! client bytes are split and judged ([`super::frames`]), malformed ones answered here,
//! 2025-11-25 task requests answered by [`super::tasks`], tool arguments checked against the
//! tool's input schema ([`super::arguments`]), and the rest passed to rmcp, whose answers are
//! rewritten for the session's revision ([`super::session`]). The server never stops on bad
//! input; it stops when the input ends.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use super::frames::{self, LineReader, Verdict, MAX_FRAME_BYTES};
use super::server::JupyterMcp;
use super::session::Session;
use super::tasks;

/// Serves `service` over the given byte streams. Returns when the input ends (the client
/// disconnected) and rmcp has finished.
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
    let session: Arc<Session> = Arc::default();

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
    // rmcp's output -> client, rewritten for the session.
    let (tx, s) = (out_tx.clone(), session.clone());
    tokio::spawn(async move {
        let mut lines = BufReader::new(from_rmcp).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(s.rewrite(line));
        }
    });
    // client -> rmcp, or answered here.
    let (tx, s, svc) = (out_tx.clone(), session.clone(), service.clone());
    let reader = tokio::spawn(async move {
        let mut input = LineReader::new(input, MAX_FRAME_BYTES);
        loop {
            let frame = match input.next().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("stdin: read failed ({e}); ending the session");
                    break;
                }
            };
            let (line, msg) = match frames::judge(frame) {
                Verdict::Skip => continue,
                Verdict::Reply(errors) => {
                    for e in errors {
                        tracing::warn!("answered a malformed message: {}", e["error"]["message"]);
                        let _ = tx.send(e.to_string());
                    }
                    continue;
                }
                Verdict::Drop(why) => {
                    tracing::warn!("ignored a malformed notification: {why}");
                    continue;
                }
                Verdict::Forward(line, msg) => (line, msg),
            };
            match route(&svc, &s, &msg) {
                Route::Here(answer) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(answer.await.to_string());
                    });
                }
                Route::Drop(why) => tracing::warn!("ignored a message: {why}"),
                Route::Rmcp => {
                    s.forwarding(&msg);
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

fn route(svc: &JupyterMcp, session: &Session, msg: &Value) -> Route {
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
    if session.tasks_for(msg) && tasks::is_ours(method, &params) {
        let (svc, method) = (svc.clone(), method.to_string());
        return Route::Here(Box::pin(async move {
            tasks::answer(&svc, tasks::Request { id, method, params }).await
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
