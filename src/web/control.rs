//! The human's controls (`POST /api/view/{interrupt,cancel,restart}`, JSON bodies
//! `{"notebook": P}` or `{"execution_id": ID}`): the same engine calls as the MCP tools
//! `interrupt_kernel`, `cancel_execution` and `restart_kernel`, made "from the web view" so
//! the execution they stop records that in its note (the agent's next `get_execution`
//! says who stopped it); each is logged.
//!
//! CSRF: a request authenticated by the web view's session cookie (not by a bearer token)
//! must carry `X-CSRF-Token` (the value the page got in its `<meta>`, compared in constant
//! time) and an `Origin` header naming this server (the guard refuses foreign origins; here a
//! missing one is refused too), and a JSON content type (which a cross-site form cannot send
//! without a CORS preflight this server never answers).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::api::{execution_json, failed};
use crate::http::auth::{error, WebCookie};
use crate::http::AppState;

/// Who the engine records as the actor of these controls.
pub const ACTOR: &str = "the web view";

/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Body of a kernel control.
#[derive(Debug, Deserialize)]
pub struct NotebookBody {
    notebook: String,
}

/// Body of a cancel.
#[derive(Debug, Deserialize)]
pub struct ExecutionBody {
    execution_id: String,
}

/// The CSRF rule above; `Some` is the 403 to answer.
fn check_csrf(app: &AppState, cookie: Option<&WebCookie>, headers: &HeaderMap) -> Option<Response> {
    cookie?; // a bearer token is not an ambient credential: no CSRF rule
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| app.auth.origin_ok(o));
    let token_ok = headers
        .get(CSRF_HEADER)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| app.auth.csrf_matches(t));
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if origin_ok && token_ok && json_body {
        None
    } else {
        Some(error(
            StatusCode::FORBIDDEN,
            "control actions from a browser need this server's Origin, the page's X-CSRF-Token \
             header and a JSON body: use the buttons of the web view (reload it if the server \
             restarted with another token)",
        ))
    }
}

fn kernel_answer(r: crate::engine::EngineResult<crate::engine::KernelView>) -> Response {
    match r {
        Ok(k) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"notebook": k.notebook, "state": k.state, "pid": k.pid,
                   "queue_depth": k.queue_depth})
            .to_string(),
        )
            .into_response(),
        Err(e) => failed(e),
    }
}

/// The CSRF check of a kernel control, then its notebook resolved under the root; either
/// failure as the response to send.
async fn checked_notebook(
    app: &AppState,
    cookie: Option<&WebCookie>,
    headers: &HeaderMap,
    notebook: &str,
) -> Result<crate::paths::RootedPath, Response> {
    if let Some(r) = check_csrf(app, cookie, headers) {
        return Err(r);
    }
    app.engine.resolve_notebook(notebook).await.map_err(failed)
}

/// `POST /api/view/interrupt {"notebook": P}`: as `interrupt_kernel`.
pub async fn interrupt(
    State(app): State<AppState>,
    cookie: Option<Extension<WebCookie>>,
    headers: HeaderMap,
    Json(b): Json<NotebookBody>,
) -> Response {
    let path = match checked_notebook(&app, cookie.as_deref(), &headers, &b.notebook).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    tracing::info!(notebook = %path.rel, "web view: interrupt the kernel");
    kernel_answer(app.engine.interrupt_by(&path, Some(ACTOR)).await)
}

/// `POST /api/view/restart {"notebook": P}`: as `restart_kernel`.
pub async fn restart(
    State(app): State<AppState>,
    cookie: Option<Extension<WebCookie>>,
    headers: HeaderMap,
    Json(b): Json<NotebookBody>,
) -> Response {
    let path = match checked_notebook(&app, cookie.as_deref(), &headers, &b.notebook).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    tracing::info!(notebook = %path.rel, "web view: restart the kernel");
    kernel_answer(app.engine.restart_by(&path, Some(ACTOR)).await)
}

/// `POST /api/view/cancel {"execution_id": ID}`: as `cancel_execution`.
pub async fn cancel(
    State(app): State<AppState>,
    cookie: Option<Extension<WebCookie>>,
    headers: HeaderMap,
    Json(b): Json<ExecutionBody>,
) -> Response {
    if let Some(r) = check_csrf(&app, cookie.as_deref(), &headers) {
        return r;
    }
    tracing::info!(execution = %b.execution_id, "web view: cancel the execution");
    match app.engine.cancel_by(&b.execution_id, Some(ACTOR)).await {
        Ok(view) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            execution_json(&view).to_string(),
        )
            .into_response(),
        Err(e) => failed(e),
    }
}
