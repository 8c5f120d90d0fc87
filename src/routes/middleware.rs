//! Middleware: request accounting (metrics and pulse's counters), load shedding, and turning a
//! panic into a JSON 500.

use std::any::Any;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Marks a response as deliberately shed (a 503 that is not an error).
#[derive(Clone, Copy)]
struct Shed;

fn route_of(req: &Request) -> Option<MatchedPath> {
    req.extensions().get::<MatchedPath>().cloned()
}

pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = route_of(&req);
    let method = req.method().clone();
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    let route = route.as_ref().map(|r| r.as_str()).unwrap_or("unmatched");
    let status = response.status().as_u16();
    // Triggers last as long as a pass and the event stream as long as a listener.
    let timed = !(route.starts_with("/api/bots/") || route == "/api/admin/events");
    let shed = response.extensions().get::<Shed>().is_some();
    state.process.requests.record(status, elapsed, timed, shed);
    state.metrics.http(route, &method, status, elapsed);
    response
}

/// While shedding, non-essential routes (the public status summary, the API description, the
/// dashboard page) answer 503 with `Retry-After`. Triggers, health, metrics and the admin API
/// always go through: an operator must be able to look and act during an incident.
pub async fn shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(secs) = state.process.shed.remaining(state.clock.now()) {
        let path = route_of(&req)
            .map(|r| r.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string());
        if !essential(&path) {
            let reason = state.process.shed.reason().unwrap_or_default();
            let mut r = ApiError::unavailable(
                "shedding_load",
                format!("botfleet is shedding load ({reason}); try again in {secs} s"),
                secs,
            )
            .into_response();
            r.extensions_mut().insert(Shed);
            return r;
        }
    }
    next.run(req).await
}

fn essential(path: &str) -> bool {
    path.starts_with("/api/bots/")
        || path.starts_with("/api/health")
        || path == "/api/metrics"
        || path.starts_with("/api/admin/")
}

pub fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into());
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}
