//! The event hub (SPEC §7 `/events`): the engine publishes execution status changes, outputs
//! and kernel states; each subscriber (a `/events` WebSocket client, a test) reads them at its
//! own pace.
//!
//! Message shapes (one JSON object per event, fixed by SPEC §7):
//! - `{"type":"execution","execution_id","notebook","cell_id?","status","execution_count?","at"}`
//!   on every status change (`pending`, `running`, then one terminal state); `at` is RFC 3339;
//! - `{"type":"output","execution_id","notebook","output"}` per nbformat output the kernel
//!   sends (`stream` chunk, `display_data`, `execute_result`, `error`), rendered as agents get
//!   it: bounded, ANSI-stripped `text`, `mime_types`, `truncated` (no rich payloads);
//! - `{"type":"kernel","notebook","state","pid?"}` with `state` one of `starting`, `idle`,
//!   `busy`, `restarting`, `shutdown`, `dead`;
//! - `{"type":"lagged","dropped":N}` to a subscriber that fell behind and lost N events.
//!
//! SPEC §7 says nothing of cleared and updated outputs; these extensions carry them (SPEC §4:
//! `clear_output(wait=True)` and `update_display_data` are honoured):
//! - an `output` event whose output was displayed with a display id (`display(x,
//!   display_id=True)`) has a top-level `"display_id"`;
//! - `{"type":"clear_output","execution_id","notebook","wait"}`: the execution's outputs so
//!   far are cleared; with `wait: true`, only when its next output arrives (Jupyter's
//!   `clear_output(wait=True)`);
//! - `{"type":"update_display","execution_id","notebook","display_id","output"}`: every
//!   output of the notebook shown with `display_id` (in this execution's cell or another)
//!   now shows `output` (a `display_data`). An `output` event with a `display_id` also
//!   updates the earlier outputs with that id, then is appended.
//!
//! A UI applying these in order, merging consecutive `stream` outputs of the same name and
//! applying `\r`/`\b` as nbformat savers do, ends with the outputs the notebook saves for
//! the cell (as agents get them: bounded text).
//!
//! Fan-out is a `tokio::sync::broadcast` ring of [`CAPACITY`] events per hub (one hub per
//! engine). Publishing never waits: `send` writes one slot under a short lock that readers
//! never hold while they are stalled, overwriting the oldest event; a subscriber more than
//! [`CAPACITY`] events behind loses its own oldest events and is told how many on its next
//! read (the others keep theirs, since each has its own cursor). A subscriber that stays
//! behind longer than [`STALL_LIMIT`] is disconnected ([`Next::TooSlow`]). With no subscriber
//! the engine skips building events at all ([`EventHub::wanted`]).

mod ws;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::store::Status;

pub use ws::router;

/// Events kept for subscribers that are behind (the per-subscriber queue bound).
pub const CAPACITY: usize = 1024;

/// A subscriber that has been behind (lost events and not caught up since) this long is
/// disconnected.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

/// One published event: its JSON text (encoded once, shared by every subscriber) and the
/// notebook it concerns (for `?notebook=` filters).
#[derive(Debug)]
pub struct Event {
    /// Root-relative notebook path.
    pub notebook: String,
    /// The message as sent on the wire.
    pub json: Utf8Bytes,
}

impl Event {
    fn new(notebook: &str, value: Value) -> Event {
        Event {
            notebook: notebook.to_string(),
            json: Utf8Bytes::from(value.to_string()),
        }
    }

    /// An execution status change.
    pub fn execution(
        id: &str,
        notebook: &str,
        cell_id: Option<&str>,
        status: Status,
        execution_count: Option<i64>,
    ) -> Event {
        let mut m = Map::new();
        m.insert("type".into(), json!("execution"));
        m.insert("execution_id".into(), json!(id));
        m.insert("notebook".into(), json!(notebook));
        if let Some(c) = cell_id {
            m.insert("cell_id".into(), json!(c));
        }
        m.insert("status".into(), json!(status.as_str()));
        if let Some(n) = execution_count {
            m.insert("execution_count".into(), json!(n));
        }
        m.insert("at".into(), json!(crate::store::now()));
        Event::new(notebook, Value::Object(m))
    }

    /// One nbformat output (as built from an IOPub message), bounded to `max_text_bytes` of
    /// text exactly as agents get it (`jmcp_outputs::render`).
    pub fn output(id: &str, notebook: &str, output: Value, max_text_bytes: usize) -> Event {
        Event::new(
            notebook,
            Event::output_value(id, notebook, output, max_text_bytes),
        )
    }

    /// The JSON of an `output` event (see [`Event::output`]).
    fn output_value(id: &str, notebook: &str, output: Value, max_text_bytes: usize) -> Value {
        let opts = jmcp_outputs::RenderOptions { max_text_bytes };
        let rendered = jmcp_outputs::render(&[output], &opts);
        let output = rendered
            .outputs
            .into_iter()
            .next()
            .and_then(|o| serde_json::to_value(o).ok())
            .unwrap_or(Value::Null);
        json!({"type": "output", "execution_id": id, "notebook": notebook, "output": output})
    }

    /// The event for one IOPub message of an execution, or `None` when the message is not
    /// about outputs (`status`, `execute_input`, `comm_*`, ...) or is malformed:
    /// - `stream`, `display_data`, `execute_result`, `error`: an `output` event; a
    ///   `display_data` / `execute_result` carrying a `transient.display_id` also has a
    ///   top-level `display_id`;
    /// - `clear_output`: `{"type":"clear_output","execution_id","notebook","wait"}`;
    /// - `update_display_data`: `{"type":"update_display","execution_id","notebook",
    ///   "display_id","output"}` (the new content as a `display_data` output).
    ///
    /// How a UI applies them to end with the saved cell's outputs is in the module docs.
    pub fn from_iopub(
        id: &str,
        notebook: &str,
        msg_type: &str,
        content: &Value,
        max_text_bytes: usize,
    ) -> Option<Event> {
        let display_id = content
            .get("transient")
            .and_then(|t| t.get("display_id"))
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty());
        match msg_type {
            "stream" | "display_data" | "execute_result" | "error" => {
                let out = jmcp_outputs::output_from_msg(msg_type, content)?;
                let mut ev = Event::output_value(id, notebook, out, max_text_bytes);
                if let (Some(d), "display_data" | "execute_result") = (display_id, msg_type) {
                    ev["display_id"] = json!(d);
                }
                Some(Event::new(notebook, ev))
            }
            "clear_output" => {
                let wait = content.get("wait").is_some_and(|w| match w {
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                    _ => false,
                });
                Some(Event::new(
                    notebook,
                    json!({"type": "clear_output", "execution_id": id, "notebook": notebook, "wait": wait}),
                ))
            }
            "update_display_data" => {
                let display_id = display_id?;
                let out = jmcp_outputs::output_from_msg("display_data", content)?;
                let mut ev = Event::output_value(id, notebook, out, max_text_bytes);
                ev["type"] = json!("update_display");
                ev["display_id"] = json!(display_id);
                Some(Event::new(notebook, ev))
            }
            _ => None,
        }
    }

    /// A kernel state.
    pub fn kernel(notebook: &str, state: &str, pid: Option<u32>) -> Event {
        let mut v = json!({"type": "kernel", "notebook": notebook, "state": state});
        if let Some(pid) = pid {
            v["pid"] = json!(pid);
        }
        Event::new(notebook, v)
    }
}

/// The `lagged` message for `dropped` lost events.
pub fn lagged_json(dropped: u64) -> Utf8Bytes {
    Utf8Bytes::from(json!({"type": "lagged", "dropped": dropped}).to_string())
}

/// Publishes events to every subscriber; cheap to clone (one per engine).
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    tx: broadcast::Sender<Arc<Event>>,
    /// See [`STALL_LIMIT`].
    stall_limit: Duration,
    /// Events lost by subscribers of this hub (also counted in `events_dropped_total`).
    dropped: AtomicU64,
    /// Subscribers disconnected for being too slow.
    disconnected: AtomicU64,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub::new(CAPACITY)
    }
}

impl EventHub {
    /// A hub keeping up to `capacity` events for subscribers that are behind.
    pub fn new(capacity: usize) -> EventHub {
        EventHub::with_stall_limit(capacity, STALL_LIMIT)
    }

    /// A hub whose subscribers are disconnected after being behind for `stall_limit`.
    pub fn with_stall_limit(capacity: usize, stall_limit: Duration) -> EventHub {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventHub {
            inner: Arc::new(HubInner {
                tx,
                stall_limit,
                dropped: AtomicU64::new(0),
                disconnected: AtomicU64::new(0),
            }),
        }
    }

    /// True when someone subscribes: callers skip building events otherwise.
    pub fn wanted(&self) -> bool {
        self.inner.tx.receiver_count() > 0
    }

    /// Publishes an event; never waits (see the module docs).
    pub fn publish(&self, event: Event) {
        if self.wanted() {
            let _ = self.inner.tx.send(Arc::new(event));
        }
    }

    /// Publishes the event `make` builds, only if someone subscribes.
    pub fn publish_with(&self, make: impl FnOnce() -> Event) {
        if self.wanted() {
            let _ = self.inner.tx.send(Arc::new(make()));
        }
    }

    /// A new subscriber, seeing events published from now on; `notebook` (root-relative, as
    /// resolved by the engine) keeps only that notebook's events.
    pub fn subscribe(&self, notebook: Option<String>) -> Subscriber {
        crate::metrics::events().clients.inc();
        Subscriber {
            rx: self.inner.tx.subscribe(),
            filter: notebook,
            hub: self.inner.clone(),
            behind_since: None,
        }
    }

    /// Current subscribers.
    pub fn subscribers(&self) -> usize {
        self.inner.tx.receiver_count()
    }

    /// Events lost by this hub's subscribers so far.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Subscribers of this hub disconnected for being too slow so far.
    pub fn disconnected(&self) -> u64 {
        self.inner.disconnected.load(Ordering::Relaxed)
    }
}

/// What a subscriber reads next.
#[derive(Debug)]
pub enum Next {
    /// The next event (after the filter).
    Event(Arc<Event>),
    /// This many events were lost (overwritten before this subscriber read them).
    Lagged(u64),
    /// Behind for longer than [`STALL_LIMIT`]: disconnect it.
    TooSlow,
    /// The hub is gone (engine dropped).
    Closed,
}

/// One subscriber's cursor into the hub's ring.
pub struct Subscriber {
    rx: broadcast::Receiver<Arc<Event>>,
    filter: Option<String>,
    hub: Arc<HubInner>,
    /// When it first lost events without having caught up since.
    behind_since: Option<std::time::Instant>,
}

impl Subscriber {
    /// Waits for the next event for this subscriber.
    pub async fn next(&mut self) -> Next {
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    if self.rx.is_empty() {
                        self.behind_since = None;
                    }
                    if self.filter.as_ref().is_some_and(|f| *f != ev.notebook) {
                        continue;
                    }
                    return Next::Event(ev);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.hub.dropped.fetch_add(n, Ordering::Relaxed);
                    crate::metrics::events().dropped.inc_by(n);
                    let now = std::time::Instant::now();
                    let since = *self.behind_since.get_or_insert(now);
                    if now.duration_since(since) > self.hub.stall_limit {
                        self.mark_disconnected();
                        return Next::TooSlow;
                    }
                    return Next::Lagged(n);
                }
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }

    /// Records that this subscriber is being disconnected for being too slow (also called by
    /// a transport whose send did not complete in time).
    /// The events it had not read yet count as dropped.
    pub fn mark_disconnected(&self) {
        self.hub.disconnected.fetch_add(1, Ordering::Relaxed);
        crate::metrics::events().disconnected.inc();
        let unread = self.rx.len() as u64;
        self.hub.dropped.fetch_add(unread, Ordering::Relaxed);
        crate::metrics::events().dropped.inc_by(unread);
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        crate::metrics::events().clients.dec();
    }
}
