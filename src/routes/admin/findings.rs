//! Findings: list with filters; resolve one by hand.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{audit, decode_cursor, known_bot, limit, page, Origin};
use crate::auth::{Operator, Viewer};
use crate::error::ApiError;
use crate::extract::{Path, Query, RawBody};
use crate::state::AppState;
use crate::store::{FindingQuery, Severity};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/findings", get(list))
        .route("/api/admin/findings/{id}/resolve", post(resolve))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    bot: Option<String>,
    severity: Option<String>,
    open: Option<bool>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _v: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let n = limit(q.limit)?;
    if let Some(s) = &q.severity {
        if Severity::parse(s).is_none() {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("severity must be one of info, warning, error, critical; got {s:?}"),
            ));
        }
    }
    let query = FindingQuery {
        bot: known_bot(&state, q.bot)?,
        severity: q.severity,
        open: q.open,
        limit: n + 1,
        before: decode_cursor(q.cursor.as_deref())?,
    };
    let rows = state.store.list_findings(&query).await?;
    Ok(Json(json!(page(rows, n, |r| (
        r.detected_at,
        r.id.clone()
    )))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    notes: Option<String>,
}

async fn resolve(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let body: ResolveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ResolveBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("the body must be {{\"notes\": \"...\"}} or empty: {e}"),
            )
        })?
    };
    let resolved = state
        .store
        .resolve_finding(
            &id,
            &caller.subject(),
            body.notes.as_deref(),
            state.clock.now(),
        )
        .await?
        .ok_or_else(|| {
            ApiError::not_found("unknown_finding", format!("there is no finding {id}"))
        })?;
    audit(
        &state,
        &caller,
        &origin,
        "finding.resolve",
        &id,
        Some(json!({"resolved_at": null})),
        Some(json!({"resolved_at": resolved.resolved_at, "notes": body.notes})),
    )
    .await?;
    Ok(Json(json!(resolved)))
}
