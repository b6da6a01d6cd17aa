//! MCP sessions over HTTP: one [`Pipeline`] per `Mcp-Session-Id` (MCP 2025-11-25
//! "Transports: Session Management"), plus one shared pipeline for stateless 2026-07-28
//! requests.
//!
//! Many HTTP requests share one pipeline, so JSON-RPC ids (and progress tokens) are remapped
//! on the way in to ids unique in the process (`h<n>`), and mapped back on the way out: two
//! clients of the shared pipeline may both send `id: 1`. A dispatcher task per pipeline routes
//! each output line to the HTTP request waiting for it (responses by id, progress by token);
//! anything else goes to the session's standalone GET stream, if one is open.
//!
//! Bounds: at most [`MAX_SESSIONS`] sessions (then 503), [`MAX_IN_FLIGHT`] requests in
//! flight per session (then 429), and a session idle for [`IDLE_TTL`] with nothing in flight
//! is ended (its pipeline closed). A client that goes away mid-call loses nothing: the
//! request goes on, its answer is dropped, and what it started stays in the engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::mcp::{JupyterMcp, Pipeline, Started, TaskScope};

/// Most sessions at once (2025-11-25 sessions; the stateless pipeline is not counted).
pub const MAX_SESSIONS: usize = 1000;
/// Most requests in flight in one session (the shared stateless pipeline: 4 times this).
pub const MAX_IN_FLIGHT: usize = 256;
/// A session with no request for this long and nothing in flight is ended.
pub const IDLE_TTL: Duration = Duration::from_secs(3600);

/// Ids and progress tokens unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What one HTTP request waits for: its progress notifications and then its response, as
/// JSON lines with the client's own id and progress token.
pub(super) type Replies = mpsc::UnboundedReceiver<String>;

/// One request waiting for its answer.
struct Waiting {
    client_id: Value,
    progress: Option<Value>,
    tx: mpsc::UnboundedSender<String>,
    _permit: OwnedSemaphorePermit,
}

/// One pipeline and the requests waiting on it.
pub(super) struct McpSession {
    pipeline: tokio::sync::Mutex<Option<Pipeline>>,
    waiting: Mutex<HashMap<String, Waiting>>,
    /// client id (JSON text) → internal id, for `notifications/cancelled` (sessions only).
    by_client_id: Mutex<HashMap<String, String>>,
    in_flight: Arc<Semaphore>,
    last_seen: Mutex<Instant>,
    standalone: Mutex<Option<mpsc::Sender<String>>>,
    stateless: bool,
}

/// Why a request could not be passed to its session.
pub(super) enum Refused {
    /// Too many requests in flight in this session.
    Busy,
    /// The session has ended (its pipeline closed).
    Gone,
}

impl McpSession {
    /// Starts a pipeline and its dispatcher. `stateless` sessions (the shared 2026-07-28
    /// pipeline) list no tasks of their own and take no notifications.
    pub(super) fn start(svc: JupyterMcp, stateless: bool) -> Arc<McpSession> {
        let Started {
            pipeline,
            output,
            service,
        } = Pipeline::start(svc, TaskScope::own());
        let in_flight = if stateless {
            4 * MAX_IN_FLIGHT
        } else {
            MAX_IN_FLIGHT
        };
        let session = Arc::new(McpSession {
            pipeline: tokio::sync::Mutex::new(Some(pipeline)),
            waiting: Mutex::new(HashMap::new()),
            by_client_id: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(in_flight)),
            last_seen: Mutex::new(Instant::now()),
            standalone: Mutex::new(None),
            stateless,
        });
        tokio::spawn(dispatch(Arc::downgrade(&session), output));
        tokio::spawn(async move {
            match service.await {
                Ok(Err(e)) => tracing::debug!("an HTTP MCP session ended: {e}"),
                Err(e) => tracing::warn!("an HTTP MCP session's task failed: {e}"),
                Ok(Ok(())) => {}
            }
        });
        session
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_seen.lock() {
            *t = Instant::now();
        }
    }

    /// Whether the session has been idle for `ttl` at `now` with nothing in flight.
    fn idle(&self, now: Instant, ttl: Duration) -> bool {
        let quiet = self.waiting.lock().map(|w| w.is_empty()).unwrap_or(true);
        let since = self.last_seen.lock().map(|t| *t).unwrap_or(now);
        quiet && now.saturating_duration_since(since) >= ttl
    }

    /// Passes a request on; its replies (progress, then the response) arrive on the returned
    /// channel with the client's id and token.
    pub(super) async fn request(&self, mut msg: Value) -> Result<Replies, Refused> {
        self.touch();
        let permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        let internal = format!("h{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let client_id = msg.get("id").cloned().unwrap_or(Value::Null);
        msg["id"] = Value::String(internal.clone());
        let progress = msg
            .pointer_mut("/params/_meta")
            .and_then(Value::as_object_mut)
            .and_then(|meta| {
                let token = meta.get("progressToken").cloned()?;
                // The internal id doubles as the internal progress token.
                meta.insert("progressToken".into(), Value::String(internal.clone()));
                Some(token)
            });
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(
                internal.clone(),
                Waiting {
                    client_id: client_id.clone(),
                    progress,
                    tx,
                    _permit: permit,
                },
            );
        }
        if !self.stateless {
            if let Ok(mut m) = self.by_client_id.lock() {
                m.insert(client_id.to_string(), internal.clone());
            }
        }
        if !self.send(msg).await {
            self.forget(&internal);
            return Err(Refused::Gone);
        }
        Ok(rx)
    }

    /// Passes a notification or a client response on (ids of `notifications/cancelled` are
    /// mapped to the internal ones; stateless sessions drop notifications: a 2026-07-28 client
    /// cancels by closing its request).
    pub(super) async fn notify(&self, mut msg: Value) -> Result<(), Refused> {
        self.touch();
        if self.stateless {
            return Ok(());
        }
        if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
            let client = msg
                .pointer("/params/requestId")
                .map(Value::to_string)
                .unwrap_or_default();
            let internal = self
                .by_client_id
                .lock()
                .ok()
                .and_then(|m| m.get(&client).cloned());
            match internal {
                Some(internal) => msg["params"]["requestId"] = Value::String(internal),
                None => return Ok(()), // already answered: nothing to cancel
            }
        }
        if self.send(msg).await {
            Ok(())
        } else {
            Err(Refused::Gone)
        }
    }

    async fn send(&self, msg: Value) -> bool {
        let pipeline = self.pipeline.lock().await;
        match pipeline.as_ref() {
            Some(p) => p.message(msg.to_string(), &msg).await,
            None => false,
        }
    }

    fn forget(&self, internal: &str) {
        let gone = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(internal));
        if let (Some(gone), Ok(mut m)) = (gone, self.by_client_id.lock()) {
            m.remove(&gone.client_id.to_string());
        }
    }

    /// Opens the standalone stream (GET): server messages that answer no request. A new one
    /// replaces the previous one, which ends.
    pub(super) fn open_stream(&self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(64);
        if let Ok(mut s) = self.standalone.lock() {
            *s = Some(tx);
        }
        rx
    }

    /// Ends the session: closes its pipeline (rmcp's loop ends) and its stream. Requests
    /// still waiting get no answer from it (their HTTP requests answer that the session
    /// ended); executions they started go on.
    pub(super) async fn close(&self) {
        if let Some(p) = self.pipeline.lock().await.take() {
            p.close();
        }
        if let Ok(mut s) = self.standalone.lock() {
            *s = None;
        }
    }

    /// Routes one output line of the pipeline.
    fn deliver(&self, line: String) {
        let Ok(mut msg) = serde_json::from_str::<Value>(&line) else {
            tracing::warn!("an MCP session produced a line that is not JSON; dropped");
            return;
        };
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        match method.as_deref() {
            None => {
                let id = match msg.get("id") {
                    Some(Value::String(s)) => s.clone(),
                    _ => return self.to_stream(line),
                };
                let Some(w) = self.waiting.lock().ok().and_then(|mut w| w.remove(&id)) else {
                    return self.to_stream(line);
                };
                if let Ok(mut m) = self.by_client_id.lock() {
                    m.remove(&w.client_id.to_string());
                }
                msg["id"] = w.client_id.clone();
                let _ = w.tx.send(msg.to_string());
            }
            Some("notifications/progress") => {
                let token = msg
                    .pointer("/params/progressToken")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let target = token.and_then(|t| {
                    self.waiting
                        .lock()
                        .ok()
                        .and_then(|w| w.get(&t).map(|w| (w.progress.clone(), w.tx.clone())))
                });
                match target {
                    Some((Some(client_token), tx)) => {
                        msg["params"]["progressToken"] = client_token;
                        let _ = tx.send(msg.to_string());
                    }
                    _ => tracing::debug!("progress for a request that is gone; dropped"),
                }
            }
            Some(_) => self.to_stream(line),
        }
    }

    fn to_stream(&self, line: String) {
        let tx = self.standalone.lock().ok().and_then(|s| s.clone());
        match tx {
            Some(tx) => {
                if tx.try_send(line).is_err() {
                    tracing::debug!("a session's standalone stream is full or closed; dropped");
                }
            }
            None => tracing::debug!("a server message with no stream to carry it; dropped"),
        }
    }
}

/// Delivers a pipeline's output until it ends, then lets every waiting request go.
async fn dispatch(
    session: std::sync::Weak<McpSession>,
    mut output: mpsc::UnboundedReceiver<String>,
) {
    while let Some(line) = output.recv().await {
        match session.upgrade() {
            Some(s) => s.deliver(line),
            None => return,
        }
    }
    if let Some(s) = session.upgrade() {
        if let Ok(mut w) = s.waiting.lock() {
            w.clear();
        }
    }
}

/// The live sessions by id, and the shared stateless pipeline.
pub(super) struct Sessions {
    svc: JupyterMcp,
    map: Mutex<HashMap<String, Arc<McpSession>>>,
    stateless: Mutex<Option<Arc<McpSession>>>,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Sessions {
    pub(super) fn new(svc: JupyterMcp) -> Sessions {
        Sessions {
            svc,
            map: Mutex::new(HashMap::new()),
            stateless: Mutex::new(None),
            gauge: sessions_gauge(),
        }
    }

    /// Creates a session under a new unguessable id (32 random bytes, hex), or `None` when
    /// [`MAX_SESSIONS`] are open.
    pub(super) fn create(&self) -> anyhow::Result<Option<(String, Arc<McpSession>)>> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut map = self
            .map
            .lock()
            .map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
        if map.len() >= MAX_SESSIONS {
            return Ok(None);
        }
        let session = McpSession::start(self.svc.clone(), false);
        map.insert(id.clone(), session.clone());
        self.gauge.set(map.len() as i64);
        self.count(map.len());
        Ok(Some((id, session)))
    }

    /// Publishes the number of open sessions to the engine (`server_status`).
    fn count(&self, n: usize) {
        self.svc
            .engine
            .mcp_sessions()
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// The session with this id.
    pub(super) fn get(&self, id: &str) -> Option<Arc<McpSession>> {
        self.map.lock().ok()?.get(id).cloned()
    }

    /// Removes and ends a session; false if there was none.
    pub(super) async fn end(&self, id: &str) -> bool {
        let gone = self.map.lock().ok().and_then(|mut m| {
            let gone = m.remove(id);
            self.gauge.set(m.len() as i64);
            self.count(m.len());
            gone
        });
        match gone {
            Some(s) => {
                s.close().await;
                true
            }
            None => false,
        }
    }

    /// The shared pipeline of stateless (2026-07-28) requests, started on first use.
    pub(super) fn stateless(&self) -> Arc<McpSession> {
        let mut s = match self.stateless.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        s.get_or_insert_with(|| McpSession::start(self.svc.clone(), true))
            .clone()
    }

    /// Number of open sessions.
    pub(super) fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Ends the sessions idle for `ttl` at `now`; returns how many.
    pub(super) async fn expire(&self, now: Instant, ttl: Duration) -> usize {
        let idle: Vec<String> = self
            .map
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, s)| s.idle(now, ttl))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in &idle {
            self.end(id).await;
        }
        idle.len()
    }

    /// Ends every session (shutdown).
    pub(super) async fn end_all(&self) {
        let ids: Vec<String> = self
            .map
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.end(&id).await;
        }
        let stateless = self.stateless.lock().ok().and_then(|mut s| s.take());
        if let Some(s) = stateless {
            s.close().await;
        }
    }
}

/// The `mcp_sessions` gauge (SPEC §7), registered once per process.
fn sessions_gauge() -> prometheus_client::metrics::gauge::Gauge {
    static GAUGE: std::sync::OnceLock<prometheus_client::metrics::gauge::Gauge> =
        std::sync::OnceLock::new();
    GAUGE
        .get_or_init(|| {
            let g = prometheus_client::metrics::gauge::Gauge::default();
            crate::metrics::register(
                "mcp_sessions",
                "Open MCP sessions of the HTTP transport (2025-11-25 sessions)",
                g.clone(),
            );
            g
        })
        .clone()
}
