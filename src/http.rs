//! Daemon mode (SPEC §7): `jupyter-mcp serve --transport http`. One long-running server on a
//! TCP address for every MCP client, probe and monitor on the machine.
//!
//! Routes ([`router`]): `/mcp` (MCP Streamable HTTP, [`mcp`]), `/metrics`,
//! `/health/live`, `/health/ready` ([`health`]), and the web view (`/`, `/ui/*`,
//! `/api/view/*`, `crate::web`). Every route is behind the Host/Origin guard
//! and every one but `/health/*` behind the bearer token ([`auth`]); routes added through
//! [`router`]'s `extra` argument (e.g. `/events`) are too.
//!
//! Sessions: one MCP pipeline (`crate::mcp::Pipeline`, the same front layer as stdio) per
//! `Mcp-Session-Id`, plus one shared pipeline for stateless 2026-07-28 requests
//! ([`sessions`]).
//!
//! Life: take `server.lock` → bind → write `daemon.json` → serve while recovering (MCP
//! requests wait for recovery) → on SIGTERM/SIGINT refuse new requests (503), let running
//! executions finish up to `--shutdown-grace` (queued ones stay `pending` for the next start),
//! answer what is in flight, end the sessions,
//! flush, remove `daemon.json`, exit 0 (kernels keep running unless
//! `--stop-kernels-on-exit`).

pub mod auth;
pub mod daemon_file;
mod health;
mod mcp;
mod sessions;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::{Engine, RecoverMode};
use crate::mcp::JupyterMcp;

pub use auth::{Auth, TokenSource};
pub use mcp::MAX_BODY_BYTES;
pub use sessions::{IDLE_TTL, MAX_IN_FLIGHT, MAX_SESSIONS};

/// The default `--bind` address.
pub const DEFAULT_BIND: &str = "127.0.0.1:3000";

/// A readiness hook: `Some(reason)` while the server must not be reported ready (e.g. the
/// storage breaker of SPEC §8 is open).
pub type ReadyCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Start-up state seen by `/health/ready` and by MCP requests (which wait for it).
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// Start-up recovery is running.
    Recovering,
    /// Serving.
    Ready,
    /// Recovery failed (the reason).
    Failed(String),
}

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// The shared state behind [`AppState`].
pub struct AppInner {
    /// The engine every session drives.
    pub engine: Engine,
    /// Token and Origin/Host rules.
    pub auth: Auth,
    /// Cancelled when the server stops serving (streams end on it).
    pub shutdown: CancellationToken,
    /// Extra readiness hooks (see [`ReadyCheck`]).
    pub ready_checks: Vec<ReadyCheck>,
    sessions: sessions::Sessions,
    ready: watch::Sender<Readiness>,
    draining: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// State for a server over `engine` with these auth rules; not ready until
    /// [`AppState::set_ready`].
    pub fn new(engine: Engine, auth: Auth, ready_checks: Vec<ReadyCheck>) -> AppState {
        let svc = JupyterMcp::new(engine.clone());
        AppState(Arc::new(AppInner {
            engine,
            auth,
            shutdown: CancellationToken::new(),
            ready_checks,
            sessions: sessions::Sessions::new(svc),
            ready: watch::Sender::new(Readiness::Recovering),
            draining: AtomicBool::new(false),
        }))
    }

    /// Publishes the start-up state.
    pub fn set_ready(&self, state: Readiness) {
        self.ready.send_replace(state);
    }

    /// The start-up state.
    pub fn recovery_state(&self) -> Readiness {
        self.ready.borrow().clone()
    }

    /// Whether the server is shutting down (new requests get 503).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts refusing new requests.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Open MCP sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Waits until start-up recovery is over; a 503 response if it failed or takes longer
    /// than `max`.
    async fn wait_ready(&self, max: Duration) -> Result<(), Response> {
        let mut rx = self.ready.subscribe();
        let state = tokio::time::timeout(max, rx.wait_for(|r| *r != Readiness::Recovering))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|r| r.clone());
        match state {
            Some(Readiness::Ready) => Ok(()),
            Some(Readiness::Failed(why)) => Err(auth::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the server could not recover its state: {why}"),
            )),
            _ => Err(auth::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is still recovering its state from the last run; retry shortly",
            )),
        }
    }
}

/// The daemon's HTTP routes over `state`. `extra` routes (with their state already applied,
/// e.g. `/events`) are mounted behind the same token check; `/health/*` alone needs no token.
pub fn router(state: &AppState, extra: Router) -> Router {
    use axum::middleware::from_fn_with_state;
    let protected = Router::new()
        .route("/mcp", get(mcp::get).post(mcp::post).delete(mcp::delete))
        .route("/metrics", get(health::metrics))
        .with_state(state.clone())
        .merge(crate::web::api_router(state))
        .merge(extra)
        .layer(from_fn_with_state(state.clone(), auth::require_token));
    // The web view's page checks the token or its cookie itself (it trades `?token=` for
    // the cookie); its static files hold no secret.
    let open = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .with_state(state.clone())
        .merge(crate::web::page_router(state));
    protected
        .merge(open)
        .layer(from_fn_with_state(state.clone(), auth::guard))
}

/// How the daemon serves (the `serve --transport http` flags).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `--bind`: address and port (port 0 picks a free one; the URL is in `daemon.json`).
    pub bind: SocketAddr,
    /// `--token` / `JUPYTER_MCP_TOKEN`.
    pub token: Option<String>,
    /// `--allowed-origin` values.
    pub allowed_origins: Vec<String>,
    /// `--shutdown-grace`: how long running executions may go on after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// `--recover`.
    pub recover: RecoverMode,
}

/// Runs the daemon until SIGTERM/SIGINT; returns the exit code (0 after a clean shutdown).
pub async fn run(config: Config, options: HttpOptions) -> anyhow::Result<i32> {
    let data_dir = config.data_dir.clone();
    let stop_kernels = config.stop_kernels_on_exit;
    let _lock = crate::lock::ServerLock::acquire(&data_dir)?;
    let engine = Engine::new(config)?;
    engine.start_storage_probe();
    let (token, source) = auth::load_token(&data_dir, options.token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e}; pick another address with --bind ADDR:PORT",
                options.bind
            )
        })?;
    let bound = listener.local_addr()?;
    let url = format!("http://{bound}/mcp");
    let token_note = match &source {
        TokenSource::Given => "the token given with --token / JUPYTER_MCP_TOKEN".to_string(),
        TokenSource::File(p) => format!("the token in {}", p.display()),
    };
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "listening on {bound}, which is not a loopback address: anyone who can reach it and \
             holds {token_note} can run code here. Keep that token secret."
        );
    }
    let auth = Auth::new(&token, source, bound, &options.allowed_origins);
    // The one place the token is printed (as Jupyter does): the web view's link.
    let view_link = crate::web::start_link(bound, &token);
    drop(token);
    let state = AppState::new(engine.clone(), auth, Vec::new());
    daemon_file::write(&data_dir, &url)?;
    eprintln!("jupyter-mcp: serving MCP at {url} (clients authenticate with {token_note})");
    eprintln!("jupyter-mcp: web view: {view_link}");
    drop(view_link);

    let app = router(&state, crate::events::router(engine.clone()));
    let stop = state.shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    let reaper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let n = state
                    .sessions
                    .expire(tokio::time::Instant::now(), IDLE_TTL)
                    .await;
                if n > 0 {
                    tracing::info!("ended {n} MCP session(s) idle for an hour");
                }
            }
        })
    };

    let signal = crate::run::signals::termination();
    tokio::pin!(signal);
    let recovered = tokio::select! {
        r = engine.recover(options.recover) => Some(r),
        _ = &mut signal => None,
    };
    let mut auto_checkpoints = None;
    let mut retention = None;
    match recovered {
        Some(Ok(report)) => {
            tracing::info!(?report, "recovered state from the previous run");
            state.set_ready(Readiness::Ready);
            engine.start_kernel_pool(engine.config().kernel_pool);
            engine.spawn_limit_tasks();
            auto_checkpoints = crate::checkpoint::auto::spawn(&engine);
            let volume = engine.config().volume;
            retention = Some(crate::store::retention::spawn(
                engine.store().clone(),
                crate::store::retention::Retention {
                    max_age_days: volume.keep_executions_days,
                    max_count: volume.keep_executions,
                },
            ));
            signal.await;
        }
        Some(Err(e)) => {
            state.set_ready(Readiness::Failed(e.to_string()));
            state.shutdown.cancel();
            daemon_file::remove(&data_dir);
            return Err(anyhow::anyhow!("start-up recovery failed: {e}"));
        }
        None => {}
    }

    // Graceful shutdown (SPEC §7).
    state.start_draining();
    engine.hold_queued_executions();
    drain_executions(&engine, options.shutdown_grace).await;
    state.shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!("the HTTP server ended with an error: {e}"),
        Err(_) => tracing::warn!("in-flight HTTP requests did not finish within 5 s; dropped"),
        _ => {}
    }
    reaper.abort();
    state.sessions.end_all().await;
    crate::checkpoint::auto::on_shutdown(&engine, Duration::from_secs(30)).await;
    engine.shutdown(stop_kernels).await;
    // The runtime's shutdown ends these background loops.
    drop((auto_checkpoints, retention));
    daemon_file::remove(&data_dir);
    Ok(0)
}

/// Waits until the executions running now have finished, at most `grace`.
async fn drain_executions(engine: &Engine, grace: Duration) {
    use crate::store::{self, Status};
    let running = engine
        .store()
        .call(|c| store::executions::list(c, None, Some(Status::Running), 100_000))
        .await
        .unwrap_or_default();
    if running.is_empty() {
        return;
    }
    eprintln!(
        "jupyter-mcp: shutting down; waiting up to {} s for {} running execution(s)",
        grace.as_secs_f64(),
        running.len()
    );
    let waits = running.iter().map(|r| engine.wait(&r.id, grace));
    let _ = tokio::time::timeout(grace, futures::future::join_all(waits)).await;
}

#[cfg(test)]
#[path = "http/tests.rs"]
mod tests;
