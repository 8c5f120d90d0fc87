//! What sentinel and sentinel-api share: a probe outcome as the report shows it, certificate
//! findings, recent target history, target state, and config checks for names and URLs.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::engine::{round1, BotError, FindingDraft, PassContext};
use crate::error::FieldError;
use crate::probes::{outcome_tls, Outcome, TlsInfo};
use crate::store::{Severity, TargetObservation, TargetStat};
use crate::targets::{window, Window};

/// A probe outcome for the report: status, timings, redirects, certificate, error.
pub fn summary(outcome: &Outcome, now: DateTime<Utc>) -> Value {
    let tls = |t: &Option<TlsInfo>| {
        t.as_ref().map(|t| {
            json!({
                "verified": t.verified,
                "leaf_expires_at": t.leaf_not_after,
                "earliest_expiry_in_chain": t.earliest_not_after,
                "days_left": t.days_left(now).map(round1),
                "chain_length": t.chain_length,
            })
        })
    };
    match outcome {
        Ok(r) => json!({
            "ok": true,
            "status": r.status,
            "final_url": r.final_url.as_str(),
            "redirects": r.redirects,
            "timings": r.timings,
            "content_type": r.content_type(),
            "body_bytes": r.body.len(),
            "body_truncated": r.body_truncated,
            "tls": tls(&r.tls),
        }),
        Err(e) => json!({
            "ok": false,
            "error": {"kind": e.kind.as_str(), "message": e.message},
            "redirects": e.redirects,
            "timings": e.timings,
            "tls": tls(&e.tls),
        }),
    }
}

/// A finding when the earliest expiry in the certificate chain seen is near or past.
pub fn cert_finding(
    outcome: &Outcome,
    now: DateTime<Utc>,
    warning_days: f64,
    critical_days: f64,
    component: &str,
    name: &str,
) -> Option<FindingDraft> {
    let tls = outcome_tls(outcome)?;
    let days = tls.days_left(now)?;
    let expiry = tls.earliest_not_after?;
    let (severity, title) = if days < 0.0 {
        (Severity::Critical, "TLS certificate expired")
    } else if days < critical_days {
        (Severity::Critical, "TLS certificate expiring")
    } else if days < warning_days {
        (Severity::Warning, "TLS certificate expiring")
    } else {
        return None;
    };
    let when = if days < 0.0 {
        format!("expired {:.1} days ago", -days)
    } else {
        format!("expires in {days:.1} days")
    };
    Some(
        FindingDraft::new(severity, "tls", title)
            .component(component)
            .key("cert")
            .description(format!(
                "{name}: the certificate chain {when} ({}); warning under {warning_days} days, critical under {critical_days}",
                expiry.to_rfc3339()
            ))
            .metadata(json!({"days_left": round1(days), "expires_at": expiry})),
    )
}

/// Target history by target, shared by every check of a pass.
pub type History = std::sync::Arc<HashMap<String, Vec<TargetStat>>>;

/// History being read: cloned into every check, awaited once its probe is done.
pub type SharedHistory<'a> =
    futures_util::future::Shared<futures_util::future::BoxFuture<'a, Result<History, BotError>>>;

/// The bot's history read once, while the first probes are under way.
pub fn shared_history(ctx: &PassContext, span: Duration) -> SharedHistory<'_> {
    use futures_util::FutureExt;
    async move { history(ctx, span).await.map(std::sync::Arc::new) }
        .boxed()
        .shared()
}

/// The bot's target history since `span` ago, by target.
pub async fn history(
    ctx: &PassContext,
    span: Duration,
) -> Result<HashMap<String, Vec<TargetStat>>, BotError> {
    let now = ctx.now();
    let since = now - span - Duration::hours(1);
    let stats = ctx
        .store
        .target_stats(Some(&ctx.bot), None, since)
        .await
        .map_err(|e| BotError(format!("target history could not be read: {e}")))?;
    let mut by_target: HashMap<String, Vec<TargetStat>> = HashMap::new();
    for s in stats {
        by_target.entry(s.target.clone()).or_default().push(s);
    }
    Ok(by_target)
}

/// The window of a target's history, with this pass's check added.
pub fn window_with(
    history: &HashMap<String, Vec<TargetStat>>,
    target: &str,
    now: DateTime<Utc>,
    span: Duration,
    ok: bool,
    latency_ms: Option<f64>,
) -> Window {
    let rows: Vec<&TargetStat> = history
        .get(target)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let mut w = window(&rows, now, span);
    w.add_check(ok, latency_ms);
    w
}

/// The target's state for this pass.
pub fn observation(target: &str, outcome: &Outcome, up: bool, url: &str) -> TargetObservation {
    match outcome {
        Ok(r) => TargetObservation {
            target: target.to_string(),
            up,
            status_code: Some(r.status as i64),
            latency_ms: Some(r.timings.total_ms),
            error: None,
            cert_expires_at: r.tls.as_ref().and_then(|t| t.earliest_not_after),
            metadata: json!({"url": url, "final_url": r.final_url.as_str()}),
        },
        Err(e) => TargetObservation {
            target: target.to_string(),
            up: false,
            status_code: None,
            latency_ms: None,
            error: Some(format!("{}: {}", e.kind.as_str(), e.message)),
            cert_expires_at: e.tls.as_ref().and_then(|t| t.earliest_not_after),
            metadata: json!({"url": url}),
        },
    }
}

/// A target or endpoint name: used in paths and fingerprints.
pub fn check_name(
    errors: &mut Vec<FieldError>,
    field: &str,
    name: &str,
    seen: &mut std::collections::HashSet<String>,
) {
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        errors.push(FieldError::new(
            field,
            "must be 1 to 100 letters, digits, - _ or .",
        ));
    } else if !seen.insert(name.to_string()) {
        errors.push(FieldError::new(field, format!("{name:?} is used twice")));
    }
}

/// The settings both bots probe with: probes at once, per host, redirects, default timeout.
pub fn check_fan_out(
    errors: &mut Vec<FieldError>,
    concurrency: usize,
    per_host_limit: usize,
    max_redirects: u32,
    timeout_ms: u64,
) {
    if concurrency == 0 || concurrency > 1000 {
        errors.push(FieldError::new("concurrency", "must be from 1 to 1000"));
    }
    if per_host_limit == 0 {
        errors.push(FieldError::new("per_host_limit", "must be at least 1"));
    }
    if max_redirects > 20 {
        errors.push(FieldError::new("max_redirects", "must be at most 20"));
    }
    crate::bots::check::timeout_ms(errors, "timeout_ms", timeout_ms);
}

/// The URL to probe, with `${ENV}` expanded.
pub fn probe_url(raw: &str) -> Result<reqwest::Url, String> {
    let expanded = crate::engine::expand_env(raw)?;
    reqwest::Url::parse(&expanded).map_err(|e| format!("{raw:?} is not a URL: {e}"))
}
