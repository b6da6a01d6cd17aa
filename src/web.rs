//! The live web view (issue 13), served by the daemon at `/`: a small page (plain JS, no
//! build step, every file embedded in the binary) that shows the notebooks under the root
//! with their kernels and queues, each notebook's cells as JupyterLab shows them (updated
//! live from `/events`), the timeline of executions with who asked, the checkpoints, and
//! lets the human interrupt, cancel and restart.
//!
//! Routes:
//! - [`page_router`] (no bearer token needed, Host/Origin guard still applies): `GET /`
//!   serves the page to a holder of the session cookie; `GET /?token=T` with the right
//!   token sets that cookie (`HttpOnly; SameSite=Strict; Path=/`) and redirects (303) to `/`
//!   without the token in the URL; no or a wrong token or cookie gets a 401 page. `GET
//!   /ui/{file}` serves the static files (they hold no secret).
//! - [`api_router`] (behind the daemon's token check, which also takes the cookie there):
//!   `GET /api/view/{overview,notebook,executions,execution,output,checkpoints}` (JSON,
//!   [`api`]) and `POST /api/view/{interrupt,cancel,restart}` ([`control`]: CSRF header +
//!   `Origin` when authenticated by the cookie).
//!
//! Security rules (ARCHITECTURE.md invariant "untrusted outputs never run in the page's
//! origin"): the page carries a strict Content-Security-Policy (scripts only from `/ui/`, no
//! inline script, no framing of the page); HTML and SVG outputs render only inside
//! `<iframe sandbox="allow-scripts" srcdoc=…>` without `allow-same-origin` (an opaque
//! origin: no cookie, no DOM or storage of the page), whose inherited CSP still blocks any
//! inline script a cell printed; the only script such a frame runs is `frame.js` (inlined,
//! allowed by its hash), which reports the frame's height to the page.

mod api;
mod bound;
mod control;
mod queries;

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::http::auth::query_token;
use crate::http::AppState;

/// The page's Content-Security-Policy; frames of untrusted HTML (srcdoc) inherit it.
/// Scripts: this server's own files, plus the one inline script whose SHA-256 is given
/// (`frame.js`, which the page inlines into each output frame: an opaque-origin frame cannot
/// load `'self'` scripts). `style-src 'unsafe-inline'` lets pandas' `<style>` blocks style
/// their tables inside those frames (styles cannot run code).
pub fn csp(frame_script: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(frame_script));
    format!(
        "default-src 'none'; script-src 'self' 'sha256-{hash}'; style-src 'self' \
         'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' \
         data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The script each output frame runs (inlined by the page, allowed by its hash).
const FRAME_JS: &str = include_str!("web/assets/frame.js");

const INDEX_HTML: &str = include_str!("web/assets/index.html");

/// Embedded static files: name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/app.js"),
    ),
    (
        "render.js",
        "text/javascript; charset=utf-8",
        include_str!("web/assets/render.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("web/assets/app.css"),
    ),
];

/// Routes the page and its static files (no token check: `/` checks itself).
pub fn page_router(state: &AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/ui/{file}", get(static_file))
        .with_state(state.clone())
}

/// The view's JSON endpoints (mounted behind the token check).
pub fn api_router(state: &AppState) -> Router {
    Router::new()
        .route("/api/view/overview", get(api::overview))
        .route("/api/view/notebook", get(api::notebook))
        .route("/api/view/executions", get(api::executions))
        .route("/api/view/execution", get(api::execution))
        .route("/api/view/output", get(api::output))
        .route("/api/view/checkpoints", get(api::checkpoints))
        .route("/api/view/interrupt", post(control::interrupt))
        .route("/api/view/cancel", post(control::cancel))
        .route("/api/view/restart", post(control::restart))
        .with_state(state.clone())
}

/// Routes on which the daemon accepts the web view's session cookie instead of a bearer
/// token: `/events` and `/api/view/*`.
pub fn cookie_route(path: &str) -> bool {
    path == "/events" || path.starts_with("/api/view/")
}

/// The start-up link `http://HOST:PORT/?token=…` (HOST: the bound address, 127.0.0.1 for an
/// unspecified one). It holds the token: print it once, nowhere else.
pub fn start_link(bound: SocketAddr, token: &str) -> String {
    let host = match bound.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_string(),
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}/?token={}", bound.port(), encode(token))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Headers every web view response carries.
fn hardened(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// `GET /`: the page (cookie), or the token-for-cookie exchange (`?token=`), or a 401 page.
async fn page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(token) = uri.query().and_then(query_token) {
        if !app.auth.token_matches(&token) {
            return denied(
                "The token in this link is wrong. Open the link the server printed at its start \
                 (a line \"web view: http://…/?token=…\" in its log), or use the token in the \
                 server's token file.",
            );
        }
        // Keep other query parameters (e.g. `notebook=`), drop the token.
        let rest: Vec<&str> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("token="))
            .collect();
        let location = if rest.is_empty() {
            "/".to_string()
        } else {
            format!("/?{}", rest.join("&"))
        };
        let mut r = StatusCode::SEE_OTHER.into_response();
        let h = r.headers_mut();
        if let (Ok(loc), Ok(cookie)) = (
            HeaderValue::from_str(&location),
            HeaderValue::from_str(&app.auth.session_set_cookie()),
        ) {
            h.insert(header::LOCATION, loc);
            h.insert(header::SET_COOKIE, cookie);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return hardened(r);
    }
    match app.auth.session_cookie_ok(&headers) {
        Some(true) => {
            let frame = dev_file("frame.js").unwrap_or_else(|| FRAME_JS.to_string());
            let html = dev_file("index.html")
                .unwrap_or_else(|| INDEX_HTML.to_string())
                .replace("{{CSRF}}", app.auth.csrf_token())
                .replace("{{FRAME_JS}}", &frame);
            let mut r = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response();
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&csp(&frame)) {
                h.insert(header::CONTENT_SECURITY_POLICY, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            hardened(r)
        }
        Some(false) => denied(
            "This browser's session is from another token (the server's token changed). Open \
             the link the server printed at its start (\"web view: http://…/?token=…\").",
        ),
        None => denied(
            "Open the link the server printed at its start (a line \"web view: \
             http://…/?token=…\" in its log); it signs this browser in.",
        ),
    }
}

/// A 401 page (with `WWW-Authenticate: Bearer`, SPEC §7) saying what to do.
fn denied(what: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>jupyter-mcp: sign in</title>\
         <h1>jupyter-mcp web view</h1><p>{}</p>",
        what.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"jupyter-mcp\""),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    hardened(r)
}

/// For developing the page without rebuilding: when both `JUPYTER_MCP_TEST_HOOKS` (the test
/// switch, see `engine/testhooks.rs`) and `JUPYTER_MCP_WEB_ASSETS_DIR` are set, the page's
/// files (the fixed names of [`FILES`], `index.html` and `frame.js`, nothing else) are read from that
/// folder at each request instead of the embedded copies.
fn dev_file(name: &str) -> Option<String> {
    std::env::var_os("JUPYTER_MCP_TEST_HOOKS")?;
    let dir = std::env::var_os("JUPYTER_MCP_WEB_ASSETS_DIR")?;
    std::fs::read_to_string(std::path::Path::new(&dir).join(name)).ok()
}

/// `GET /ui/{file}`: an embedded static file.
async fn static_file(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((name, ctype, body)) => {
            let body = dev_file(name).unwrap_or_else(|| body.to_string());
            let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, *ctype)], body).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            hardened(r)
        }
        None => (StatusCode::NOT_FOUND, "no such file in the web view").into_response(),
    }
}

#[cfg(test)]
#[path = "web/tests.rs"]
mod tests;
