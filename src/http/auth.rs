//! Who may talk to the daemon (SPEC §7 "Auth", "Origin"):
//!
//! * a bearer token (RFC 6750 §2.1 `Authorization: Bearer TOKEN`, or `?token=TOKEN` on GET
//!   requests, for browsers' WebSockets which cannot set headers) on every route except
//!   `/health/*`; missing or wrong → 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3). The
//!   token is compared in constant time (SHA-256 of both sides, then `subtle`), and never
//!   logged: only the path of the token file is.
//! * a request with an `Origin` header that is neither the server's own
//!   (`http://127.0.0.1:PORT`, `http://localhost:PORT`) nor an `--allowed-origin` → 403;
//! * on a loopback bind, a `Host` header that does not name a loopback address → 403 (DNS
//!   rebinding); a non-loopback `--bind` accepts any `Host`.
//! * while the daemon shuts down, new requests get 503 (health probes excepted).
//! * the web view (issue 13): `/?token=T` trades the token for a session cookie
//!   (`HttpOnly; SameSite=Strict; Path=/`, named after the port so two daemons on one host
//!   keep theirs apart) whose value is derived from the token (SHA-256 with a fixed label:
//!   the token itself never sits in the cookie). The cookie is accepted on `/events` and
//!   `/api/view/*` only; a request authenticated by it carries [`WebCookie`], and control
//!   actions then also need the CSRF token (a second value derived from the token, given to
//!   the page in a `<meta>`) in `X-CSRF-Token` plus an `Origin` header (`crate::web`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` / `JUPYTER_MCP_TOKEN`.
    Given,
    /// This file (`DATA_DIR/token`).
    File(PathBuf),
}

/// The token check and the Origin / Host rules of one daemon.
pub struct Auth {
    digest: [u8; 32],
    source: TokenSource,
    origins: HashSet<String>,
    loopback_only: bool,
    /// The web view's session cookie: name, and value (hex, derived from the token).
    cookie_name: String,
    cookie_value: String,
    /// The web view's CSRF token (hex, derived from the token).
    csrf: String,
}

/// Marks a request authenticated by the web view's session cookie (not by a bearer token):
/// state-changing handlers then require the CSRF header and an `Origin`.
#[derive(Debug, Clone, Copy)]
pub struct WebCookie;

/// Hex of SHA-256 over a fixed label and the token.
fn derive(label: &str, token: &str) -> String {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(token.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two strings (SHA-256 of both, then `subtle`).
fn same_secret(a: &str, b: &str) -> bool {
    let da: [u8; 32] = Sha256::digest(a.as_bytes()).into();
    let db: [u8; 32] = Sha256::digest(b.as_bytes()).into();
    bool::from(da.ct_eq(&db))
}

impl Auth {
    /// Rules for a daemon listening on `bound` with this token; `allowed` are the
    /// `--allowed-origin` values (`scheme://host[:port]`).
    pub fn new(token: &str, source: TokenSource, bound: SocketAddr, allowed: &[String]) -> Auth {
        let port = bound.port();
        let mut origins: HashSet<String> = [
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ]
        .into_iter()
        .collect();
        if !bound.ip().is_unspecified() {
            origins.insert(normalize_origin(&format!("http://{bound}")));
        }
        origins.extend(allowed.iter().map(|o| normalize_origin(o)));
        Auth {
            digest: Sha256::digest(token.as_bytes()).into(),
            source,
            origins,
            loopback_only: bound.ip().is_loopback(),
            cookie_name: format!("jupyter_mcp_{port}"),
            cookie_value: derive("jupyter-mcp web session", token),
            csrf: derive("jupyter-mcp web csrf", token),
        }
    }

    /// The web view's session cookie name (`jupyter_mcp_PORT`).
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The `Set-Cookie` value that opens a web view session (after a right `?token=`).
    pub fn session_set_cookie(&self) -> String {
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name, self.cookie_value
        )
    }

    /// Whether the request's `Cookie` header holds the web view session (constant time).
    pub fn session_cookie_ok(&self, headers: &HeaderMap) -> Option<bool> {
        let presented = cookie(headers, &self.cookie_name)?;
        Some(same_secret(&presented, &self.cookie_value))
    }

    /// The CSRF token the web view sends with control actions.
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    /// Whether `presented` is the CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        same_secret(presented, &self.csrf)
    }

    /// Whether `origin` is one this server accepts (its own or an `--allowed-origin`).
    pub fn origin_ok(&self, origin: &str) -> bool {
        self.origin_allowed(origin)
    }

    /// Whether `presented` is the token (constant time in the token's content and length).
    pub fn token_matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.ct_eq(&self.digest))
    }

    /// Where the token is kept, for messages (never the token itself).
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.contains(&normalize_origin(origin))
    }

    fn host_allowed(&self, host: &str) -> bool {
        !self.loopback_only || is_loopback_host(host)
    }

    fn where_token_is(&self) -> String {
        match &self.source {
            TokenSource::Given => {
                "the token given to the server with --token or JUPYTER_MCP_TOKEN".into()
            }
            TokenSource::File(p) => format!("the token in {}", p.display()),
        }
    }
}

/// `scheme://host[:port]` lower-cased without a trailing slash.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether a `Host` header value names a loopback address (`localhost`, 127.0.0.0/8, `[::1]`),
/// with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host.as_str(), |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host.as_str()
            }
        })
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A JSON error body: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Outer middleware of every route: shutdown (503), `Host` and `Origin` (403).
pub(super) async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let health = request.uri().path().starts_with("/health/");
    if app.draining() && !health {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down; retry against the next server start",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    }
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !app.auth.host_allowed(host) {
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {host:?} is not a loopback name and this server listens on a loopback \
                     address only (DNS rebinding protection); connect through 127.0.0.1 or \
                     localhost, or start the server with --bind naming the address to use"
                ),
            );
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !app.auth.origin_allowed(origin) {
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin {origin:?} is not allowed: only the server's own origin is, unless \
                     the server is started with --allowed-origin {origin}"
                ),
            );
        }
    }
    next.run(request).await
}

/// Inner middleware of every route except `/health/*`: the bearer token (401).
pub(super) async fn require_token(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match presented_token(request.headers(), &request) {
        Some(t) if app.auth.token_matches(&t) => next.run(request).await,
        Some(_) => unauthorized(&app, "invalid_token", "the bearer token is wrong"),
        // The web view's session cookie, on the routes the page uses.
        None if crate::web::cookie_route(request.uri().path()) => {
            match app.auth.session_cookie_ok(request.headers()) {
                Some(true) => {
                    let mut request = request;
                    request.extensions_mut().insert(WebCookie);
                    next.run(request).await
                }
                Some(false) => unauthorized(
                    &app,
                    "invalid_token",
                    "the web view's session cookie is stale (the token changed); open the \
                     link with ?token= printed at the server's start again",
                ),
                None => unauthorized(
                    &app,
                    "",
                    "a bearer token or the web view's session cookie is required",
                ),
            }
        }
        None => unauthorized(
            &app,
            "",
            "a bearer token is required (Authorization: Bearer TOKEN)",
        ),
    }
}

/// The token of `Authorization: Bearer T`, else (GET only) of `?token=T`.
fn presented_token(headers: &HeaderMap, request: &Request) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    if request.method() != axum::http::Method::GET {
        return None;
    }
    query_token(request.uri().query()?)
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 §5.4).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
        })
}

/// The `token` parameter of a query string, percent-decoded.
pub fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn unauthorized(app: &AppState, error_code: &str, what: &str) -> Response {
    let challenge = if error_code.is_empty() {
        "Bearer realm=\"jupyter-mcp\"".to_string()
    } else {
        format!("Bearer realm=\"jupyter-mcp\", error=\"{error_code}\"")
    };
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        format!("{what}: send {}", app.auth.where_token_is()),
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The daemon's token: `given` (`--token` / `JUPYTER_MCP_TOKEN`), else the content of
/// `DATA_DIR/token`, created on first use with 32 random bytes as hex, mode 0600. Creation is
/// atomic (written to a private temporary file, then hard-linked into place), so two
/// processes starting together agree on one token.
pub fn load_token(data_dir: &Path, given: Option<&str>) -> anyhow::Result<(String, TokenSource)> {
    if let Some(t) = given.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok((t.to_string(), TokenSource::Given));
    }
    let path = data_dir.join("token");
    if let Some(token) = read_token(&path)? {
        return Ok((token, TokenSource::File(path)));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data dir {}: {e}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no OS randomness for the token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = super::daemon_file::write_private_temp(data_dir, ".token", token.as_bytes())?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::warn!("generated an HTTP bearer token into {}", path.display());
            Ok((token, TokenSource::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process created it first: use theirs.
            let token = read_token(&path)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "{} exists but holds no token: delete it to get a new one",
                    path.display()
                )
            })?;
            Ok((token, TokenSource::File(path)))
        }
        Err(e) => anyhow::bail!("cannot create {}: {e}", path.display()),
    }
}

/// The token in `path`, `None` if the file does not exist.
pub fn read_token(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => {
            anyhow::bail!("{} is empty: delete it to get a new token", path.display())
        }
        Ok(s) => {
            use std::os::unix::fs::PermissionsExt as _;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        "{} is readable by other users (mode {:o}); chmod 600 it",
                        path.display(),
                        meta.permissions().mode() & 0o777
                    );
                }
            }
            Ok(Some(s.trim().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => anyhow::bail!("cannot read the token file {}: {e}", path.display()),
    }
}

#[cfg(test)]
#[path = "auth/tests.rs"]
mod tests;
