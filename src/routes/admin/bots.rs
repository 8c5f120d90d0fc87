//! Bots: list, pause, resume, config.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{audit, Origin};
use crate::auth::{Admin, Operator, Viewer};
use crate::error::ApiError;
use crate::extract::{Path, RawBody};
use crate::health::BotState;
use crate::routes::bots::unknown_bot;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/bots", get(list))
        .route("/api/admin/bots/{name}/pause", post(pause))
        .route("/api/admin/bots/{name}/resume", post(resume))
        .route(
            "/api/admin/bots/{name}/config",
            get(get_config).put(put_config),
        )
}

async fn list(State(state): State<AppState>, _v: Viewer) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    let rows = state.store.list_bots().await?;
    let bots: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut v = serde_json::to_value(row).unwrap_or_default();
            v["state"] = json!(BotState::from_row(row, &state.schedules, now));
            v["config_customized"] = json!(row.config.is_some());
            v
        })
        .collect();
    Ok(Json(json!({ "bots": bots })))
}

async fn set_status(
    state: AppState,
    caller: crate::auth::Caller,
    origin: Origin,
    name: String,
    status: &str,
) -> Result<Json<Value>, ApiError> {
    if state.bots.get(&name).is_none() {
        return Err(unknown_bot(&state, &name));
    }
    let now = state.clock.now();
    let (before, after) = state
        .store
        .set_bot_status(&name, status, now)
        .await?
        .ok_or_else(|| unknown_bot(&state, &name))?;
    let verb = if status == "paused" {
        "pause"
    } else {
        "resume"
    };
    audit(
        &state,
        &caller,
        &origin,
        &format!("bot.{verb}"),
        &name,
        Some(json!({"status": before.status})),
        Some(json!({"status": after.status})),
    )
    .await?;
    tracing::info!(bot = %name, by = %caller.subject(), status, "bot status changed");
    Ok(Json(json!({
        "bot": name,
        "status": after.status,
        "previous_status": before.status,
        "state": BotState::from_row(&after, &state.schedules, now),
    })))
}

async fn pause(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(state, caller, origin, name, "paused").await
}

async fn resume(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(state, caller, origin, name, "active").await
}

async fn get_config(
    State(state): State<AppState>,
    _v: Viewer,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let bot = state
        .bots
        .get(&name)
        .ok_or_else(|| unknown_bot(&state, &name))?;
    let row = state
        .store
        .get_bot(&name)
        .await?
        .ok_or_else(|| unknown_bot(&state, &name))?;
    Ok(Json(json!({
        "bot": name,
        "customized": row.config.is_some(),
        "config": state.engine.effective_config(bot.as_ref(), row.config_value()),
        "defaults": state.engine.effective_config(bot.as_ref(), None),
    })))
}

/// Replaces the config after checking all of it; on any problem, 422 naming each field and
/// nothing changed.
async fn put_config(
    State(state): State<AppState>,
    Admin(caller): Admin,
    origin: Origin,
    Path(name): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let bot = state
        .bots
        .get(&name)
        .ok_or_else(|| unknown_bot(&state, &name))?;
    let config: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let errors = state.engine.validate_config(bot.as_ref(), &config);
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(
            "invalid_config",
            format!(
                "{name}'s config was not changed: {} problem(s), listed by field",
                errors.len()
            ),
            errors,
        ));
    }
    let before = state
        .store
        .set_bot_config(&name, &config, state.clock.now())
        .await?
        .ok_or_else(|| unknown_bot(&state, &name))?;
    audit(
        &state,
        &caller,
        &origin,
        "bot.config",
        &name,
        before,
        Some(config.clone()),
    )
    .await?;
    Ok(Json(json!({
        "bot": name,
        "customized": true,
        "config": state.engine.effective_config(bot.as_ref(), Some(&config)),
    })))
}
