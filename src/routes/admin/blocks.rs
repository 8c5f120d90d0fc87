//! Blocked and rate-limited addresses: list them; lift one.

use axum::extract::State;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{audit, Origin};
use crate::auth::{Operator, Viewer};
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/blocks", get(list))
        .route("/api/admin/blocks/{address}", delete(lift))
}

async fn list(State(state): State<AppState>, _v: Viewer) -> Result<Json<Value>, ApiError> {
    let blocks = state.store.list_blocks(state.clock.now()).await?;
    Ok(Json(json!({ "blocks": blocks })))
}

async fn lift(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ip: std::net::IpAddr = address.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_address",
            format!("{address:?} is not an IP address"),
        )
    })?;
    let removed = state
        .store
        .delete_block(&ip.to_string())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_block",
                format!("{ip} is not blocked or rate-limited"),
            )
        })?;
    state.process.blocks.invalidate();
    audit(
        &state,
        &caller,
        &origin,
        "address.lift",
        &ip.to_string(),
        Some(json!(removed)),
        None,
    )
    .await?;
    tracing::info!(address = %ip, by = %caller.subject(), "block lifted");
    Ok(Json(json!({ "lifted": removed })))
}
