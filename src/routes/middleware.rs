//! The one middleware in front of every route, in three steps — who is calling (and how often),
//! whether they may (blocks and rate limits, before auth), whether load is being shed — then
//! the accounting (metrics and pulse's counters) once the answer is known. One layer rather
//! than three: this is on every request, `/api/health` under an uptime checker's load included.
//! And turning a panic into a JSON 500.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::ApiError;
use crate::net;
use crate::security::Restriction;
use crate::state::AppState;

pub async fn front(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let now = state.clock.now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = net::client_ip(peer, req.headers(), &state.config.trusted_proxies);
    let this_minute = ip.map(|ip| state.process.addresses.record(ip, now));
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let path = route
        .as_ref()
        .map(|r| r.as_str())
        .unwrap_or(req.uri().path());

    let refused = match (ip, this_minute) {
        (Some(ip), Some(n)) => guard(&state, ip, n, path, now).await,
        _ => None,
    };
    let (response, shed) = match refused {
        Some(r) => (r, false),
        None => match shed(&state, path, now) {
            Some(r) => (r, true),
            None => (next.run(req).await, false),
        },
    };

    let elapsed = start.elapsed();
    let route = route.as_ref().map(|r| r.as_str()).unwrap_or("unmatched");
    let status = response.status().as_u16();
    // Triggers last as long as a pass and the event stream as long as a listener.
    let timed = !(route.starts_with("/api/bots/") || route == "/api/admin/events");
    state.process.requests.record(status, elapsed, timed, shed);
    state.metrics.http(route, &method, status, elapsed);
    response
}

/// Blocked addresses get 403 and rate-limited ones 429 on every route but liveness. Trusted
/// proxies and `NEVER_BLOCK` addresses are never refused.
async fn guard(
    state: &AppState,
    ip: IpAddr,
    this_minute: u64,
    path: &str,
    now: DateTime<Utc>,
) -> Option<Response> {
    if path == "/api/health/live"
        || net::any_contains(&state.config.never_block, ip)
        || net::any_contains(&state.config.trusted_proxies, ip)
    {
        return None;
    }
    match state
        .process
        .blocks
        .check(state.store.as_ref(), ip, now)
        .await?
    {
        Restriction::Blocked { until, reason } => {
            state.metrics.refused("block");
            let until = until.to_rfc3339_opts(SecondsFormat::Secs, true);
            Some(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "blocked",
                    format!("requests from {ip} are blocked until {until} ({reason})"),
                )
                .with("until", until)
                .into_response(),
            )
        }
        Restriction::RateLimited { per_minute, until } if this_minute as i64 > per_minute => {
            state.metrics.refused("rate_limit");
            let wait = 60 - (now.timestamp() % 60) as u64;
            Some(
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "{ip} is limited to {per_minute} requests a minute until {}; try again in {wait} s",
                        until.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                )
                .header(header::RETRY_AFTER, HeaderValue::from(wait))
                .into_response(),
            )
        }
        Restriction::RateLimited { .. } => None,
    }
}

/// While shedding, non-essential routes (the public status summary, the API description, the
/// dashboard page) answer 503 with `Retry-After`. Triggers, health, metrics and the admin API
/// always go through: an operator must be able to look and act during an incident.
fn shed(state: &AppState, path: &str, now: DateTime<Utc>) -> Option<Response> {
    let secs = state.process.shed.remaining(now)?;
    if essential(path) {
        return None;
    }
    let reason = state.process.shed.reason().unwrap_or_default();
    Some(
        ApiError::unavailable(
            "shedding_load",
            format!("botfleet is shedding load ({reason}); try again in {secs} s"),
            secs,
        )
        .into_response(),
    )
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
