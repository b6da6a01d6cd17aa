//! `GET /events` (SPEC §7, fixed path): a WebSocket (RFC 6455) carrying one JSON text message
//! per event of the engine's [`EventHub`](super::EventHub). `?notebook=PATH` (root-relative, as
//! tools take it) keeps one notebook's events; a path the tools would refuse gets 400.
//!
//! Authentication is not checked here: the HTTP layer's middleware wraps every route
//! (bearer token, or `?token=` for browsers' WebSockets).
//!
//! Each client is served by its own task reading its own cursor into the hub: a client that
//! does not read never slows the engine or other clients. It loses its oldest events (and
//! gets `{"type":"lagged","dropped":N}`), and is disconnected when one send does not complete
//! within [`SEND_TIMEOUT`] or it stays behind longer than [`STALL_LIMIT`](super::STALL_LIMIT).

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;

use super::{lagged_json, Next, Subscriber};
use crate::engine::Engine;

/// A send to a client that does not complete within this disconnects it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest message accepted from a client (clients have nothing to say but close and ping).
const MAX_INCOMING: usize = 64 * 1024;

/// The `/events` route, for the HTTP server to merge into its router (auth is its middleware).
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/events", get(upgrade))
        .with_state(engine)
}

/// `/events` query parameters (`token` is the auth middleware's and ignored here).
#[derive(Debug, Deserialize)]
struct EventsQuery {
    notebook: Option<String>,
}

async fn upgrade(
    State(engine): State<Engine>,
    Query(q): Query<EventsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let filter = match q.notebook.as_deref() {
        None | Some("") => None,
        Some(n) => match engine.resolve_notebook(n).await {
            Ok(p) => Some(p.rel),
            Err(e) => {
                let body = serde_json::json!({"error": format!("notebook filter refused: {e}")});
                let headers = [(axum::http::header::CONTENT_TYPE, "application/json")];
                return (StatusCode::BAD_REQUEST, headers, body.to_string()).into_response();
            }
        },
    };
    let sub = engine.events().subscribe(filter);
    ws.max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| serve_client(socket, sub))
}

/// Forwards events to one client until it closes, the hub closes, or it is too slow.
async fn serve_client(socket: WebSocket, mut sub: Subscriber) {
    let (mut tx, mut rx) = socket.split();
    loop {
        let text = tokio::select! {
            next = sub.next() => match next {
                Next::Event(ev) => ev.json.clone(),
                Next::Lagged(n) => lagged_json(n),
                Next::TooSlow => {
                    tracing::info!("/events client stayed behind too long; disconnected");
                    break;
                }
                Next::Closed => break,
            },
            incoming = rx.next() => match incoming {
                // Pings are answered by the WebSocket layer on the next send.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
        };
        match tokio::time::timeout(SEND_TIMEOUT, tx.send(Message::Text(text))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break, // the client went away
            Err(_) => {
                sub.mark_disconnected();
                tracing::info!(
                    "/events client did not take a message within {} s; disconnected",
                    SEND_TIMEOUT.as_secs()
                );
                break;
            }
        }
    }
}
