//! `/health/live`, `/health/ready` (no token: for probes) and `/metrics` (token required),
//! SPEC §7 "Health".

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// How long `state.db` may take to answer the readiness query.
const DB_DEADLINE: Duration = Duration::from_secs(2);

/// `GET /health/live`: 200 while the process serves HTTP.
pub(super) async fn live() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"status": "live"}).to_string(),
    )
        .into_response()
}

/// `GET /health/ready`: 200 when recovery has finished, `state.db` answers a query within
/// [`DB_DEADLINE`], both storage breakers (SPEC §8) are closed and every readiness hook is
/// satisfied; else 503 with `{"status": "not ready", "reasons": [...]}`.
pub(super) async fn ready(State(app): State<AppState>) -> Response {
    let mut reasons: Vec<String> = Vec::new();
    if app.draining() {
        reasons.push("the server is shutting down".into());
    }
    match app.recovery_state() {
        super::Readiness::Ready => {}
        super::Readiness::Recovering => {
            reasons.push("start-up recovery has not finished".into());
        }
        super::Readiness::Failed(why) => reasons.push(format!("start-up recovery failed: {why}")),
    }
    let query = app.engine.store().call(|c| {
        c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(Into::into)
    });
    match tokio::time::timeout(DB_DEADLINE, query).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => reasons.push(format!("state.db does not answer: {e}")),
        Err(_) => reasons.push(format!(
            "state.db did not answer within {} s",
            DB_DEADLINE.as_secs()
        )),
    }
    // The storage breakers (SPEC §8): memory only.
    reasons.extend(app.engine.storage().not_ready_reasons());
    for check in &app.ready_checks {
        if let Some(why) = check() {
            reasons.push(why);
        }
    }
    let (status, body) = if reasons.is_empty() {
        (StatusCode::OK, json!({"status": "ready"}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "reasons": reasons}),
        )
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /metrics`: the process registry in the OpenMetrics text format (Prometheus reads it).
pub(super) async fn metrics() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::encode_text(),
    )
        .into_response()
}
