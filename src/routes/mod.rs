//! The HTTP API (DESIGN §2). Each module supplies its own `router()`; they are merged here and
//! wrapped in the middleware once. Unknown routes and methods answer JSON; nothing answers 3xx.

mod admin;
pub mod bots;
mod health;
mod metrics;
pub mod middleware;
mod openapi;
mod status;

use axum::http::{Method, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::Router;
use tower::Layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::error::ApiError;
use crate::state::AppState;

/// The routes with their middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(bots::router())
        .merge(health::router())
        .merge(status::router())
        .merge(metrics::router())
        .merge(admin::router())
        .merge(openapi::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(from_fn_with_state(state.clone(), middleware::front))
        .with_state(state)
}

/// The whole application: `/x/` is served as `/x` (a trailing slash never redirects).
pub fn app(state: AppState) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router(state))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(
        "not_found",
        format!(
            "there is no route {}; the API is described at /api/openapi.json",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
