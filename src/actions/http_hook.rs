//! `http_hook`: one HTTP request to a URL of the operator's (a cache purge, a redeploy hook),
//! with `${ENV}` secrets in its URL, headers and body expanded only when it is sent. Success is
//! a 2xx answer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, ActionContext};
use crate::bots::check;
use crate::engine::expand_env;
use crate::error::FieldError;

/// An HTTP request to make; shared by `http_hook` and the bots' `purge_hook`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    #[serde(default = "post")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "ten_seconds")]
    pub timeout_ms: u64,
}

fn post() -> String {
    "POST".into()
}

fn ten_seconds() -> u64 {
    10_000
}

impl HookSpec {
    pub fn validate(&self, field: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&self.method.as_str()) {
            errors.push(FieldError::new(
                format!("{field}.method"),
                "must be GET, POST, PUT, PATCH or DELETE",
            ));
        }
        check::http_url(&mut errors, &format!("{field}.url"), &self.url);
        for name in self.headers.keys() {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(FieldError::new(
                    format!("{field}.headers"),
                    format!("{name:?} is not a header name"),
                ));
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            errors.push(FieldError::new(
                format!("{field}.timeout_ms"),
                "must be from 1 to 60000 milliseconds",
            ));
        }
        errors
    }

    /// Sends it; `Ok` says what answered.
    pub async fn call(&self, http: &reqwest::Client) -> Result<String, String> {
        let url = expand_env(&self.url)?;
        let method =
            reqwest::Method::from_bytes(self.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = http
            .request(method, &url)
            .timeout(Duration::from_millis(self.timeout_ms));
        for (k, v) in &self.headers {
            req = req.header(k, expand_env(v)?);
        }
        if let Some(body) = &self.body {
            req = req.body(expand_env(body)?);
        }
        let started = Instant::now();
        let shown = redact_query(&url);
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{} {shown} failed: {}", self.method, without_url(&e)))?;
        let status = resp.status();
        let took = started.elapsed().as_millis();
        if status.is_success() {
            Ok(format!(
                "{} {shown} answered {} in {took} ms",
                self.method,
                status.as_u16()
            ))
        } else {
            Err(format!(
                "{} {shown} answered {} in {took} ms",
                self.method,
                status.as_u16()
            ))
        }
    }
}

/// The URL without its query string (which may carry a token).
fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = crate::error::chain(e);
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "");
    }
    s.trim().trim_end_matches(['(', ')']).trim().to_string()
}

pub struct HttpHook;

#[async_trait]
impl Action for HttpHook {
    fn name(&self) -> &'static str {
        "http_hook"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        match crate::bots::parse_config::<HookSpec>(params) {
            Ok(spec) => spec
                .validate("")
                .into_iter()
                .map(|e| FieldError::new(e.field.trim_start_matches('.'), e.problem))
                .collect(),
            Err(e) => e,
        }
    }

    async fn apply(&self, cx: &ActionContext<'_>, params: &Value) -> Result<String, String> {
        let spec: HookSpec = serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
        spec.call(&cx.pass.http).await
    }
}
