//! `GET /api/metrics`: Prometheus text format; open unless `METRICS_TOKEN` is set.

use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::{metrics_token_ok, record_refusal};
use crate::error::ApiError;
use crate::health::fleet;
use crate::metrics::{BotGauge, FleetGauges, TargetGauge};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    if let Err(why) = metrics_token_ok(&state, &parts) {
        record_refusal(&state, &parts, "auth_failure", why).await;
        return Err(ApiError::unauthorized(why));
    }
    let now = state.clock.now();
    let mut gauges = FleetGauges::default();
    match fleet(state.store.as_ref(), &state.schedules, now).await {
        Ok(f) => {
            gauges.database_up = true;
            gauges.health_score = f.score;
            gauges.tickets_open = f.tickets_open;
            gauges.findings_open = f
                .open
                .iter()
                .map(|o| (o.bot.clone(), o.severity.clone(), o.count))
                .collect();
            gauges.bots = f
                .states
                .iter()
                .map(|s| BotGauge {
                    bot: s.name.clone(),
                    last_success: s.last_success_at.map(|t| t.timestamp_micros() as f64 / 1e6),
                    overdue: s.overdue(),
                    circuit_open: s.circuit_open(),
                    paused: s.status == "paused",
                })
                .collect();
            if let Ok(targets) = state.store.list_targets().await {
                gauges.targets = targets
                    .into_iter()
                    .map(|t| TargetGauge {
                        bot: t.bot,
                        target: t.target,
                        up: t.up,
                        response_seconds: t.latency_ms.map(|ms| ms / 1000.0),
                        cert_expiry: t.cert_expires_at.map(|c| c.timestamp() as f64),
                    })
                    .collect();
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: the database did not answer"),
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges),
    )
        .into_response())
}
