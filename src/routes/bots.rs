//! `GET|POST /api/bots/{name}`: one pass. And `GET /api/bots/{name}/executions/{id}` to poll a
//! pass started with `wait=false`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Caller, Trigger};
use crate::engine::{execution_report, EngineError, TriggerOutcome, TriggerRequest};
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/bots/{name}", get(trigger).post(trigger))
        .route("/api/bots/{name}/executions/{id}", get(poll))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerQuery {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

pub fn unknown_bot(state: &AppState, name: &str) -> ApiError {
    ApiError::not_found("unknown_bot", format!("there is no bot named {name:?}"))
        .with("bots", state.bots.names())
}

async fn trigger(
    State(state): State<AppState>,
    Trigger(caller): Trigger,
    Path(name): Path<String>,
    Query(q): Query<TriggerQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.bots.get(&name).is_none() {
        return Err(unknown_bot(&state, &name));
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255);
            Some(
                key.ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                })?
                .to_string(),
            )
        }
    };
    let triggered_by = match &caller {
        Caller::Cron => {
            let vercel = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ua| ua.starts_with("vercel-cron"));
            if vercel {
                "cron:vercel".to_string()
            } else {
                "cron".to_string()
            }
        }
        other => other.subject(),
    };
    let request = TriggerRequest {
        bot: name.clone(),
        force: q.force,
        dry_run: q.dry_run,
        wait: q.wait,
        idempotency_key,
        triggered_by,
    };
    let outcome = state.engine.trigger(request).await.map_err(|e| match e {
        EngineError::UnknownBot(n) => unknown_bot(&state, &n),
        EngineError::Store(s) => ApiError::from(s),
        EngineError::Internal(m) => ApiError::internal(m),
    })?;
    Ok(match outcome {
        TriggerOutcome::Report(report) => axum::Json(report).into_response(),
        TriggerOutcome::Skipped(skip) => axum::Json(skip).into_response(),
        TriggerOutcome::Replayed(report) => (
            [(
                header::HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            )],
            axum::Json(report),
        )
            .into_response(),
        TriggerOutcome::Accepted { execution_id } => {
            let location = format!("/api/bots/{name}/executions/{execution_id}");
            (
                StatusCode::ACCEPTED,
                [(header::LOCATION, location.clone())],
                axum::Json(json!({
                    "execution_id": execution_id,
                    "bot": name,
                    "status": "running",
                    "location": location,
                    "message": "the pass is running; GET the location for its report",
                })),
            )
                .into_response()
        }
    })
}

async fn poll(
    State(state): State<AppState>,
    Trigger(_caller): Trigger,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if state.bots.get(&name).is_none() {
        return Err(unknown_bot(&state, &name));
    }
    let row = state
        .store
        .get_execution(&id)
        .await?
        .filter(|r| r.bot == name)
        .ok_or_else(|| {
            ApiError::not_found("unknown_execution", format!("{name} has no execution {id}"))
        })?;
    Ok(axum::Json(execution_report(&row)).into_response())
}
