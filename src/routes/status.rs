//! `GET /api/status`: the health score and each bot's state — a summary, public unless
//! `STATUS_PUBLIC=false` (then viewer+).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::auth::Viewer;
use crate::error::ApiError;
use crate::health::fleet;
use crate::state::AppState;
use crate::store::Severity;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/status", get(status))
}

async fn status(State(state): State<AppState>, mut parts: Parts) -> Result<Json<Value>, ApiError> {
    if !state.config.status_public {
        Viewer::from_request_parts(&mut parts, &state).await?;
    }
    let now = state.clock.now();
    let f = fleet(state.store.as_ref(), &state.schedules, now).await?;
    let mut totals: Map<String, Value> = Severity::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(0)))
        .collect();
    for o in &f.open {
        let n = totals.get(&o.severity).and_then(Value::as_i64).unwrap_or(0) + o.count;
        totals.insert(o.severity.clone(), json!(n));
    }
    let bots: Vec<Value> = f
        .rows
        .iter()
        .zip(&f.states)
        .map(|(row, s)| {
            let runs = f.runs_24h.iter().find(|r| r.bot == row.name);
            let mut open: Map<String, Value> = Map::new();
            for o in f.open.iter().filter(|o| o.bot == row.name) {
                open.insert(o.severity.clone(), json!(o.count));
            }
            json!({
                "name": row.name,
                "display_name": row.display_name,
                "status": s.status,
                "schedule": s.schedule,
                "punctuality": s.punctuality,
                "circuit": s.circuit,
                "running": s.running,
                "last_run_at": s.last_run_at,
                "last_status": s.last_status,
                "last_success_at": s.last_success_at,
                "next_run_at": s.next_run_at,
                "runs_24h": runs.map(|r| r.total).unwrap_or(0),
                "success_rate_24h": runs.filter(|r| r.total > 0).map(|r| (r.successful as f64 * 1000.0 / r.total as f64).round() / 10.0),
                "open_findings": open,
            })
        })
        .collect();
    let degraded = f.states.iter().any(|s| s.overdue() || s.circuit_open());
    let now_shed = state.process.shed.remaining(now);
    Ok(Json(json!({
        "status": if degraded { "degraded" } else { "healthy" },
        "health_score": f.score,
        "generated_at": now,
        "bots": bots,
        "findings_open": totals,
        "tickets_open": f.tickets_open,
        "shedding_load": now_shed.map(|secs| json!({"seconds_left": secs, "reason": state.process.shed.reason()})),
        "version": env!("CARGO_PKG_VERSION"),
    })))
}
