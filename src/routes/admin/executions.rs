//! Executions: a filtered, cursor-paged list; one with its report, findings and actions.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{decode_cursor, known_bot, limit, page};
use crate::auth::Viewer;
use crate::engine::execution_report;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::state::AppState;
use crate::store::{ExecStatus, ExecutionQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/executions", get(list))
        .route("/api/admin/executions/{id}", get(one))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    bot: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _v: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let n = limit(q.limit)?;
    if let Some(s) = &q.status {
        if ExecStatus::parse(s).is_none() {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "status must be one of running, success, failed, timeout, abandoned; got {s:?}"
                ),
            ));
        }
    }
    let query = ExecutionQuery {
        bot: known_bot(&state, q.bot)?,
        status: q.status,
        limit: n + 1,
        before: decode_cursor(q.cursor.as_deref())?,
    };
    let mut rows = state.store.list_executions(&query).await?;
    for r in &mut rows {
        r.metadata = None; // the report is on the single-execution route
    }
    Ok(Json(json!(page(rows, n, |r| (r.started_at, r.id.clone())))))
}

async fn one(
    State(state): State<AppState>,
    _v: Viewer,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = state.store.get_execution(&id).await?.ok_or_else(|| {
        ApiError::not_found("unknown_execution", format!("there is no execution {id}"))
    })?;
    let findings = state.store.execution_findings(&id).await?;
    let actions = state.store.execution_actions(&id).await?;
    let report = execution_report(&row);
    let mut execution = json!(row);
    execution["metadata"] = Value::Null;
    Ok(Json(json!({
        "execution": execution,
        "report": report,
        "findings": findings,
        "actions": actions,
    })))
}
