//! Middleware: request accounting (metrics and pulse's counters), load shedding, and turning a
//! panic into a JSON 500.

use std::any::Any;
use std::time::Instant;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::net;
use crate::security::Restriction;
use crate::state::AppState;

/// Marks a response as deliberately shed (a 503 that is not an error).
#[derive(Clone, Copy)]
struct Shed;

fn route_of(req: &Request) -> Option<MatchedPath> {
    req.extensions().get::<MatchedPath>().cloned()
}

/// Works out the client's address (see `net`), counts the request for it, and records the
/// request in the metrics and pulse's counters.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = net::client_ip(peer, req.headers(), &state.config.trusted_proxies);
    if let Some(ip) = ip {
        let n = state.process.addresses.record(ip, state.clock.now());
        req.extensions_mut().insert(net::MinuteCount(n));
    }
    req.extensions_mut().insert(net::ClientIp(ip));
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

/// Blocked addresses get 403 and rate-limited ones 429 on every route but liveness, before
/// auth. Trusted proxies and `NEVER_BLOCK` addresses are never refused here.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(net::ClientIp(Some(ip))) = req.extensions().get::<net::ClientIp>().copied() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/api/health/live"
        || net::any_contains(&state.config.never_block, ip)
        || net::any_contains(&state.config.trusted_proxies, ip)
    {
        return next.run(req).await;
    }
    let now = state.clock.now();
    match state
        .process
        .blocks
        .check(state.store.as_ref(), ip, now)
        .await
    {
        Some(Restriction::Blocked { until, reason }) => {
            state.metrics.refused("block");
            ApiError::new(
                StatusCode::FORBIDDEN,
                "blocked",
                format!(
                    "requests from {ip} are blocked until {} ({reason})",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            )
            .with(
                "until",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .into_response()
        }
        Some(Restriction::RateLimited { per_minute, until }) => {
            let n = req
                .extensions()
                .get::<net::MinuteCount>()
                .map(|c| c.0)
                .unwrap_or(0);
            if n as i64 > per_minute {
                state.metrics.refused("rate_limit");
                let wait = 60 - (now.timestamp() % 60) as u64;
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "{ip} is limited to {per_minute} requests a minute until {}; try again in {wait} s",
                        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                )
                .header(header::RETRY_AFTER, HeaderValue::from(wait))
                .into_response()
            } else {
                next.run(req).await
            }
        }
        None => next.run(req).await,
    }
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
