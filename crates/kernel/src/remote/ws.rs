//! The kernel WebSocket of a Jupyter Server / Kernel Gateway (`/api/kernels/{id}/channels`).
//!
//! Two framings (jupyter_server `services/kernels/connection/base.py`): the
//! `v1.kernel.websocket.jupyter.org` subprotocol, used when the server accepts it (binary
//! frames: a little-endian u64 count of offsets, the offsets, then the channel name and the
//! header / parent header / metadata / content / buffer parts), and the legacy JSON form
//! otherwise (one text frame per message, `channel` as a key).
//!
//! One task per connection reads every frame and routes it through the client's shared
//! router, so the drain never waits on a consumer; requests are queued for the same task.
//! When the socket drops (or stays silent past [`SILENT_FOR`]), the task reconnects with
//! backoff under the same session id, so the server replays what it buffered meanwhile;
//! a kernel the server no longer knows (404) or reports `dead` is marked dead with a note.

use std::sync::Weak;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use jupyter_protocol::JupyterMessage;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Gateway, REST_TIMEOUT};
use crate::client::Inner;
use crate::transport::Sink;
use crate::wire::{Channel, WireMessage};
use crate::{KernelClient, KernelError, Result};

/// The subprotocol of the binary framing.
pub const V1_PROTOCOL: &str = "v1.kernel.websocket.jupyter.org";
/// A connection that received nothing (not even a pong) for this long is re-made.
pub const SILENT_FOR: Duration = Duration::from_secs(30);
const PING_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A request on its way to the kernel: its channel and the four JSON parts.
struct Outgoing {
    channel: Channel,
    parts: [Value; 4],
}

/// The send side of a remote kernel's client: requests queue here until the connection
/// task writes them (after a reconnect, if the socket is down).
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl Outbox {
    pub(crate) fn send(&self, channel: Channel, msg: JupyterMessage, session: &str) -> Result<()> {
        let mut header = serde_json::to_value(&msg.header).map_err(|_| KernelError::Closed)?;
        header["session"] = Value::String(session.to_string());
        header["username"] = Value::String("jupyter-mcp".into());
        let parent = match &msg.parent_header {
            Some(p) => serde_json::to_value(p).map_err(|_| KernelError::Closed)?,
            None => Value::Object(Default::default()),
        };
        let content = serde_json::to_value(&msg.content).map_err(|_| KernelError::Closed)?;
        self.tx
            .send(Outgoing {
                channel,
                parts: [header, parent, msg.metadata.clone(), content],
            })
            .map_err(|_| KernelError::Closed)
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Conn {
    ws: Socket,
    v1: bool,
}

/// Opens the WebSocket and starts its connection task.
pub(crate) async fn connect(
    gw: Gateway,
    kernel_id: String,
    session: String,
) -> Result<KernelClient> {
    let conn = open(&gw, &kernel_id, &session).await?;
    tracing::debug!(gateway = %gw.url(), kernel = %kernel_id, v1 = conn.v1, "kernel WebSocket open");
    let (tx, rx) = mpsc::unbounded_channel();
    let client = KernelClient::with_sink(session.clone(), Sink::Remote(Outbox { tx }));
    let weak = client.downgrade();
    client.add_tasks(vec![tokio::spawn(run(
        weak, gw, kernel_id, session, conn, rx,
    ))]);
    Ok(client)
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Shell => "shell",
        Channel::IoPub => "iopub",
        Channel::Stdin => "stdin",
        Channel::Control => "control",
    }
}

fn channel_of(name: &str) -> Option<Channel> {
    Some(match name {
        "shell" => Channel::Shell,
        "iopub" => Channel::IoPub,
        "stdin" => Channel::Stdin,
        "control" => Channel::Control,
        _ => return None,
    })
}

/// Opens `/api/kernels/{id}/channels?session_id=...`, offering the v1 subprotocol; a server
/// that does not accept it gets a second attempt in the JSON form.
async fn open(gw: &Gateway, kernel_id: &str, session: &str) -> Result<Conn> {
    match open_once(gw, kernel_id, session, true).await {
        Err(OpenError::NoSubprotocol) => match open_once(gw, kernel_id, session, false).await {
            Ok(c) => Ok(c),
            Err(e) => Err(e.into_kernel(gw, kernel_id)),
        },
        Ok(c) => Ok(c),
        Err(e) => Err(e.into_kernel(gw, kernel_id)),
    }
}

enum OpenError {
    NoSubprotocol,
    Status(u16),
    Other(String),
}

impl OpenError {
    fn into_kernel(self, gw: &Gateway, kernel_id: &str) -> KernelError {
        let message = match self {
            OpenError::Status(401 | 403) => format!(
                "the kernel WebSocket of kernel {kernel_id} was refused: the gateway token is missing or wrong; set --gateway-token / JUPYTER_MCP_GATEWAY_TOKEN"
            ),
            OpenError::Status(404) => {
                format!("kernel {kernel_id} is gone from the server (404 on its WebSocket)")
            }
            OpenError::Status(s) => {
                format!("the kernel WebSocket of kernel {kernel_id} was refused (HTTP {s})")
            }
            OpenError::NoSubprotocol => "the server refused every WebSocket framing".into(),
            OpenError::Other(e) => format!(
                "cannot open the kernel WebSocket of kernel {kernel_id}: {e}; check that the gateway runs"
            ),
        };
        gw.err(message)
    }
}

async fn open_once(
    gw: &Gateway,
    kernel_id: &str,
    session: &str,
    offer_v1: bool,
) -> std::result::Result<Conn, OpenError> {
    let base = gw.url().replacen("http://", "ws://", 1);
    let url = format!("{base}/api/kernels/{kernel_id}/channels?session_id={session}");
    let mut req = url
        .into_client_request()
        .map_err(|e| OpenError::Other(e.to_string()))?;
    if let Some(t) = gw.token() {
        let v = format!("token {t}").parse().map_err(|_| {
            OpenError::Other("the gateway token is not a valid header value".into())
        })?;
        req.headers_mut().insert("Authorization", v);
    }
    if offer_v1 {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            V1_PROTOCOL.parse().expect("ascii"),
        );
    }
    let attempt = tokio_tungstenite::connect_async(req);
    match tokio::time::timeout(REST_TIMEOUT, attempt).await {
        Err(_) => Err(OpenError::Other(format!(
            "no answer within {} s",
            REST_TIMEOUT.as_secs()
        ))),
        Ok(Ok((ws, resp))) => {
            let v1 = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .is_some_and(|p| p == V1_PROTOCOL);
            Ok(Conn { ws, v1 })
        }
        Ok(Err(WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(
            SubProtocolError::NoSubProtocol,
        )))) => Err(OpenError::NoSubprotocol),
        Ok(Err(WsError::Http(resp))) => Err(OpenError::Status(resp.status().as_u16())),
        Ok(Err(e)) => Err(OpenError::Other(e.to_string())),
    }
}

/// v1 framing of one outgoing message.
fn encode_v1(o: &Outgoing) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = vec![channel_name(o.channel).as_bytes().to_vec()];
    parts.extend(o.parts.iter().map(|p| p.to_string().into_bytes()));
    frame_v1(&parts)
}

/// `count, offsets..., parts...` with the offsets of each part's start and of the end.
fn frame_v1(parts: &[Vec<u8>]) -> Vec<u8> {
    let n = parts.len() + 1;
    let mut offsets = Vec::with_capacity(n);
    let mut at = 8 * (n + 1);
    offsets.push(at);
    for p in parts {
        at += p.len();
        offsets.push(at);
    }
    let mut out = Vec::with_capacity(at);
    out.extend_from_slice(&(n as u64).to_le_bytes());
    for o in offsets {
        out.extend_from_slice(&(o as u64).to_le_bytes());
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Splits a v1 binary frame into the channel name and the message parts.
fn decode_v1(b: &[u8]) -> std::result::Result<(String, Vec<&[u8]>), String> {
    let word = |i: usize| -> std::result::Result<usize, String> {
        b.get(i * 8..i * 8 + 8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")) as usize)
            .ok_or_else(|| "truncated offset table".to_string())
    };
    let n = word(0)?;
    if !(2..=4096).contains(&n) {
        return Err(format!("implausible offset count {n}"));
    }
    let offsets: Vec<usize> = (1..=n).map(word).collect::<std::result::Result<_, _>>()?;
    let slice = |a: usize, z: usize| {
        b.get(a..z)
            .ok_or_else(|| format!("part {a}..{z} is outside the frame"))
    };
    let channel = String::from_utf8_lossy(slice(offsets[0], offsets[1])?).into_owned();
    let parts = offsets
        .windows(2)
        .skip(1)
        .map(|w| slice(w[0], w[1]))
        .collect::<std::result::Result<_, _>>()?;
    Ok((channel, parts))
}

fn encode(o: &Outgoing, v1: bool) -> Message {
    if v1 {
        Message::Binary(encode_v1(o).into())
    } else {
        let [header, parent, metadata, content] = o.parts.clone();
        let v = serde_json::json!({
            "header": header, "parent_header": parent, "metadata": metadata,
            "content": content, "channel": channel_name(o.channel), "buffers": [],
        });
        Message::Text(v.to_string().into())
    }
}

/// Decodes one received frame into a message (`None` for frames that are not messages).
fn decode(msg: &Message, v1: bool, inner: &Inner) -> Option<WireMessage> {
    let result = match (msg, v1) {
        (Message::Binary(b), true) => decode_v1(b).and_then(|(channel, parts)| {
            let channel = channel_of(&channel).ok_or(format!("unknown channel '{channel}'"))?;
            WireMessage::decode_parts(channel, &parts)
        }),
        (Message::Text(t), _) => serde_json::from_str::<Value>(t)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| {
                let name = v.get("channel").and_then(Value::as_str).unwrap_or("");
                let channel = channel_of(name).ok_or(format!("unknown channel '{name}'"))?;
                let part = |k: &str| {
                    v.get(k)
                        .cloned()
                        .unwrap_or(Value::Object(Default::default()))
                        .to_string()
                        .into_bytes()
                };
                let parts = [
                    part("header"),
                    part("parent_header"),
                    part("metadata"),
                    part("content"),
                ];
                WireMessage::decode_parts(channel, &parts)
            }),
        // Legacy binary messages (JSON form with buffers) are not decoded.
        (Message::Binary(_), false) => Err("a binary frame in the JSON form".into()),
        _ => return None,
    };
    match result {
        Ok((m, lossy)) => {
            if lossy {
                let n = inner.count_lossy();
                tracing::warn!(
                    lossy = n,
                    "a kernel message was not valid UTF-8 JSON; decoded lossily (U+FFFD)"
                );
            }
            Some(m)
        }
        Err(e) => {
            let n = inner.count_dropped();
            tracing::warn!(
                dropped = n,
                "dropping an unreadable kernel WebSocket message: {e}"
            );
            None
        }
    }
}

enum Ended {
    ClientGone,
    Dead,
    Dropped(String),
}

async fn run(
    weak: Weak<Inner>,
    gw: Gateway,
    kernel_id: String,
    session: String,
    mut conn: Conn,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut unsent: Option<Outgoing> = None;
    loop {
        match pump(&weak, &gw, &kernel_id, &mut conn, &mut rx, &mut unsent).await {
            Ended::ClientGone | Ended::Dead => return,
            Ended::Dropped(why) => {
                tracing::warn!(gateway = %gw.url(), kernel = %kernel_id, "kernel WebSocket dropped ({why}); reconnecting");
            }
        }
        let mut delay = BACKOFF_FIRST;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_MAX);
            let Some(inner) = weak.upgrade() else { return };
            match gw.kernel(&kernel_id).await {
                Ok(None) => {
                    inner.mark_dead(format!(
                        "kernel {kernel_id} is gone from the gateway {} (it was shut down or the gateway restarted)",
                        gw.url()
                    ));
                    return;
                }
                Ok(Some(m)) if m.execution_state == "dead" => {
                    inner.mark_dead(format!(
                        "the gateway {} reports kernel {kernel_id} dead",
                        gw.url()
                    ));
                    return;
                }
                Ok(Some(_)) => match open(&gw, &kernel_id, &session).await {
                    Ok(c) => {
                        tracing::info!(gateway = %gw.url(), kernel = %kernel_id, "kernel WebSocket reconnected");
                        conn = c;
                        break;
                    }
                    Err(e) => tracing::warn!("{e}"),
                },
                Err(e) => tracing::warn!("{e}; retrying in {} ms", delay.as_millis()),
            }
        }
    }
}

/// Moves messages both ways until the socket drops or the client is gone.
async fn pump(
    weak: &Weak<Inner>,
    gw: &Gateway,
    kernel_id: &str,
    conn: &mut Conn,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    unsent: &mut Option<Outgoing>,
) -> Ended {
    if let Some(o) = unsent.take() {
        if let Err(e) = conn.ws.send(encode(&o, conn.v1)).await {
            *unsent = Some(o);
            return Ended::Dropped(e.to_string());
        }
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(o) = out else { return Ended::ClientGone };
                if let Err(e) = conn.ws.send(encode(&o, conn.v1)).await {
                    *unsent = Some(o);
                    return Ended::Dropped(e.to_string());
                }
            }
            frame = conn.ws.next() => {
                let frame = match frame {
                    None => return Ended::Dropped("closed".into()),
                    Some(Err(e)) => return Ended::Dropped(e.to_string()),
                    Some(Ok(Message::Close(c))) => {
                        return Ended::Dropped(format!("closed by the server ({c:?})"))
                    }
                    Some(Ok(f)) => f,
                };
                last_heard = tokio::time::Instant::now();
                let Some(inner) = weak.upgrade() else { return Ended::ClientGone };
                let Some(msg) = decode(&frame, conn.v1, &inner) else { continue };
                // The server's own status messages (no parent): the kernel died, or died and
                // was restarted by the server with its state lost.
                if msg.parent_msg_id.is_none() {
                    match msg.execution_state() {
                        Some("dead") => {
                            inner.mark_dead(format!("the gateway {} reports kernel {kernel_id} dead", gw.url()));
                            return Ended::Dead;
                        }
                        Some("restarting") => {
                            inner.mark_dead(format!(
                                "kernel {kernel_id} died and the gateway {} restarted it (its variables are lost)",
                                gw.url()
                            ));
                            return Ended::Dead;
                        }
                        _ => {}
                    }
                }
                inner.route(msg);
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENT_FOR {
                    return Ended::Dropped(format!("nothing heard for {} s", SILENT_FOR.as_secs()));
                }
                if let Err(e) = conn.ws.send(Message::Ping(Vec::new().into())).await {
                    return Ended::Dropped(e.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_frames_round_trip() {
        let o = Outgoing {
            channel: Channel::Shell,
            parts: [
                serde_json::json!({"msg_id": "a", "msg_type": "execute_request"}),
                serde_json::json!({}),
                serde_json::json!({}),
                serde_json::json!({"code": "1+1"}),
            ],
        };
        let bytes = encode_v1(&o);
        let (channel, parts) = decode_v1(&bytes).unwrap();
        assert_eq!(channel, "shell");
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[3], br#"{"code":"1+1"}"#);
        // The layout jupyter_server writes: count = parts + 2 (channel start and every end).
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), 6);
        assert!(decode_v1(&bytes[..20]).is_err());
        assert!(decode_v1(&[0u8; 4]).is_err());
    }
}
