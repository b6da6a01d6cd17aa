//! `jupyter-mcp connect [URL] [--spawn]` (SPEC §7): a stdio MCP server that forwards every
//! message to the shared daemon's `/mcp` (MCP Streamable HTTP), so that stdio-only clients
//! (Claude Desktop, editors) share one daemon.
//!
//! Each stdin line is judged like the stdio server judges it (malformed lines are answered
//! here), then POSTed with the bearer token and the session id; each answer (a JSON body or
//! the `data` of each SSE event) is written to stdout as one line. `initialize` is forwarded
//! before anything else is read, so the session id is known for what follows. If the daemon
//! forgets the session (404: it restarted, or the session expired) the bridge replays the
//! client's `initialize` and retries once. When stdin ends, answers on their way get two
//! seconds, then the session is DELETEd.
//!
//! With `--spawn`, a daemon that dies while the bridge runs (killed, crashed) is started
//! again on the next message that finds nobody listening (connection refused), by the same
//! rules as at start (one daemon per data dir, however many bridges race), and the message
//! is sent to it on a renewed session: the client sees nothing. A call that was in flight
//! when the daemon died is answered with a JSON-RPC error (-32000) saying so; it is not sent
//! again (an execution the daemon had accepted is in its durable queue).
//!
//! URL: the argument, else `DATA_DIR/daemon.json` (if its PID is alive), else
//! `http://127.0.0.1:3000/mcp`. Token: `--token` / `JUPYTER_MCP_TOKEN`, else `DATA_DIR/token`.

mod spawn;

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use crate::cli::ConnectArgs;
use crate::http::daemon_file;
use crate::mcp::frames::{self, LineReader, Verdict};

/// How long answers still on their way are waited for after stdin ends.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// The URL used when none is given and no daemon file names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000/mcp";

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Runs the bridge until stdin ends; returns the exit code.
pub async fn run(args: ConnectArgs) -> anyhow::Result<i32> {
    let data_dir = args.shared.data_dir()?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut url = match &args.url {
        Some(u) => u.clone(),
        None => match daemon_file::read_live(&data_dir) {
            Some(info) => info.url,
            None => DEFAULT_URL.to_string(),
        },
    };
    let spawn_url = url.clone();
    let token_given = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if !spawn::live(&client, &url).await {
        if !args.spawn {
            anyhow::bail!(
                "no jupyter-mcp daemon answers at {url}: start one with `jupyter-mcp serve \
                 --transport http`, or run connect with --spawn to start it on demand"
            );
        }
        url = spawn::start_and_wait(
            &client,
            &url,
            &args.shared,
            &args.serve_args,
            token_given.as_deref(),
            &data_dir,
        )
        .await?;
    }
    let token = match args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) => t.to_string(),
        None => crate::http::auth::read_token(&data_dir.join("token"))?.ok_or_else(|| {
            anyhow::anyhow!(
                "no token: pass --token or JUPYTER_MCP_TOKEN, or use the data dir of the daemon \
                 (its token is in DATA_DIR/token)"
            )
        })?,
    };
    let (out, mut lines) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                break;
            }
        }
    });
    let respawn = args.spawn.then(|| Respawn {
        url: spawn_url,
        shared: args.shared.clone(),
        serve_args: args.serve_args.clone(),
        token: token_given,
        data_dir: data_dir.clone(),
        lock: tokio::sync::Mutex::new(()),
    });
    let bridge = Arc::new(Bridge {
        client,
        url: Mutex::new(url),
        respawn,
        token,
        session: Mutex::new(None),
        version: Mutex::new(None),
        initialize: Mutex::new(None),
        out,
    });
    let mut input = LineReader::new(tokio::io::stdin(), frames::MAX_FRAME_BYTES);
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let frame = match input.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("stdin: read failed ({e}); ending");
                break;
            }
        };
        match frames::judge(frame) {
            Verdict::Skip => {}
            Verdict::Drop(why) => tracing::warn!("ignored a malformed notification: {why}"),
            Verdict::Reply(errors) => {
                for e in errors {
                    let _ = bridge.out.send(e.to_string());
                }
            }
            Verdict::Forward(line, msg) => {
                if msg.get("method").and_then(Value::as_str) == Some("initialize") {
                    if let Ok(mut i) = bridge.initialize.lock() {
                        *i = Some(line.clone());
                    }
                    bridge.forward(line, msg).await;
                } else {
                    let b = bridge.clone();
                    in_flight.spawn(async move { b.forward(line, msg).await });
                    while in_flight.try_join_next().is_some() {}
                }
            }
        }
    }
    // The client closed stdin: answers still on their way get a moment (a piped client may
    // still read them), then the session ends; a call still running goes on in the daemon.
    let _ = tokio::time::timeout(LINGER, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    in_flight.abort_all();
    bridge.end_session().await;
    drop(bridge);
    let _ = tokio::time::timeout(LINGER, writer).await;
    Ok(0)
}

/// One client's connection to the daemon.
struct Bridge {
    client: HttpClient,
    /// The daemon's MCP URL (changes when a respawned daemon picked another port).
    url: Mutex<String>,
    /// Set with `--spawn`: how to start the daemon again when it dies.
    respawn: Option<Respawn>,
    token: String,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    /// The client's `initialize`, replayed when the daemon forgot the session.
    initialize: Mutex<Option<String>>,
    out: mpsc::UnboundedSender<String>,
}

/// What `--spawn` needs to start the daemon again.
struct Respawn {
    /// The URL to bind (as given, or the default: port 0 stays port 0).
    url: String,
    shared: crate::cli::Shared,
    serve_args: Vec<String>,
    /// The token given to the bridge (flag or environment), for the daemon.
    token: Option<String>,
    data_dir: std::path::PathBuf,
    /// One respawn at a time per bridge (calls in flight all find the daemon gone).
    lock: tokio::sync::Mutex<()>,
}

/// Whether `e` is a failure to connect (nothing listening): the request never left.
fn refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|h| h.is_connect())
    })
}

/// What became of one POST.
enum Posted {
    /// Answered (lines already written).
    Done,
    /// The daemon does not know the session.
    UnknownSession,
}

impl Bridge {
    fn request(
        &self,
        method: Method,
        body: Option<String>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::builder()
            .method(method)
            .uri(self.url())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        if let Some(s) = self.session.lock().ok().and_then(|s| s.clone()) {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = self.version.lock().ok().and_then(|v| v.clone()) {
            req = req.header("mcp-protocol-version", v);
        }
        Ok(req.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
    }

    /// The daemon's MCP URL now.
    fn url(&self) -> String {
        self.url.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// POSTs one message; with `--spawn`, when nothing listens any more, starts the daemon
    /// again and sends it there (the session is renewed by the caller on the 404).
    async fn post_or_respawn(&self, line: String, msg: &Value) -> anyhow::Result<Posted> {
        match self.post(line.clone(), msg, true).await {
            Err(e) if self.respawn.is_some() && refused(&e) => {
                self.respawn_daemon().await?;
                self.post(line, msg, true).await
            }
            other => other,
        }
    }

    /// Makes sure a daemon answers: another bridge (or call) may have started one already;
    /// else starts one as `connect --spawn` does at start.
    async fn respawn_daemon(&self) -> anyhow::Result<()> {
        let Some(r) = &self.respawn else {
            return Ok(());
        };
        let _one = r.lock.lock().await;
        let current = self.url();
        if spawn::live(&self.client, &current).await {
            return Ok(());
        }
        let url = match daemon_file::read_live(&r.data_dir) {
            Some(info) if spawn::live(&self.client, &info.url).await => info.url,
            _ => {
                tracing::warn!(
                    "the jupyter-mcp daemon at {current} stopped answering; starting a new one"
                );
                spawn::start_and_wait(
                    &self.client,
                    &r.url,
                    &r.shared,
                    &r.serve_args,
                    r.token.as_deref(),
                    &r.data_dir,
                )
                .await?
            }
        };
        if let Ok(mut u) = self.url.lock() {
            *u = url;
        }
        Ok(())
    }

    /// Forwards one message; answers a request with a JSON-RPC error when the daemon cannot.
    async fn forward(&self, line: String, msg: Value) {
        let id = msg.get("id").cloned();
        let is_request = id.is_some() && msg.get("method").is_some();
        let had_session = self.session.lock().map(|s| s.is_some()).unwrap_or(false);
        let first = self.post_or_respawn(line.clone(), &msg).await;
        let result = match first {
            Ok(Posted::UnknownSession) if had_session => match self.reinitialize().await {
                Ok(()) => self.post(line, &msg, true).await,
                Err(e) => Err(e),
            },
            other => other,
        };
        let failure = match result {
            Ok(Posted::Done) => None,
            Ok(Posted::UnknownSession) => Some(
                "the daemon does not know this MCP session and it could not be renewed".to_string(),
            ),
            Err(e) if self.respawn.is_some() && !refused(&e) => Some(format!(
                "the jupyter-mcp daemon at {} stopped answering during this call ({e:#}); a new \
                 daemon is started for the next call. An execution it had accepted is kept: \
                 find it with list_executions or get_execution",
                self.url()
            )),
            Err(e) => Some(format!(
                "the jupyter-mcp daemon at {} did not answer: {e:#}",
                self.url()
            )),
        };
        if let (Some(why), true, Some(id)) = (failure, is_request, id) {
            tracing::warn!("{why}");
            let _ = self
                .out
                .send(frames::error_response(id, -32000, why).to_string());
        }
    }

    /// POSTs one message and writes its answers; `write` false swallows them (replays).
    async fn post(&self, line: String, msg: &Value, write: bool) -> anyhow::Result<Posted> {
        let initialize = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let response = self
            .client
            .request(self.request(Method::POST, Some(line))?)
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND
            && !initialize
            && self.session.lock().map(|s| s.is_some()).unwrap_or(false)
        {
            return Ok(Posted::UnknownSession);
        }
        if initialize && status.is_success() {
            if let Some(sid) = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                if let Ok(mut s) = self.session.lock() {
                    *s = Some(sid.to_string());
                }
            }
        }
        let sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut body = response.into_body();
        if sse {
            let mut buf = String::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(event) = next_event(&mut buf) {
                    if write && !event.is_empty() {
                        let _ = self.out.send(event);
                    }
                }
            }
            return Ok(Posted::Done);
        }
        let bytes = body.collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        if initialize {
            if let Some(v) = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.pointer("/result/protocolVersion").cloned())
                .and_then(|v| v.as_str().map(str::to_string))
            {
                if let Ok(mut slot) = self.version.lock() {
                    *slot = Some(v);
                }
            }
        }
        let is_rpc = serde_json::from_str::<Value>(&text).is_ok_and(|v| v.get("jsonrpc").is_some());
        if is_rpc {
            if write {
                let _ = self.out.send(text);
            }
        } else if !status.is_success() {
            anyhow::bail!(
                "HTTP {status}: {}",
                text.chars().take(500).collect::<String>()
            );
        }
        Ok(Posted::Done)
    }

    /// Starts a new session with the client's own `initialize` (answers swallowed).
    async fn reinitialize(&self) -> anyhow::Result<()> {
        let init = self
            .initialize
            .lock()
            .ok()
            .and_then(|i| i.clone())
            .ok_or_else(|| anyhow::anyhow!("no initialize to replay"))?;
        if let Ok(mut s) = self.session.lock() {
            *s = None;
        }
        let msg: Value = serde_json::from_str(&init)?;
        self.post(init, &msg, false).await?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(note.to_string(), &note, false).await?;
        tracing::info!("renewed the MCP session with the daemon");
        Ok(())
    }

    async fn end_session(&self) {
        if self.session.lock().map(|s| s.is_none()).unwrap_or(true) {
            return;
        }
        if let Ok(req) = self.request(Method::DELETE, None) {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.client.request(req))
                    .await;
        }
    }
}

/// Takes one complete SSE event off the front of `buf`: the `data` lines joined by `\n`
/// (the WHATWG "server-sent events" rules, `\n` or `\r\n` line ends).
fn next_event(buf: &mut String) -> Option<String> {
    let normalized = buf.replace("\r\n", "\n");
    let end = normalized.find("\n\n")?;
    let event = normalized[..end].to_string();
    *buf = normalized[end + 2..].to_string();
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    Some(data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_joined() {
        let mut buf = "event: message\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: x\r\ndata: y\r\n\r\ndata: partial".to_string();
        assert_eq!(next_event(&mut buf).as_deref(), Some("{\"a\":1}"));
        assert_eq!(next_event(&mut buf).as_deref(), Some(""));
        assert_eq!(next_event(&mut buf).as_deref(), Some("x\ny"));
        assert_eq!(next_event(&mut buf), None);
        assert_eq!(buf, "data: partial");
    }
}
