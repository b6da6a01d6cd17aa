//! `/mcp`: MCP Streamable HTTP (MCP 2025-11-25 "Transports: Streamable HTTP", and the
//! stateless form of 2026-07-28).
//!
//! * `POST` carries one JSON-RPC message (at most [`MAX_BODY_BYTES`], else 413). Malformed
//!   ones are answered by the front layer's judge (JSON-RPC -32700/-32600/-32602; HTTP 400
//!   when the error answers no request id). Notifications and responses → 202. A request →
//!   `application/json` with its response, or `text/event-stream` when the client accepts it
//!   and the request has a `progressToken`: its progress notifications, then its response.
//! * `initialize` creates a session and returns its `Mcp-Session-Id`; later requests of that
//!   session carry it (400 without it, 404 when unknown or ended). A request of the 2026-07-28
//!   revision (`server/discover`, or the revision in `MCP-Protocol-Version` / the request's
//!   `_meta`) without a session id is stateless: it goes to one shared pipeline.
//! * `GET` with a session id opens the session's standalone SSE stream; `DELETE` ends the
//!   session.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::Value;

use super::sessions::{Refused, Replies};
use super::AppState;
use crate::mcp::frames::{self, Frame, Verdict};

/// Largest request body, in bytes (the stdio line limit).
pub const MAX_BODY_BYTES: usize = frames::MAX_FRAME_BYTES;
/// The session header (case-insensitive on the wire).
pub const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// Revisions whose `MCP-Protocol-Version` header is accepted.
const KNOWN_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];
const STATELESS_REVISION: &str = "2026-07-28";
/// How long a request waits for start-up recovery before 503.
const READY_WAIT: Duration = Duration::from_secs(120);

fn rpc_error(status: StatusCode, id: Value, code: i64, message: impl Into<String>) -> Response {
    json_response(status, frames::error_response(id, code, message))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .any(|v| v.eq_ignore_ascii_case(mime) || v == "*/*")
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `POST /mcp`.
pub(super) async fn post(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Value::Null,
                frames::INVALID_REQUEST,
                format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes; put large data in a \
                     file under the root and pass its path"
                ),
            )
        }
    };
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return rpc_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Value::Null,
                frames::INVALID_REQUEST,
                format!("Content-Type must be application/json, not {essence:?}"),
            );
        }
    }
    if let Some(v) = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok()) {
        if !KNOWN_VERSIONS.contains(&v.trim()) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                frames::INVALID_REQUEST,
                format!(
                    "unsupported MCP-Protocol-Version {v:?}; this server speaks {}",
                    KNOWN_VERSIONS.join(", ")
                ),
            );
        }
    }
    let msg = match frames::judge(Frame::Line(bytes.to_vec())) {
        Verdict::Forward(_, msg) => msg,
        Verdict::Skip => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                frames::INVALID_REQUEST,
                "the request body is empty; POST one JSON-RPC message",
            )
        }
        Verdict::Drop(why) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                frames::INVALID_REQUEST,
                why,
            )
        }
        Verdict::Reply(mut errors) => {
            let answers_a_request = errors.len() == 1 && !errors[0]["id"].is_null();
            let status = if answers_a_request {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            let body = if errors.len() == 1 {
                errors.remove(0)
            } else {
                Value::Array(errors)
            };
            return json_response(status, body);
        }
    };
    if let Err(r) = app.wait_ready(READY_WAIT).await {
        return r;
    }
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let is_request = msg.get("id").is_some() && !method.is_empty();
    if is_request && method == "initialize" {
        return initialize(&app, msg).await;
    }
    let session = match session_id(&headers) {
        Some(id) => match app.sessions.get(&id) {
            Some(s) => s,
            None => {
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    msg.get("id").cloned().unwrap_or(Value::Null),
                    frames::INVALID_REQUEST,
                    "unknown or expired MCP session: send initialize again to start a new one",
                )
            }
        },
        None if stateless(&headers, &msg) => app.sessions.stateless(),
        None => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                msg.get("id").cloned().unwrap_or(Value::Null),
                frames::INVALID_REQUEST,
                "missing Mcp-Session-Id header: send initialize first and pass the session id \
                 it returns (or speak the stateless 2026-07-28 revision)",
            )
        }
    };
    if !is_request {
        return match session.notify(msg).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(_) => gone(Value::Null),
        };
    }
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let has_progress = msg.pointer("/params/_meta/progressToken").is_some();
    let replies = match session.request(msg).await {
        Ok(r) => r,
        Err(Refused::Busy) => return busy(id),
        Err(Refused::Gone) => return gone(id),
    };
    if has_progress && accepts(&headers, "text/event-stream") {
        sse(replies).into_response()
    } else {
        match last_reply(replies).await {
            Some(line) => json_line(StatusCode::OK, line),
            None => gone(id),
        }
    }
}

fn stateless(headers: &HeaderMap, msg: &Value) -> bool {
    let header = headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let meta = msg
        .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
        .and_then(Value::as_str);
    msg.get("method").and_then(Value::as_str) == Some("server/discover")
        || header.is_some_and(|v| v >= STATELESS_REVISION)
        || meta.is_some_and(|v| v >= STATELESS_REVISION)
}

fn busy(id: Value) -> Response {
    rpc_error(
        StatusCode::TOO_MANY_REQUESTS,
        id,
        -32000,
        format!(
            "too many requests in flight in this MCP session (at most {}); wait for some to \
             finish or open another session",
            super::sessions::MAX_IN_FLIGHT
        ),
    )
}

fn gone(id: Value) -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        id,
        frames::INVALID_REQUEST,
        "the MCP session ended while the request was pending; what it started goes on (see \
         get_execution); send initialize again to start a new session",
    )
}

fn json_line(status: StatusCode, line: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], line).into_response()
}

/// The response among a request's replies (progress notifications are skipped).
async fn last_reply(mut replies: Replies) -> Option<String> {
    while let Some(line) = replies.recv().await {
        if !line.contains("\"method\"") || is_response(&line) {
            return Some(line);
        }
    }
    None
}

fn is_response(line: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v.get("method").is_none())
}

/// Progress notifications, then the response, as SSE `message` events.
fn sse(replies: Replies) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold((replies, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let line = rx.recv().await?;
        let last = is_response(&line);
        Some((Ok(Event::default().event("message").data(line)), (rx, last)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn initialize(app: &AppState, msg: Value) -> Response {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let (sid, session) = match app.sessions.create() {
        Ok(Some(s)) => s,
        Ok(None) => {
            return rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                -32000,
                format!(
                    "too many MCP sessions are open (at most {}); end unused ones with DELETE \
                     /mcp (idle sessions expire after an hour)",
                    super::sessions::MAX_SESSIONS
                ),
            )
        }
        Err(e) => return rpc_error(StatusCode::INTERNAL_SERVER_ERROR, id, -32603, e.to_string()),
    };
    let replies = match session.request(msg).await {
        Ok(r) => r,
        Err(_) => {
            app.sessions.end(&sid).await;
            return gone(id);
        }
    };
    let Some(line) = last_reply(replies).await else {
        app.sessions.end(&sid).await;
        return gone(id);
    };
    let ok = serde_json::from_str::<Value>(&line).is_ok_and(|v| v.get("result").is_some());
    let mut response = json_line(StatusCode::OK, line);
    if ok {
        if let Ok(v) = HeaderValue::from_str(&sid) {
            response.headers_mut().insert(SESSION_HEADER, v);
        }
    } else {
        app.sessions.end(&sid).await;
    }
    response
}

/// `GET /mcp`: the session's standalone SSE stream (server messages that answer no request).
pub(super) async fn get(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if !accepts(&headers, "text/event-stream") {
        return super::auth::error(
            StatusCode::NOT_ACCEPTABLE,
            "GET /mcp opens an event stream: send Accept: text/event-stream",
        );
    }
    let Some(id) = session_id(&headers) else {
        return super::auth::error(
            StatusCode::BAD_REQUEST,
            "GET /mcp needs the Mcp-Session-Id header of an initialized session",
        );
    };
    let Some(session) = app.sessions.get(&id) else {
        return super::auth::error(
            StatusCode::NOT_FOUND,
            "unknown or expired MCP session: send initialize again",
        );
    };
    let rx = session.open_stream();
    drop(session);
    let stop = app.shutdown.clone();
    let stream = futures::stream::unfold((rx, stop), |(mut rx, stop)| async move {
        tokio::select! {
            line = rx.recv() => line.map(|l| (Ok::<_, Infallible>(Event::default().event("message").data(l)), (rx, stop))),
            _ = stop.cancelled() => None,
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `DELETE /mcp`: ends the session.
pub(super) async fn delete(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let Some(id) = session_id(&headers) else {
        return super::auth::error(
            StatusCode::BAD_REQUEST,
            "DELETE /mcp needs the Mcp-Session-Id header of the session to end",
        );
    };
    if app.sessions.end(&id).await {
        StatusCode::NO_CONTENT.into_response()
    } else {
        super::auth::error(StatusCode::NOT_FOUND, "unknown or expired MCP session")
    }
}
