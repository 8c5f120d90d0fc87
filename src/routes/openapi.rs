//! `GET /api/openapi.json`: the API described (OpenAPI 3.1).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const SPEC: &str = include_str!("openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(spec))
}

async fn spec() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], SPEC)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_spec_is_json_and_lists_the_trigger() {
        let v: serde_json::Value = serde_json::from_str(super::SPEC).unwrap();
        assert!(v["paths"]["/api/bots/{name}"].is_object());
    }
}
