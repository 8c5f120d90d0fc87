//! The knowledge base: list, add, edit, delete. Patterns must compile; actions must exist.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{audit, Origin};
use crate::auth::{Operator, Viewer};
use crate::engine::heal::compile_pattern;
use crate::error::{ApiError, FieldError};
use crate::extract::{Json as Body, Path};
use crate::state::AppState;
use crate::store::{new_id, KnowledgeInput};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/knowledge", get(list).post(create))
        .route("/api/admin/knowledge/{id}", put(update).delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    category: String,
    issue_pattern: String,
    solution: String,
    #[serde(default)]
    action: Option<Value>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

fn validate(state: &AppState, e: Entry) -> Result<KnowledgeInput, ApiError> {
    let mut errors = Vec::new();
    if e.category.trim().is_empty() || e.category.len() > 50 {
        errors.push(FieldError::new("category", "must be 1 to 50 characters"));
    }
    if let Err(why) = compile_pattern(&e.issue_pattern) {
        errors.push(FieldError::new(
            "issue_pattern",
            format!("not a usable regex: {why}"),
        ));
    }
    if e.solution.trim().is_empty() {
        errors.push(FieldError::new("solution", "must say what the fix is"));
    }
    if let Some(a) = &e.action {
        errors.extend(state.engine.actions.validate(a));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(
            "invalid_knowledge",
            "the entry was not saved; see fields",
            errors,
        ));
    }
    Ok(KnowledgeInput {
        category: e.category,
        issue_pattern: e.issue_pattern,
        solution: e.solution,
        action: e.action,
        enabled: e.enabled,
    })
}

async fn list(State(state): State<AppState>, _v: Viewer) -> Result<Json<Value>, ApiError> {
    let entries = state.store.list_knowledge().await?;
    Ok(Json(
        json!({ "entries": entries, "actions": state.engine.actions.names() }),
    ))
}

async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    Body(entry): Body<Entry>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = validate(&state, entry)?;
    let row = state
        .store
        .insert_knowledge(&new_id(), &input, state.clock.now())
        .await?;
    state.engine.knowledge.invalidate();
    audit(
        &state,
        &caller,
        &origin,
        "knowledge.create",
        &row.id,
        None,
        Some(json!(row)),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(row))))
}

async fn update(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    Path(id): Path<String>,
    Body(entry): Body<Entry>,
) -> Result<Json<Value>, ApiError> {
    let input = validate(&state, entry)?;
    let before = state.store.get_knowledge(&id).await?;
    let row = state
        .store
        .update_knowledge(&id, &input, state.clock.now())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_knowledge",
                format!("there is no knowledge entry {id}"),
            )
        })?;
    state.engine.knowledge.invalidate();
    audit(
        &state,
        &caller,
        &origin,
        "knowledge.update",
        &id,
        before.map(|b| json!(b)),
        Some(json!(row)),
    )
    .await?;
    Ok(Json(json!(row)))
}

async fn remove(
    State(state): State<AppState>,
    Operator(caller): Operator,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let before = state.store.get_knowledge(&id).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_knowledge",
            format!("there is no knowledge entry {id}"),
        )
    })?;
    state.store.delete_knowledge(&id).await?;
    state.engine.knowledge.invalidate();
    audit(
        &state,
        &caller,
        &origin,
        "knowledge.delete",
        &id,
        Some(json!(before)),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
