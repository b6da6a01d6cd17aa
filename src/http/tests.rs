//! The daemon's router through `tower::ServiceExt::oneshot` (no socket), and the session
//! table: token, Origin, Host, health, body limit, id remapping, idle expiry.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use clap::Parser as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::*;

fn engine(dir: &std::path::Path) -> Engine {
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
    Engine::new(args.shared.config(&root, false).unwrap()).unwrap()
}

fn app(dir: &std::path::Path) -> (AppState, Router) {
    let bound: SocketAddr = "127.0.0.1:3999".parse().unwrap();
    let auth = Auth::new("tok", TokenSource::Given, bound, &[]);
    let state = AppState::new(engine(dir), auth, Vec::new());
    state.set_ready(Readiness::Ready);
    let router = router(&state, Router::new());
    (state, router)
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path).header(header::HOST, "127.0.0.1:3999")
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let r = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn token_origin_host_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let (state, router) = app(dir.path());
    let (s, _, _) = send(&router, get("/health/live").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK, "health needs no token");
    let (s, h, body) = send(&router, get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert!(!body.contains("tok\""), "{body}");
    let (s, h, _) = send(
        &router,
        get("/metrics")
            .header(header::AUTHORIZATION, "Bearer bad")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let (s, _, body) = send(
        &router,
        get("/metrics?token=tok").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("mcp_sessions"), "{body}");
    let (s, _, _) = send(
        &router,
        get("/metrics")
            .header(header::AUTHORIZATION, "Bearer tok")
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = send(
        &router,
        Request::get("/health/live")
            .header(header::HOST, "evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "DNS rebinding");
    state.start_draining();
    let (s, _, _) = send(
        &router,
        get("/metrics?token=tok").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "draining");
    let (s, _, body) = send(&router, get("/health/ready").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("shutting down"), "{body}");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let dir = tempfile::tempdir().unwrap();
    let (_, router) = app(dir.path());
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let (s, _, body) = send(
        &router,
        Request::post("/mcp")
            .header(header::HOST, "localhost:3999")
            .header(header::AUTHORIZATION, "Bearer tok")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(big))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test]
async fn same_ids_from_concurrent_requests_get_their_own_answers_and_idle_sessions_end() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) = app(dir.path());
    let (sid, session) = state.sessions.create().unwrap().unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}});
    let mut rx = session.request(init).await.ok().unwrap();
    let answer: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
    assert_eq!(answer["id"], 1);
    session
        .notify(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .ok()
        .unwrap();
    let list = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    let ping = json!({"jsonrpc": "2.0", "id": 7, "method": "ping"});
    let (mut a, mut b) = (
        session.request(list).await.ok().unwrap(),
        session.request(ping).await.ok().unwrap(),
    );
    let a: Value = serde_json::from_str(&a.recv().await.unwrap()).unwrap();
    let b: Value = serde_json::from_str(&b.recv().await.unwrap()).unwrap();
    assert_eq!((&a["id"], &b["id"]), (&json!(7), &json!(7)));
    assert!(a["result"]["tools"].is_array() && b["result"].get("tools").is_none());
    let now = tokio::time::Instant::now();
    assert_eq!(
        state.sessions.expire(now, IDLE_TTL).await,
        0,
        "not idle yet"
    );
    assert_eq!(state.sessions.expire(now + IDLE_TTL, IDLE_TTL).await, 1);
    assert!(state.sessions.get(&sid).is_none());
    assert!(
        matches!(
            session
                .request(json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}))
                .await,
            Err(sessions::Refused::Gone)
        ),
        "an ended session takes no requests"
    );
}

#[tokio::test]
async fn sessions_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) = app(dir.path());
    let mut made = 0;
    while state.sessions.create().unwrap().is_some() {
        made += 1;
        assert!(made <= MAX_SESSIONS, "no bound");
    }
    assert_eq!(made, MAX_SESSIONS);
    assert_eq!(state.session_count(), MAX_SESSIONS);
    state.sessions.end_all().await;
    assert_eq!(state.session_count(), 0);
    assert!(state.sessions.create().unwrap().is_some(), "room again");
}
