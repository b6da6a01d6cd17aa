//! A client for one running kernel (Jupyter messaging spec v5.3, "Messaging in Jupyter").
//!
//! Four reader tasks (shell, iopub, stdin, control) drain their sockets continuously and route
//! every message to the request that caused it by exact `parent_header.msg_id` match, through
//! unbounded channels: a slow consumer never slows the IOPub drain (a kernel drops IOPub past its
//! ZeroMQ high-water mark). A fifth task checks the heartbeat. Messages whose parent is not
//! registered are counted and logged, never attributed by prefix or guess.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, Header, InputReply, InterruptRequest, JupyterMessage,
    JupyterMessageContent, KernelInfoRequest, ShutdownRequest,
};
use jupyter_zmq_client::{Connection, RawMessage};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::orphans::{Limits, OrphanBuffer};
use crate::wire::{Channel, WireMessage};
use crate::{KernelError, Result};

use crate::transport::Sink;

/// Something that happened for one request.
// Messages are the common case and `Died` comes once per request: boxing every message to
// shrink the rare variant would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum KernelEvent {
    /// A message whose `parent_header.msg_id` is the request's id (any channel).
    Message(WireMessage),
    /// The kernel died or the connection closed: no more messages will come.
    Died(String),
}

/// Flags of an `execute_request` (messaging spec "Execute").
#[derive(Debug, Clone, Copy)]
pub struct ExecuteOptions {
    /// Record in history and increment `execution_count`.
    pub store_history: bool,
    /// Let the kernel send `input_request` on stdin.
    pub allow_stdin: bool,
    /// Abort queued requests after an error.
    pub stop_on_error: bool,
    /// No outputs, no `execution_count` (used for introspection code).
    pub silent: bool,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        ExecuteOptions {
            store_history: true,
            allow_stdin: true,
            stop_on_error: true,
            silent: false,
        }
    }
}

/// A registered request: its `msg_id` and the stream of its messages. Dropping the handle
/// unregisters the route.
pub struct RequestHandle {
    /// `header.msg_id` of the request we sent.
    pub msg_id: String,
    events: mpsc::UnboundedReceiver<KernelEvent>,
    client: KernelClient,
    dead: watch::Receiver<Option<String>>,
}

impl RequestHandle {
    /// The next event; `Died` once the kernel is gone and every queued message was delivered.
    pub async fn next(&mut self) -> KernelEvent {
        loop {
            if let Ok(ev) = self.events.try_recv() {
                return ev;
            }
            if let Some(reason) = self.dead.borrow().clone() {
                return KernelEvent::Died(reason);
            }
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => return ev,
                    None => return KernelEvent::Died("kernel connection closed".into()),
                },
                changed = self.dead.changed() => {
                    if changed.is_err() {
                        return KernelEvent::Died("kernel connection closed".into());
                    }
                }
            }
        }
    }
}

impl RequestHandle {
    /// A message already delivered to this request, without waiting.
    pub fn try_next(&mut self) -> Option<KernelEvent> {
        self.events.try_recv().ok()
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        self.client.unregister(&self.msg_id);
    }
}

/// Handle to one kernel; cheap to clone. Reader tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct KernelClient {
    inner: Arc<Inner>,
}

/// Open requests by `msg_id`, and messages for parents not (yet) registered.
struct Routes {
    open: HashMap<String, mpsc::UnboundedSender<KernelEvent>>,
    orphans: OrphanBuffer,
}

pub(crate) struct Inner {
    session: String,
    /// Where requests go: the ZeroMQ sockets, or a remote kernel's WebSocket.
    sink: Sink,
    routes: Mutex<Routes>,
    state: watch::Sender<String>,
    dead: watch::Sender<Option<String>>,
    unrouted: AtomicU64,
    /// Messages that needed a lossy decode (invalid UTF-8, unreadable content).
    lossy: AtomicU64,
    /// Messages dropped because they could not be verified or routed at all.
    dropped: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

impl KernelClient {
    /// Connects all five channels to a kernel. Does not wait for readiness: call
    /// [`KernelClient::wait_ready`].
    pub async fn connect(info: &ConnectionInfo) -> Result<KernelClient> {
        let session = uuid::Uuid::new_v4().to_string();
        let identity = jupyter_zmq_client::peer_identity_for_session(&session)
            .map_err(|e| KernelError::connection("creating the session identity", e))?;
        let iopub = jupyter_zmq_client::create_client_iopub_connection(info, "", &session)
            .await
            .map_err(|e| KernelError::connection("connecting iopub", e))?;
        let shell = jupyter_zmq_client::create_client_shell_connection_with_identity(
            info,
            &session,
            identity.clone(),
        )
        .await
        .map_err(|e| KernelError::connection("connecting shell", e))?;
        let stdin = jupyter_zmq_client::create_client_stdin_connection_with_identity(
            info, &session, identity,
        )
        .await
        .map_err(|e| KernelError::connection("connecting stdin", e))?;
        let control = jupyter_zmq_client::create_client_control_connection(info, &session)
            .await
            .map_err(|e| KernelError::connection("connecting control", e))?;
        let heartbeat = jupyter_zmq_client::create_client_heartbeat_connection(info)
            .await
            .map_err(|e| KernelError::connection("connecting heartbeat", e))?;

        let (shell_tx, shell_rx) = shell.split();
        let (stdin_tx, stdin_rx) = stdin.split();
        let (control_tx, control_rx) = control.split();
        let sink = Sink::Zmq {
            shell: tokio::sync::Mutex::new(shell_tx),
            control: tokio::sync::Mutex::new(control_tx),
            stdin: tokio::sync::Mutex::new(stdin_tx),
        };
        let client = KernelClient::with_sink(session, sink);
        let weak = Arc::downgrade(&client.inner);
        client.add_tasks(vec![
            tokio::spawn(read_loop(weak.clone(), iopub, Channel::IoPub)),
            tokio::spawn(read_loop(weak.clone(), shell_rx, Channel::Shell)),
            tokio::spawn(read_loop(weak.clone(), stdin_rx, Channel::Stdin)),
            tokio::spawn(read_loop(weak.clone(), control_rx, Channel::Control)),
            tokio::spawn(heartbeat_loop(weak, heartbeat, info.clone())),
        ]);
        Ok(client)
    }

    /// A client whose requests go to `sink`; routing, orphans and states are shared by every
    /// transport. The transport's reader tasks feed [`Inner::route`] and are added with
    /// [`KernelClient::add_tasks`].
    pub(crate) fn with_sink(session: String, sink: Sink) -> KernelClient {
        let (state, _) = watch::channel("starting".to_string());
        let (dead, _) = watch::channel(None);
        KernelClient {
            inner: Arc::new(Inner {
                session,
                sink,
                routes: Mutex::new(Routes {
                    open: HashMap::new(),
                    orphans: OrphanBuffer::new(Limits::default()),
                }),
                state,
                dead,
                unrouted: AtomicU64::new(0),
                lossy: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Tasks aborted when the last clone of the client is dropped.
    pub(crate) fn add_tasks(&self, tasks: Vec<JoinHandle<()>>) {
        if let Ok(mut t) = self.inner.tasks.lock() {
            t.extend(tasks);
        }
    }

    /// A weak reference for reader tasks (they stop once the client is gone).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// Resolves once the kernel is marked dead, with the reason.
    pub async fn wait_dead(&self) -> String {
        let mut rx = self.inner.dead.subscribe();
        let reason = rx.wait_for(|d| d.is_some()).await.map(|r| r.clone());
        match reason {
            Ok(r) => r.unwrap_or_default(),
            Err(_) => "kernel connection closed".into(),
        }
    }

    /// Waits until the kernel answers `kernel_info_request` on shell AND its IOPub `status: idle`
    /// for that request arrives (proving our IOPub subscription is live; ZeroMQ's slow joiner).
    /// Re-sends the request every second until `timeout`. Returns the `kernel_info_reply` content.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Value> {
        self.wait_ready_on(timeout, false).await
    }

    /// Like [`KernelClient::wait_ready`] but asks on the control channel, which a kernel answers
    /// even while a long cell occupies its shell channel (used to reattach after a restart).
    pub async fn wait_ready_via_control(&self, timeout: Duration) -> Result<Value> {
        self.wait_ready_on(timeout, true).await
    }

    async fn wait_ready_on(&self, timeout: Duration, control: bool) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut handle = if control {
                self.send_control(KernelInfoRequest {}.into()).await?
            } else {
                self.send_shell(KernelInfoRequest {}.into()).await?
            };
            let mut reply: Option<Value> = None;
            let attempt_end = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
            loop {
                let ev = tokio::time::timeout_at(attempt_end, handle.next()).await;
                match ev {
                    Err(_) => break,
                    Ok(KernelEvent::Died(reason)) => {
                        return Err(KernelError::StartFailed {
                            name: String::new(),
                            reason,
                            stderr_tail: vec![],
                        })
                    }
                    Ok(KernelEvent::Message(m)) => {
                        if m.msg_type == "kernel_info_reply" {
                            reply = Some(m.content);
                        } else if m.execution_state() == Some("idle") {
                            if let Some(r) = reply.take() {
                                return Ok(r);
                            }
                            // idle before reply: keep waiting for the reply.
                            reply = None;
                            let reply_wait = tokio::time::timeout_at(deadline, async {
                                loop {
                                    match handle.next().await {
                                        KernelEvent::Message(m)
                                            if m.msg_type == "kernel_info_reply" =>
                                        {
                                            return Some(m.content)
                                        }
                                        KernelEvent::Died(_) => return None,
                                        _ => {}
                                    }
                                }
                            })
                            .await;
                            if let Ok(Some(r)) = reply_wait {
                                return Ok(r);
                            }
                        }
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KernelError::Timeout {
                    what: "kernel_info_request (readiness)".into(),
                    seconds: timeout.as_secs_f64(),
                });
            }
        }
    }

    /// Sends an `execute_request`; the handle yields its IOPub messages, the `execute_reply`
    /// and any `input_request`.
    /// `msg_id` may be chosen by the caller (so that it is recorded durably before the kernel
    /// sees the request); `None` generates one.
    pub async fn execute(
        &self,
        code: &str,
        opts: ExecuteOptions,
        msg_id: Option<String>,
    ) -> Result<RequestHandle> {
        let req = ExecuteRequest {
            code: code.to_string(),
            silent: opts.silent,
            store_history: opts.store_history,
            user_expressions: None,
            allow_stdin: opts.allow_stdin,
            stop_on_error: opts.stop_on_error,
        };
        self.send_shell_with_id(req.into(), msg_id).await
    }

    /// Sends a `kernel_info_request` on shell and waits for its reply. A kernel handles shell
    /// requests in order and replies on one socket, so once this returns every reply to an
    /// earlier shell request that the kernel will ever send has been routed. Used to settle a
    /// request whose IOPub `status: idle` came without an `execute_reply` (ipykernel sends
    /// none when a SIGINT lands before the cell starts). Errors when the kernel dies first.
    pub async fn shell_barrier(&self) -> Result<()> {
        let mut handle = self.send_shell(KernelInfoRequest {}.into()).await?;
        loop {
            match handle.next().await {
                KernelEvent::Message(m) if m.msg_type == "kernel_info_reply" => return Ok(()),
                KernelEvent::Message(_) => {}
                KernelEvent::Died(reason) => {
                    return Err(KernelError::Died {
                        stderr_tail: vec![reason],
                    })
                }
            }
        }
    }

    /// Answers an `input_request` (whose header is given) with `value`.
    pub async fn input_reply(&self, request_header: &Value, value: &str) -> Result<()> {
        let parent: Header = serde_json::from_value(request_header.clone()).map_err(|e| {
            KernelError::io(
                "reading the input_request header",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        let mut msg = JupyterMessage::new(
            InputReply {
                value: value.to_string(),
                ..Default::default()
            },
            None,
        );
        msg.parent_header = Some(parent);
        self.inner
            .sink
            .send(Channel::Stdin, msg, &self.inner.session)
            .await
    }

    /// Sends `interrupt_request` on control (kernelspec `interrupt_mode: message`).
    pub async fn interrupt_request(&self) -> Result<RequestHandle> {
        self.send_control(InterruptRequest {}.into()).await
    }

    /// Sends `shutdown_request` on control.
    pub async fn shutdown_request(&self, restart: bool) -> Result<RequestHandle> {
        self.send_control(ShutdownRequest { restart }.into()).await
    }

    /// The last `execution_state` seen on IOPub (`starting`, `idle`, `busy`).
    pub fn execution_state(&self) -> String {
        self.inner.state.borrow().clone()
    }

    /// Marks the kernel dead (process exited, heartbeat lost): every open request gets
    /// [`KernelEvent::Died`] after its queued messages.
    pub fn mark_dead(&self, reason: impl Into<String>) {
        self.inner.mark_dead(reason.into());
    }

    /// Why the kernel is dead, if it is.
    pub fn dead_reason(&self) -> Option<String> {
        self.inner.dead.borrow().clone()
    }

    /// Messages held for parents nobody claimed yet.
    pub fn orphans_held(&self) -> usize {
        self.inner
            .routes
            .lock()
            .map(|r| r.orphans.len())
            .unwrap_or(0)
    }

    /// Count of IOPub/shell messages that named a parent we did not know.
    pub fn unrouted_messages(&self) -> u64 {
        self.inner.unrouted.load(Ordering::Relaxed)
    }

    /// Count of messages delivered after a lossy decode (bytes that are not UTF-8 became
    /// U+FFFD, or an unreadable content object was replaced).
    pub fn lossy_messages(&self) -> u64 {
        self.inner.lossy.load(Ordering::Relaxed)
    }

    /// Count of messages dropped because their signature or header was invalid (each one is
    /// logged at `warn`).
    pub fn dropped_messages(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The client session id (`header.session` of our requests).
    pub fn session(&self) -> &str {
        &self.inner.session
    }

    async fn send_shell(&self, content: JupyterMessageContent) -> Result<RequestHandle> {
        self.send_shell_with_id(content, None).await
    }

    async fn send_shell_with_id(
        &self,
        content: JupyterMessageContent,
        msg_id: Option<String>,
    ) -> Result<RequestHandle> {
        let mut msg = JupyterMessage::new(content, None);
        if let Some(id) = msg_id {
            msg.header.msg_id = id;
        }
        let handle = self.register(&msg.header.msg_id);
        self.inner
            .sink
            .send(Channel::Shell, msg, &self.inner.session)
            .await?;
        Ok(handle)
    }

    async fn send_control(&self, content: JupyterMessageContent) -> Result<RequestHandle> {
        let msg = JupyterMessage::new(content, None);
        let handle = self.register(&msg.header.msg_id);
        self.inner
            .sink
            .send(Channel::Control, msg, &self.inner.session)
            .await?;
        Ok(handle)
    }

    /// Follows a request sent earlier (e.g. by a previous server process): registers its
    /// `msg_id` and first delivers the messages held for it in the orphan buffer.
    pub fn claim(&self, msg_id: &str) -> RequestHandle {
        self.register(msg_id)
    }

    fn register(&self, msg_id: &str) -> RequestHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut routes) = self.inner.routes.lock() {
            for held in routes.orphans.claim(msg_id, std::time::Instant::now()) {
                let _ = tx.send(KernelEvent::Message(held));
            }
            routes.open.insert(msg_id.to_string(), tx);
        }
        RequestHandle {
            msg_id: msg_id.to_string(),
            events: rx,
            client: self.clone(),
            dead: self.inner.dead.subscribe(),
        }
    }

    fn unregister(&self, msg_id: &str) {
        if let Ok(mut routes) = self.inner.routes.lock() {
            routes.open.remove(msg_id);
        }
    }
}

impl Inner {
    /// The first reason wins; later ones are ignored.
    pub(crate) fn mark_dead(&self, reason: String) {
        self.dead.send_if_modified(|d| {
            if d.is_none() {
                *d = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Counts a message that could not be decoded (logged by the caller).
    pub(crate) fn count_dropped(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a message that needed a lossy decode (logged by the caller).
    pub(crate) fn count_lossy(&self) -> u64 {
        self.lossy.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Delivers a message to the request named by its parent `msg_id`, or holds it in the
    /// orphan buffer; tracks `execution_state`. Shared by every transport.
    pub(crate) fn route(&self, msg: WireMessage) {
        if let Some(state) = msg.execution_state() {
            let state = state.to_string();
            self.state.send_if_modified(|s| {
                if *s != state {
                    *s = state;
                    true
                } else {
                    false
                }
            });
        }
        let Some(parent) = msg.parent_msg_id.clone() else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        match routes.open.get(&parent) {
            Some(tx) => {
                // The receiver may have been dropped a moment ago; that is not an error.
                let _ = tx.send(KernelEvent::Message(msg));
            }
            None => {
                self.unrouted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(msg_type = %msg.msg_type, %parent, "holding a message for an unknown parent");
                routes.orphans.push(&parent, msg, std::time::Instant::now());
            }
        }
    }
}

async fn read_loop<S: zeromq::SocketRecv>(
    inner: std::sync::Weak<Inner>,
    mut conn: Connection<S>,
    channel: Channel,
) {
    loop {
        let frames = match conn.socket.recv().await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(?channel, "socket closed: {e}");
                if let Some(inner) = inner.upgrade() {
                    inner.mark_dead(format!("{channel:?} socket closed: {e}"));
                }
                return;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        // A bad signature or a malformed message must not end the loop: log, count, continue.
        let raw = match RawMessage::from_multipart(frames, &conn.mac) {
            Ok(raw) => raw,
            Err(e) => {
                let n = inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    ?channel,
                    dropped = n,
                    "dropping an invalid kernel message: {e}"
                );
                continue;
            }
        };
        match WireMessage::decode(channel, &raw) {
            Ok((msg, lossy)) => {
                if lossy {
                    let n = inner.lossy.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        ?channel,
                        msg_type = %msg.msg_type,
                        lossy = n,
                        "a kernel message was not valid UTF-8 JSON; decoded lossily (U+FFFD)"
                    );
                }
                inner.route(msg)
            }
            Err(e) => {
                let n = inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    ?channel,
                    dropped = n,
                    "dropping an unroutable kernel message: {e}"
                );
            }
        }
    }
}

/// Pings every 3 s. A REQ socket that missed a reply cannot send again, so each miss gets a
/// fresh heartbeat connection; after 5 consecutive misses (about 30 s) the kernel is marked dead.
async fn heartbeat_loop(
    inner: std::sync::Weak<Inner>,
    mut hb: jupyter_zmq_client::ClientHeartbeatConnection,
    info: ConnectionInfo,
) {
    let mut misses = 0u32;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(3), hb.single_heartbeat()).await,
            Ok(Ok(()))
        );
        let Some(inner) = inner.upgrade() else { return };
        if ok {
            misses = 0;
            continue;
        }
        misses += 1;
        tracing::debug!(misses, "kernel heartbeat missed");
        if misses >= 5 {
            inner.mark_dead("the kernel stopped answering its heartbeat".into());
            return;
        }
        drop(inner);
        if let Ok(fresh) = jupyter_zmq_client::create_client_heartbeat_connection(&info).await {
            hb = fresh;
        }
    }
}
