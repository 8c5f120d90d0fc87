//! The audit log (auth failures, refusals, admin changes) and daily metrics.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{decode_cursor, known_bot, limit, page};
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;
use crate::store::EventQuery;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/audit", get(audit_log))
        .route("/api/admin/metrics/daily", get(daily))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    kind: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn audit_log(
    State(state): State<AppState>,
    _v: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let n = limit(q.limit)?;
    if let Some(k) = &q.kind {
        if !["auth_failure", "forbidden", "admin_change"].contains(&k.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("kind must be auth_failure, forbidden or admin_change; got {k:?}"),
            ));
        }
    }
    let rows = state
        .store
        .list_security_events(&EventQuery {
            kind: q.kind,
            limit: n + 1,
            before: decode_cursor(q.cursor.as_deref())?,
        })
        .await?;
    Ok(Json(json!(page(rows, n, |r| (
        r.occurred_at,
        r.id.clone()
    )))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DailyQuery {
    bot: Option<String>,
    days: Option<i64>,
}

async fn daily(
    State(state): State<AppState>,
    _v: Viewer,
    Query(q): Query<DailyQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("days must be from 1 to 366, got {days}"),
        ));
    }
    let bot = known_bot(&state, q.bot)?;
    let since = state.clock.now().date_naive() - chrono::Duration::days(days - 1);
    let rows = state.store.daily_metrics(bot.as_deref(), since).await?;
    Ok(Json(json!({ "since": since, "days": rows })))
}
