//! Targets: every checked page, endpoint and probe with its last state and uptime over 1 h,
//! 24 h, 7 d and 30 d; one target with its latency series.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{json, Value};

use super::known_bot;
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::state::AppState;
use crate::store::TargetStat;
use crate::targets::{series, uptime};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/targets", get(list))
        .route("/api/admin/targets/{bot}/{target}", get(one))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    bot: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _v: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let bot = known_bot(&state, q.bot)?;
    let now = state.clock.now();
    let targets = state.store.list_targets().await?;
    let stats = state
        .store
        .target_stats(bot.as_deref(), None, now - Duration::days(31))
        .await?;
    let items: Vec<Value> = targets
        .iter()
        .filter(|t| bot.as_ref().is_none_or(|b| *b == t.bot))
        .map(|t| {
            let mine: Vec<&TargetStat> = stats
                .iter()
                .filter(|s| s.bot == t.bot && s.target == t.target)
                .collect();
            let mut v = json!(t);
            v["uptime"] = uptime(&mine, now);
            v
        })
        .collect();
    Ok(Json(json!({ "targets": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneQuery {
    hours: Option<i64>,
    days: Option<i64>,
}

async fn one(
    State(state): State<AppState>,
    _v: Viewer,
    Path((bot, target)): Path<(String, String)>,
    Query(q): Query<OneQuery>,
) -> Result<Json<Value>, ApiError> {
    let hours = q.hours.unwrap_or(48);
    let days = q.days.unwrap_or(30);
    if !(1..=48).contains(&hours) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("hours must be from 1 to 48 (older hours are folded into days), got {hours}"),
        ));
    }
    if !(1..=400).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("days must be from 1 to 400, got {days}"),
        ));
    }
    known_bot(&state, Some(bot.clone()))?;
    let row = state
        .store
        .get_target(&bot, &target)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("unknown_target", format!("{bot} has no target {target:?}"))
        })?;
    let now = state.clock.now();
    let since = now - Duration::days(days.max(31));
    let stats = state
        .store
        .target_stats(Some(&bot), Some(&target), since)
        .await?;
    let all: Vec<&TargetStat> = stats.iter().collect();
    let hourly: Vec<&TargetStat> = stats
        .iter()
        .filter(|s| s.granularity == "hour" && s.bucket_start > now - Duration::hours(hours))
        .collect();
    let daily: Vec<&TargetStat> = stats
        .iter()
        .filter(|s| s.granularity == "day" && s.bucket_start > now - Duration::days(days))
        .collect();
    Ok(Json(json!({
        "target": row,
        "uptime": uptime(&all, now),
        "series": {
            "hourly": series(&hourly),
            "daily": series(&daily),
        },
    })))
}
