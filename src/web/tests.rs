//! The web view's access rules through the daemon's router (`oneshot`, no socket): the
//! token-for-cookie exchange, cookie use on the view's routes only, the CSRF rule of the
//! controls, and the hardening headers.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use clap::Parser as _;
use tower::ServiceExt as _;

use crate::engine::Engine;
use crate::http::{router, AppState, Auth, Readiness, TokenSource};

const HOST: &str = "127.0.0.1:3999";
const ORIGIN: &str = "http://127.0.0.1:3999";

fn app(dir: &std::path::Path) -> Router {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let cli = crate::cli::Cli::try_parse_from([
        "jupyter-mcp",
        "serve",
        "--root",
        root.to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ])
    .unwrap();
    let crate::cli::Command::Serve(args) = cli.command else {
        unreachable!()
    };
    let engine = Engine::new(args.shared.config(&root, false).unwrap()).unwrap();
    let bound: SocketAddr = HOST.parse().unwrap();
    let state = AppState::new(
        engine,
        Auth::new("s3cret tok", TokenSource::Given, bound, &[]),
        Vec::new(),
    );
    state.set_ready(Readiness::Ready);
    router(&state, Router::new())
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let r = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path).header(header::HOST, HOST)
}

/// Signs in with `?token=` and returns the `name=value` cookie pair.
async fn sign_in(router: &Router) -> String {
    let (s, h, _) = send(
        router,
        get("/?token=s3cret%20tok&notebook=a.ipynb")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/?notebook=a.ipynb", "token dropped");
    let set = h[header::SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(
        !set.contains("s3cret"),
        "the token itself is not the cookie: {set}"
    );
    set.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn the_token_link_sets_a_cookie_that_opens_the_page_and_the_view_api() {
    let dir = tempfile::tempdir().unwrap();
    let router = app(dir.path());
    let cookie = sign_in(&router).await;

    let (s, h, body) = send(
        &router,
        get("/")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(body.contains("csrf-token"), "{body}");
    assert!(!body.contains("s3cret"), "the page never holds the token");

    let (s, _, body) = send(
        &router,
        get("/api/view/overview")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains("\"notebooks\""), "{body}");

    // Not on /mcp or /metrics: the cookie is the view's only.
    let (s, _, _) = send(
        &router,
        get("/metrics")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_token_or_cookie_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let router = app(dir.path());
    let (s, h, body) = send(&router, get("/?token=nope").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h.get(header::SET_COOKIE).is_none());
    assert!(h[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert!(body.contains("wrong"), "{body}");
    let (s, _, _) = send(&router, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(
        &router,
        get("/api/view/overview")
            .header(header::COOKIE, "jupyter_mcp_3999=forged")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn controls_with_the_cookie_need_the_csrf_header_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let router = app(dir.path());
    let cookie = sign_in(&router).await;
    let (_, _, page) = send(
        &router,
        get("/")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let post = |csrf: Option<&str>, origin: Option<&str>| {
        let mut b = Request::post("/api/view/cancel")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = csrf {
            b = b.header("X-CSRF-Token", c);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(Body::from(r#"{"execution_id":"nope"}"#)).unwrap()
    };
    let (s, _, _) = send(&router, post(None, Some(ORIGIN))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no CSRF header");
    let (s, _, _) = send(&router, post(Some("wrong"), Some(ORIGIN))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "wrong CSRF header");
    let (s, _, _) = send(&router, post(Some(&csrf), None)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no Origin");
    let (s, _, _) = send(&router, post(Some(&csrf), Some("http://evil.example"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "foreign Origin");
    let (s, _, body) = send(&router, post(Some(&csrf), Some(ORIGIN))).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "passes the checks, unknown id: {body}"
    );
    assert!(body.contains("no execution with id"), "{body}");
}

#[test]
fn the_start_link_names_a_reachable_address_and_encodes_the_token() {
    let l = super::start_link("0.0.0.0:8888".parse().unwrap(), "a b/c");
    assert_eq!(l, "http://127.0.0.1:8888/?token=a%20b%2Fc");
    let l = super::start_link("127.0.0.1:3000".parse().unwrap(), "abc");
    assert_eq!(l, "http://127.0.0.1:3000/?token=abc");
}
