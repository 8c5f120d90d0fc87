//! `GET /api/health` (readiness, for uptime checkers) and `GET /api/health/live` (liveness).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/health/live", get(live))
}

/// 200 `healthy`, or 503 `degraded`/`unhealthy` with the reasons.
async fn health(State(state): State<AppState>) -> Response {
    let snapshot = state
        .health
        .get(
            state.store.as_ref(),
            &state.schedules,
            state.clock.now(),
            state.process.generation(),
        )
        .await;
    (
        snapshot.status,
        [(header::CONTENT_TYPE, "application/json")],
        snapshot.body.clone(),
    )
        .into_response()
}

/// 200 while the process serves.
async fn live(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "status": "alive",
        "uptime_seconds": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
