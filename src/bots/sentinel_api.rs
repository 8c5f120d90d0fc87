//! sentinel-api: the API's endpoints. Method, headers (`${ENV}` secrets), body, expected
//! status, JSON-pointer assertions, content type, a latency budget, a CORS preflight, the
//! rate-limit headers; retries with backoff before a failure counts (each a `retry_check`
//! action); success rate and p95 latency per endpoint over 1 h and 24 h.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::web::{self, cert_finding};
use super::{check, parse_config, Bot, Recheck};
use crate::actions::http_hook::HookSpec;
use crate::config::Config;
use crate::engine::{expand_env, BotAction, BotError, FindingDraft, PassContext};
use crate::error::FieldError;
use crate::probes::checks::{
    check_assertions, content_type_matches, cors_problems, rate_limit, Assertion,
};
use crate::probes::{host_key, run_all, DnsCache, Limits, Outcome, Request};
use crate::store::Severity;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Retries of a failed check (no answer, 5xx, 429) before it counts.
    #[serde(default = "two")]
    pub retries: u32,
    /// The first wait between tries; it doubles each time.
    #[serde(default = "half_second")]
    pub retry_backoff_ms: u64,
    #[serde(default = "fifty")]
    pub concurrency: usize,
    #[serde(default = "ten")]
    pub per_host_limit: usize,
    #[serde(default = "five")]
    pub max_redirects: u32,
    #[serde(default = "ten_seconds")]
    pub timeout_ms: u64,
    /// Warn when the rate-limit budget left falls under this share of the limit.
    #[serde(default = "ten_percent")]
    pub rate_limit_warn_percent: f64,
    #[serde(default = "thirty")]
    pub cert_warning_days: f64,
    #[serde(default = "seven")]
    pub cert_critical_days: f64,
    #[serde(default)]
    pub purge_hook: Option<HookSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub name: String,
    #[serde(default = "get")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON value is sent as JSON; a string as it is.
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default = "ok_status")]
    pub expected_status: u16,
    #[serde(default)]
    pub assertions: Vec<Assertion>,
    /// e.g. `application/json`; parameters such as charset are ignored.
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub latency_budget_ms: Option<f64>,
    /// Runs a CORS preflight as a browser on this origin would.
    #[serde(default)]
    pub cors_origin: Option<String>,
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
}

fn two() -> u32 {
    2
}
fn half_second() -> u64 {
    500
}
fn fifty() -> usize {
    50
}
fn ten() -> usize {
    10
}
fn five() -> u32 {
    5
}
fn ten_seconds() -> u64 {
    10_000
}
fn ten_percent() -> f64 {
    10.0
}
fn thirty() -> f64 {
    30.0
}
fn seven() -> f64 {
    7.0
}
fn get() -> String {
    "GET".into()
}
fn ok_status() -> u16 {
    200
}

#[derive(Default)]
pub struct SentinelApi;

#[async_trait]
impl Bot for SentinelApi {
    fn name(&self) -> &'static str {
        "sentinel-api"
    }

    fn display_name(&self) -> &'static str {
        "Sentinel API"
    }

    fn description(&self) -> &'static str {
        "API endpoints: status, JSON assertions, latency budget, CORS, rate limits, success rate and p95"
    }

    fn default_config(&self, _env: &Config) -> Value {
        json!({
            "endpoints": [],
            "retries": two(),
            "retry_backoff_ms": half_second(),
            "concurrency": fifty(),
            "per_host_limit": ten(),
            "max_redirects": five(),
            "timeout_ms": ten_seconds(),
            "rate_limit_warn_percent": ten_percent(),
            "cert_warning_days": thirty(),
            "cert_critical_days": seven(),
            "purge_hook": null,
        })
    }

    fn validate_config(&self, config: &Value) -> Vec<FieldError> {
        let c: ApiConfig = match parse_config(config) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut errors = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, e) in c.endpoints.iter().enumerate() {
            let at = |f: &str| format!("endpoints[{i}].{f}");
            web::check_name(&mut errors, &at("name"), &e.name, &mut names);
            check::http_url(&mut errors, &at("url"), &e.url);
            if Method::from_bytes(e.method.as_bytes()).is_err()
                || e.method.to_ascii_uppercase() != e.method
            {
                errors.push(FieldError::new(
                    at("method"),
                    "must be an HTTP method in capitals, e.g. GET or POST",
                ));
            }
            for name in e.headers.keys() {
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    errors.push(FieldError::new(
                        at("headers"),
                        format!("{name:?} is not a header name"),
                    ));
                }
            }
            check::http_status(&mut errors, &at("expected_status"), e.expected_status);
            for (j, a) in e.assertions.iter().enumerate() {
                errors.extend(a.validate(&format!("endpoints[{i}].assertions[{j}]")));
            }
            if let Some(b) = e.latency_budget_ms {
                check::non_negative(&mut errors, &at("latency_budget_ms"), b);
            }
            if let Some(o) = &e.cors_origin {
                let ok =
                    reqwest::Url::parse(o).is_ok_and(|u| u.host().is_some() && u.path() == "/");
                if !ok {
                    errors.push(FieldError::new(
                        at("cors_origin"),
                        "must be an origin such as https://app.example.com",
                    ));
                }
            }
            if let Some(ms) = e.timeout_ms {
                check::timeout_ms(&mut errors, &at("timeout_ms"), ms);
            }
            if e.retries.is_some_and(|r| r > 10) {
                errors.push(FieldError::new(at("retries"), "must be at most 10"));
            }
        }
        if c.retries > 10 {
            errors.push(FieldError::new("retries", "must be at most 10"));
        }
        if c.retry_backoff_ms > 60_000 {
            errors.push(FieldError::new(
                "retry_backoff_ms",
                "must be at most 60000 milliseconds",
            ));
        }
        web::check_fan_out(
            &mut errors,
            c.concurrency,
            c.per_host_limit,
            c.max_redirects,
            c.timeout_ms,
        );
        check::percent(
            &mut errors,
            "rate_limit_warn_percent",
            c.rate_limit_warn_percent,
        );
        check::non_negative(&mut errors, "cert_warning_days", c.cert_warning_days);
        check::non_negative(&mut errors, "cert_critical_days", c.cert_critical_days);
        if let Some(h) = &c.purge_hook {
            errors.extend(h.validate("purge_hook"));
        }
        errors
    }

    async fn run(&self, ctx: &PassContext) -> Result<(), BotError> {
        let c: ApiConfig = ctx.config_as()?;
        if c.endpoints.is_empty() {
            ctx.note("no endpoints configured: add endpoints to sentinel-api's config");
            return Ok(());
        }
        // Read while the first probes are under way; every check awaits the same read.
        let history = web::shared_history(ctx, chrono::Duration::hours(24));
        let dns = DnsCache::default();
        let limits = Limits {
            concurrency: c.concurrency,
            per_host: c.per_host_limit,
        };
        run_all(
            &c.endpoints,
            limits,
            |e| host_key(&e.url),
            |e| {
                let history = history.clone();
                let (c, dns) = (&c, &dns);
                async move { check_endpoint(ctx, c, e, dns, Some(history)).await }
            },
        )
        .await;
        history.await.map(|_| ())
    }

    async fn recheck(
        &self,
        ctx: &PassContext,
        finding: &FindingDraft,
    ) -> Result<Recheck, BotError> {
        let c: ApiConfig = ctx.config_as()?;
        let Some(e) = c
            .endpoints
            .iter()
            .find(|e| finding.component == format!("endpoint:{}", e.name))
        else {
            return Ok(Recheck::Unknown(
                "that endpoint is no longer configured".into(),
            ));
        };
        let fresh = ctx.fresh();
        check_endpoint(&fresh, &c, e, &DnsCache::default(), None).await;
        Ok(if fresh.has_finding(&finding.fingerprint()) {
            Recheck::Present
        } else {
            Recheck::Gone
        })
    }
}

fn build_request(e: &Endpoint, timeout: Duration, max_redirects: u32) -> Result<Request, String> {
    let url = web::probe_url(&e.url)?;
    let method = Method::from_bytes(e.method.as_bytes()).map_err(|err| err.to_string())?;
    let mut headers = Vec::new();
    for (k, v) in &e.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|err| err.to_string())?;
        let value = HeaderValue::from_str(&expand_env(v)?)
            .map_err(|_| format!("header {k} has an invalid value"))?;
        headers.push((name, value));
    }
    let body = match &e.body {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(bytes::Bytes::from(expand_env(s)?)),
        Some(v) => {
            if !e
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push((
                    HeaderName::from_static("content-type"),
                    HeaderValue::from_static("application/json"),
                ));
            }
            Some(bytes::Bytes::from(v.to_string()))
        }
    };
    Ok(Request {
        method,
        url,
        headers,
        body,
        timeout,
        max_redirects,
        body_limit: crate::probes::http::DEFAULT_BODY_LIMIT,
    })
}

/// A failure worth retrying: no answer, a 5xx, or 429.
fn transient(outcome: &Outcome) -> Option<String> {
    match outcome {
        Err(e) => Some(format!("{}: {}", e.kind.as_str(), e.message)),
        Ok(r) if r.status >= 500 || r.status == 429 => Some(format!("answered {}", r.status)),
        Ok(_) => None,
    }
}

async fn check_endpoint(
    ctx: &PassContext,
    c: &ApiConfig,
    e: &Endpoint,
    dns: &DnsCache,
    history: Option<web::SharedHistory<'_>>,
) {
    let component = format!("endpoint:{}", e.name);
    let per_try = Duration::from_millis(e.timeout_ms.unwrap_or(c.timeout_ms));
    let retries = e.retries.unwrap_or(c.retries);
    let mut tries = Vec::new();
    let mut outcome;
    let mut attempt = 0;
    loop {
        let timeout = per_try.min(ctx.remaining());
        if timeout.is_zero() {
            return;
        }
        let req = match build_request(e, timeout, c.max_redirects) {
            Ok(r) => r,
            Err(why) => {
                ctx.note(format!("{}: {why}", e.name));
                return;
            }
        };
        outcome = ctx.prober.fetch(&req, dns).await;
        let Some(why) = transient(&outcome) else {
            break;
        };
        if attempt >= retries {
            break;
        }
        attempt += 1;
        let wait = Duration::from_millis(
            c.retry_backoff_ms
                .saturating_mul(1 << (attempt - 1).min(10)),
        );
        if wait + per_try.min(Duration::from_secs(1)) >= ctx.remaining() {
            break; // no time left for another try
        }
        tries.push((attempt, why, wait));
        tokio::time::sleep(wait).await;
    }
    let failed_finally = transient(&outcome).is_some();
    for (n, why, wait) in &tries {
        ctx.action(BotAction {
            action_type: "retry_check".into(),
            description: format!(
                "{}: try {} of {} failed ({why}); retried after {} ms",
                e.name,
                n,
                retries + 1,
                wait.as_millis()
            ),
            // A retry worked when the try after it succeeded: only the last, and only on recovery.
            success: !failed_finally && *n == tries.len() as u32,
            error: Some(why.clone()),
            fingerprint: failed_finally.then(|| format!("api/{component}/down")),
            metadata: json!({"endpoint": e.name, "try": n, "wait_ms": wait.as_millis() as u64}),
        });
    }
    if !tries.is_empty() && !failed_finally {
        ctx.note(format!(
            "{} recovered after {} retr{}",
            e.name,
            tries.len(),
            if tries.len() == 1 { "y" } else { "ies" }
        ));
    }

    let now = ctx.now();
    let down = if e.critical {
        Severity::Critical
    } else {
        Severity::Error
    };
    let mut findings = Vec::new();
    let mut up = false;
    let mut facts = serde_json::Map::new();
    match &outcome {
        Err(err) => {
            findings.push(
                FindingDraft::new(down, "api", "Endpoint unreachable")
                    .component(&component)
                    .key("down")
                    .description(format!(
                        "{} {} {} is unreachable after {} tr{}: {}",
                        e.name,
                        e.method,
                        e.url,
                        tries.len() + 1,
                        if tries.is_empty() { "y" } else { "ies" },
                        err.message
                    ))
                    .metadata(json!({"kind": err.kind.as_str(), "tries": tries.len() + 1})),
            );
        }
        Ok(r) => {
            up = r.status == e.expected_status;
            if r.status >= 500 {
                findings.push(
                    FindingDraft::new(down, "api", "Server error")
                        .component(&component)
                        .key("down")
                        .description(format!(
                            "{} {} {} answered {} after {} tr{}",
                            e.name,
                            e.method,
                            e.url,
                            r.status,
                            tries.len() + 1,
                            if tries.is_empty() { "y" } else { "ies" }
                        ))
                        .metadata(json!({"status": r.status, "tries": tries.len() + 1})),
                );
            } else if r.status != e.expected_status {
                findings.push(
                    FindingDraft::new(Severity::Error, "api", "Unexpected status")
                        .component(&component)
                        .key("status")
                        .description(format!(
                            "{} answered {}, expected {}",
                            e.name, r.status, e.expected_status
                        ))
                        .metadata(json!({"status": r.status, "expected": e.expected_status})),
                );
            }
            if let Some(want) = &e.content_type {
                if !content_type_matches(r.content_type(), want) {
                    findings.push(
                        FindingDraft::new(Severity::Error, "contract", "Wrong content type")
                            .component(&component)
                            .key("content-type")
                            .description(format!(
                                "{} answered Content-Type {:?}, expected {want}",
                                e.name,
                                r.content_type().unwrap_or("(none)")
                            )),
                    );
                }
            }
            if !e.assertions.is_empty() {
                let failures = if r.body_truncated {
                    vec![format!(
                        "the body is over {} bytes; assertions need the whole document",
                        r.body.len()
                    )]
                } else {
                    match serde_json::from_slice::<Value>(&r.body) {
                        Ok(doc) => check_assertions(&doc, &e.assertions)
                            .iter()
                            .map(|f| f.to_string())
                            .collect(),
                        Err(err) => vec![format!("the body is not JSON ({err})")],
                    }
                };
                if !failures.is_empty() {
                    findings.push(
                        FindingDraft::new(
                            Severity::Error,
                            "contract",
                            "Response assertions failed",
                        )
                        .component(&component)
                        .key("assertions")
                        .description(format!("{}: {}", e.name, failures.join("; ")))
                        .metadata(json!({"failures": failures})),
                    );
                }
                facts.insert("assertions_failed".into(), json!(failures.len()));
            }
            if let Some(budget) = e.latency_budget_ms {
                if r.timings.total_ms > budget {
                    findings.push(
                        FindingDraft::new(Severity::Warning, "performance", "Over latency budget")
                            .component(&component)
                            .key("latency")
                            .description(format!(
                                "{} took {:.0} ms (budget {budget} ms)",
                                e.name, r.timings.total_ms
                            ))
                            .metadata(json!({"total_ms": r.timings.total_ms, "budget_ms": budget})),
                    );
                }
            }
            if let Some(rl) = rate_limit(&r.headers) {
                facts.insert("rate_limit".into(), json!(rl));
                let low = rl.remaining == 0
                    || rl
                        .remaining_percent()
                        .is_some_and(|p| p < c.rate_limit_warn_percent);
                if low {
                    findings.push(
                        FindingDraft::new(
                            Severity::Warning,
                            "rate-limit",
                            "Rate limit nearly exhausted",
                        )
                        .component(&component)
                        .key("rate-limit")
                        .description(format!(
                            "{}: {} requests left of {} (warn under {}%)",
                            e.name,
                            rl.remaining,
                            rl.limit
                                .map(|l| l.to_string())
                                .unwrap_or_else(|| "an unknown limit".into()),
                            c.rate_limit_warn_percent
                        ))
                        .metadata(json!(rl)),
                    );
                }
            }
        }
    }
    findings.extend(cert_finding(
        &outcome,
        now,
        c.cert_warning_days,
        c.cert_critical_days,
        &component,
        &e.name,
    ));

    if let Some(origin) = &e.cors_origin {
        let problems = preflight(ctx, e, origin, per_try, dns).await;
        facts.insert("cors_problems".into(), json!(problems));
        if !problems.is_empty() {
            findings.push(
                FindingDraft::new(Severity::Warning, "cors", "CORS preflight failed")
                    .component(&component)
                    .key("cors")
                    .description(format!("{} from {origin}: {}", e.name, problems.join("; ")))
                    .metadata(json!({"origin": origin, "problems": problems})),
            );
        }
    }

    // The history was read while this probe ran.
    let history = match history {
        Some(read) => read.await.ok(),
        None => None,
    };
    let latency = outcome.as_ref().ok().map(|r| r.timings.total_ms);
    if let Some(history) = history.as_deref() {
        let h1 = web::window_with(
            history,
            &e.name,
            now,
            chrono::Duration::hours(1),
            up,
            latency,
        );
        let h24 = web::window_with(
            history,
            &e.name,
            now,
            chrono::Duration::hours(24),
            up,
            latency,
        );
        let mut s = web::summary(&outcome, now);
        s["url"] = json!(e.url);
        s["method"] = json!(e.method);
        s["up"] = json!(up);
        s["tries"] = json!(tries.len() + 1);
        s["last_hour"] = h1.summary();
        s["last_24_hours"] = h24.summary();
        for (k, v) in facts {
            s[k] = v;
        }
        ctx.data_in("endpoints", &e.name, s);
    }
    ctx.target(web::observation(&e.name, &outcome, up, &e.url));
    for f in findings {
        ctx.finding(f);
    }
    ctx.check(&component);
}

/// A browser's preflight for this endpoint from `origin`; what is wrong with the answer.
async fn preflight(
    ctx: &PassContext,
    e: &Endpoint,
    origin: &str,
    timeout: Duration,
    dns: &DnsCache,
) -> Vec<String> {
    let url = match web::probe_url(&e.url) {
        Ok(u) => u,
        Err(why) => return vec![why],
    };
    // Headers a browser would have to ask permission for.
    let simple = ["accept", "accept-language", "content-language"];
    let mut requested: Vec<String> = e
        .headers
        .keys()
        .map(|k| k.to_ascii_lowercase())
        .filter(|k| !simple.contains(&k.as_str()))
        .collect();
    if e.body
        .as_ref()
        .is_some_and(|b| !b.is_string() && !b.is_null())
        && !requested.iter().any(|h| h == "content-type")
    {
        requested.push("content-type".into());
    }
    requested.sort();
    let mut headers = vec![
        (
            HeaderName::from_static("origin"),
            HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("null")),
        ),
        (
            HeaderName::from_static("access-control-request-method"),
            HeaderValue::from_str(&e.method).unwrap_or(HeaderValue::from_static("GET")),
        ),
    ];
    if !requested.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
            headers.push((HeaderName::from_static("access-control-request-headers"), v));
        }
    }
    let req = Request {
        method: Method::OPTIONS,
        url,
        headers,
        body: None,
        timeout: timeout.min(ctx.remaining()),
        max_redirects: 0,
        body_limit: 64 * 1024,
    };
    match ctx.prober.fetch(&req, dns).await {
        Ok(r) => cors_problems(r.status, &r.headers, origin, &e.method, &requested),
        Err(err) => vec![format!("the preflight got no answer: {}", err.message)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked_field_by_field() {
        let ok = json!({"endpoints": [{"name": "health", "url": "https://api.example.com/health",
            "headers": {"Authorization": "Bearer ${API_TOKEN}"},
            "assertions": [{"pointer": "/status", "equals": "ok"}], "cors_origin": "https://app.example.com"}]});
        assert_eq!(SentinelApi.validate_config(&ok), vec![]);
        let bad = json!({"endpoints": [{"name": "x", "url": "nope", "method": "get",
            "assertions": [{"pointer": "status"}], "cors_origin": "app"}], "retries": 99});
        let fields: Vec<String> = SentinelApi
            .validate_config(&bad)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "endpoints[0].url",
                "endpoints[0].method",
                "endpoints[0].assertions[0].pointer",
                "endpoints[0].assertions[0]",
                "endpoints[0].cors_origin",
                "retries"
            ]
        );
    }
}
