//! `/api/admin/...`: viewer reads, operator acts, admin configures. Every change is written to
//! the audit log with who, what, before and after.

mod audit;
mod blocks;
mod bots;
mod events;
mod executions;
mod findings;
mod knowledge;
mod targets;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::auth::{client_addr, Caller};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::NewSecurityEvent;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(bots::router())
        .merge(blocks::router())
        .merge(executions::router())
        .merge(findings::router())
        .merge(knowledge::router())
        .merge(audit::router())
        .merge(events::router())
        .merge(targets::router())
}

/// Where a request came from, for the audit log.
pub struct Origin {
    pub address: Option<String>,
    pub method: String,
    pub route: String,
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Origin {
            address: client_addr(parts, &state.config.trusted_proxies),
            method: parts.method.to_string(),
            route: parts.uri.path().to_string(),
        })
    }
}

/// Records an admin change. Failing to record it fails the request: a change nobody can
/// account for is worse than one that did not happen — but the change itself is already made,
/// so the caller is told both.
pub async fn audit(
    state: &AppState,
    caller: &Caller,
    origin: &Origin,
    what: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), ApiError> {
    state.process.changed();
    let event = NewSecurityEvent {
        kind: "admin_change",
        address: origin.address.clone(),
        method: Some(origin.method.clone()),
        route: Some(origin.route.clone()),
        reason: Some(what.to_string()),
        subject: Some(caller.subject()),
        target: Some(target.to_string()),
        before,
        after,
        at: state.clock.now(),
    };
    state.events.emit(
        "admin_change",
        event.at,
        serde_json::json!({"what": what, "target": target, "by": caller.subject()}),
    );
    state
        .store
        .record_security_event(&event)
        .await
        .map_err(|e| {
            ApiError::internal(format!(
                "the change to {target} was made but could not be audited: {e}"
            ))
        })
}

/// A page of results and the cursor for the next one.
#[derive(Serialize)]
pub struct Page<T: Serialize> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

pub fn limit(v: Option<i64>) -> Result<i64, ApiError> {
    match v {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be from 1 to {MAX_LIMIT}, got {n}"),
        )),
    }
}

/// Cursors are `<microseconds>.<id>` of the last row of the previous page.
pub fn encode_cursor(at: DateTime<Utc>, id: &str) -> String {
    format!("{}.{id}", at.timestamp_micros())
}

pub fn decode_cursor(c: Option<&str>) -> Result<Option<(DateTime<Utc>, String)>, ApiError> {
    let Some(c) = c else { return Ok(None) };
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "cursor is not one botfleet gave out; omit it to start from the newest",
        )
    };
    let (micros, id) = c.split_once('.').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(Some((at, id.to_string())))
}

/// A page out of `limit + 1` fetched rows.
pub fn page<T: Serialize>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (DateTime<Utc>, String),
) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| {
            let (at, id) = key(r);
            encode_cursor(at, &id)
        })
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

/// A bot name filter must name a bot.
pub fn known_bot(state: &AppState, name: Option<String>) -> Result<Option<String>, ApiError> {
    match name {
        Some(n) if state.bots.get(&n).is_none() => Err(crate::routes::bots::unknown_bot(state, &n)),
        other => Ok(other),
    }
}
