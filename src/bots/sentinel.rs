//! sentinel: the site's pages. For each target — `SITE_URL` with `SITE_CRITICAL_PATHS` by
//! default — status, response time against the SLA (2 s) and "slow" (5 s), a keyword or
//! pattern, the error rate over the last hour, and the TLS certificate's days left. Its
//! auto-fix is the purge hook on a 5xx (`purge_cache` in the knowledge base), then a re-check.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::web::{self, cert_finding};
use super::{check, parse_config, Bot, Recheck};
use crate::actions::http_hook::HookSpec;
use crate::config::Config;
use crate::engine::{round1, BotError, FindingDraft, PassContext};
use crate::error::FieldError;
use crate::probes::checks::BodyMatch;
use crate::probes::{host_key, run_all, DnsCache, Limits, Outcome, Request};
use crate::store::Severity;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Probes at once, overall and per host.
    #[serde(default = "fifty")]
    pub concurrency: usize,
    #[serde(default = "ten")]
    pub per_host_limit: usize,
    #[serde(default = "five")]
    pub max_redirects: u32,
    /// A target's timeout unless it sets its own.
    #[serde(default = "ten_seconds")]
    pub timeout_ms: u64,
    /// The error rate counts once the last hour holds this many checks.
    #[serde(default = "ten_checks")]
    pub min_checks_for_rate: i64,
    /// Called by the `purge_cache` action on a 5xx.
    #[serde(default)]
    pub purge_hook: Option<HookSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub url: String,
    #[serde(default = "ok_status")]
    pub expected_status: u16,
    /// Text that must appear in the first MiB of the page.
    #[serde(default)]
    pub keyword: Option<String>,
    /// Or a regular expression that must match it.
    #[serde(default)]
    pub regex: Option<String>,
    /// A critical target down is a critical finding (else an error).
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default = "sla")]
    pub sla_ms: f64,
    #[serde(default = "slow")]
    pub slow_ms: f64,
    #[serde(default = "one")]
    pub error_rate_warning_percent: f64,
    #[serde(default = "five_f")]
    pub error_rate_alert_percent: f64,
    #[serde(default = "thirty")]
    pub cert_warning_days: f64,
    #[serde(default = "seven")]
    pub cert_critical_days: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            sla_ms: sla(),
            slow_ms: slow(),
            error_rate_warning_percent: one(),
            error_rate_alert_percent: five_f(),
            cert_warning_days: thirty(),
            cert_critical_days: seven(),
        }
    }
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
fn ten_checks() -> i64 {
    10
}
fn ok_status() -> u16 {
    200
}
fn sla() -> f64 {
    2000.0
}
fn slow() -> f64 {
    5000.0
}
fn one() -> f64 {
    1.0
}
fn five_f() -> f64 {
    5.0
}
fn thirty() -> f64 {
    30.0
}
fn seven() -> f64 {
    7.0
}

#[derive(Default)]
pub struct Sentinel;

/// A name for a default target from its path: `/` → `home`, `/docs/api` → `docs-api`.
fn name_for(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "home".into()
    } else {
        trimmed
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }
}

#[async_trait]
impl Bot for Sentinel {
    fn name(&self) -> &'static str {
        "sentinel"
    }

    fn display_name(&self) -> &'static str {
        "Sentinel"
    }

    fn description(&self) -> &'static str {
        "Site pages: status, response time against the SLA, keyword, error rate, TLS certificate"
    }

    fn default_config(&self, env: &Config) -> Value {
        let targets: Vec<Target> = match &env.site_url {
            None => Vec::new(),
            Some(site) => env
                .site_critical_paths
                .iter()
                .map(|p| Target {
                    name: name_for(p),
                    url: format!("{site}{p}"),
                    expected_status: 200,
                    keyword: None,
                    regex: None,
                    critical: true,
                    timeout_ms: None,
                })
                .collect(),
        };
        json!({
            "targets": targets,
            "thresholds": Thresholds::default(),
            "concurrency": fifty(),
            "per_host_limit": ten(),
            "max_redirects": five(),
            "timeout_ms": ten_seconds(),
            "min_checks_for_rate": ten_checks(),
            "purge_hook": null,
        })
    }

    fn validate_config(&self, config: &Value) -> Vec<FieldError> {
        let c: SentinelConfig = match parse_config(config) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut errors = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, t) in c.targets.iter().enumerate() {
            let at = |f: &str| format!("targets[{i}].{f}");
            web::check_name(&mut errors, &at("name"), &t.name, &mut names);
            check::http_url(&mut errors, &at("url"), &t.url);
            check::http_status(&mut errors, &at("expected_status"), t.expected_status);
            if t.keyword.is_some() && t.regex.is_some() {
                errors.push(FieldError::new(
                    at("regex"),
                    "give a keyword or a regex, not both",
                ));
            }
            if let Some(r) = &t.regex {
                if let Err(e) = crate::engine::heal::compile_pattern(r) {
                    errors.push(FieldError::new(
                        at("regex"),
                        format!("not a usable regex: {e}"),
                    ));
                }
            }
            if let Some(ms) = t.timeout_ms {
                check::timeout_ms(&mut errors, &at("timeout_ms"), ms);
            }
        }
        let t = &c.thresholds;
        check::non_negative(&mut errors, "thresholds.sla_ms", t.sla_ms);
        check::non_negative(&mut errors, "thresholds.slow_ms", t.slow_ms);
        check::percent(
            &mut errors,
            "thresholds.error_rate_warning_percent",
            t.error_rate_warning_percent,
        );
        check::percent(
            &mut errors,
            "thresholds.error_rate_alert_percent",
            t.error_rate_alert_percent,
        );
        check::non_negative(
            &mut errors,
            "thresholds.cert_warning_days",
            t.cert_warning_days,
        );
        check::non_negative(
            &mut errors,
            "thresholds.cert_critical_days",
            t.cert_critical_days,
        );
        web::check_fan_out(
            &mut errors,
            c.concurrency,
            c.per_host_limit,
            c.max_redirects,
            c.timeout_ms,
        );
        if let Some(h) = &c.purge_hook {
            errors.extend(h.validate("purge_hook"));
        }
        errors
    }

    async fn run(&self, ctx: &PassContext) -> Result<(), BotError> {
        let c: SentinelConfig = ctx.config_as()?;
        if c.targets.is_empty() {
            ctx.note("no targets configured: set SITE_URL (and SITE_CRITICAL_PATHS), or targets in sentinel's config");
            return Ok(());
        }
        // Read while the first probes are under way; every check awaits the same read.
        let history = web::shared_history(ctx, chrono::Duration::hours(1));
        let dns = DnsCache::default();
        let limits = Limits {
            concurrency: c.concurrency,
            per_host: c.per_host_limit,
        };
        run_all(
            &c.targets,
            limits,
            |t| host_key(&t.url),
            |t| {
                let history = history.clone();
                let (c, dns) = (&c, &dns);
                async move { check_target(ctx, c, t, dns, Some(history)).await }
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
        let c: SentinelConfig = ctx.config_as()?;
        let Some(t) = c
            .targets
            .iter()
            .find(|t| finding.component == format!("target:{}", t.name))
        else {
            return Ok(Recheck::Unknown(
                "that target is no longer configured".into(),
            ));
        };
        let fresh = ctx.fresh();
        check_target(&fresh, &c, t, &DnsCache::default(), None).await;
        Ok(if fresh.has_finding(&finding.fingerprint()) {
            Recheck::Present
        } else {
            Recheck::Gone
        })
    }
}

/// Probes one target and reports what it found into the pass.
async fn check_target(
    ctx: &PassContext,
    c: &SentinelConfig,
    t: &Target,
    dns: &DnsCache,
    history: Option<web::SharedHistory<'_>>,
) {
    let component = format!("target:{}", t.name);
    let timeout = Duration::from_millis(t.timeout_ms.unwrap_or(c.timeout_ms)).min(ctx.remaining());
    if timeout.is_zero() {
        return;
    }
    let outcome: Outcome = match web::probe_url(&t.url) {
        Ok(url) => {
            let mut req = Request::get(url, timeout);
            req.max_redirects = c.max_redirects;
            ctx.prober.fetch(&req, dns).await
        }
        Err(e) => {
            ctx.note(format!("{}: {e}", t.name));
            return;
        }
    };
    let now = ctx.now();
    let th = &c.thresholds;
    let down = if t.critical {
        Severity::Critical
    } else {
        Severity::Error
    };
    let mut findings = Vec::new();
    let up;
    match &outcome {
        Err(e) => {
            up = false;
            findings.push(
                FindingDraft::new(down, "availability", "Site unreachable")
                    .component(&component)
                    .key("down")
                    .description(format!(
                        "{} ({}) is unreachable: {}",
                        t.name, t.url, e.message
                    ))
                    .metadata(json!({"kind": e.kind.as_str(), "url": t.url})),
            );
        }
        Ok(r) => {
            up = r.status == t.expected_status;
            if r.status >= 500 {
                findings.push(
                    FindingDraft::new(down, "availability", "Server error")
                        .component(&component)
                        .key("down")
                        .description(format!(
                            "{} ({}) answered {}",
                            t.name, r.final_url, r.status
                        ))
                        .metadata(json!({"status": r.status, "url": t.url})),
                );
            } else if r.status != t.expected_status {
                findings.push(
                    FindingDraft::new(Severity::Error, "availability", "Unexpected status")
                        .component(&component)
                        .key("status")
                        .description(format!(
                            "{} ({}) answered {}, expected {}",
                            t.name, r.final_url, r.status, t.expected_status
                        ))
                        .metadata(json!({"status": r.status, "expected": t.expected_status})),
                );
            }
            let matcher = match (&t.keyword, &t.regex) {
                (Some(k), _) => Some(BodyMatch::Keyword(k.clone())),
                (None, Some(r)) => crate::engine::heal::compile_pattern(r)
                    .ok()
                    .map(BodyMatch::Regex),
                _ => None,
            };
            if let Some(m) = matcher {
                if up && !m.found_in(&r.body) {
                    let scope = if r.body_truncated {
                        "the first MiB of the page"
                    } else {
                        "the page"
                    };
                    findings.push(
                        FindingDraft::new(Severity::Error, "content", "Content check failed")
                            .component(&component)
                            .key("keyword")
                            .description(format!(
                                "{} ({}): {} is not in {scope}",
                                t.name,
                                r.final_url,
                                m.describe()
                            )),
                    );
                }
            }
            let total = r.timings.total_ms;
            if total > th.slow_ms {
                findings.push(
                    FindingDraft::new(Severity::Warning, "performance", "Slow response")
                        .component(&component)
                        .key("latency")
                        .description(format!(
                            "{} took {total:.0} ms (slow above {} ms)",
                            t.name, th.slow_ms
                        ))
                        .metadata(json!({"total_ms": total})),
                );
            } else if total > th.sla_ms {
                findings.push(
                    FindingDraft::new(Severity::Info, "performance", "Response over SLA")
                        .component(&component)
                        .key("latency")
                        .description(format!(
                            "{} took {total:.0} ms (SLA {} ms)",
                            t.name, th.sla_ms
                        ))
                        .metadata(json!({"total_ms": total})),
                );
            }
        }
    }
    findings.extend(cert_finding(
        &outcome,
        now,
        th.cert_warning_days,
        th.cert_critical_days,
        &component,
        &t.name,
    ));

    // The history was read while this probe ran.
    let history = match history {
        Some(read) => read.await.ok(),
        None => None,
    };
    // The error rate over the last hour, this check included.
    let latency = outcome.as_ref().ok().map(|r| r.timings.total_ms);
    if let Some(history) = history.as_deref() {
        let w = web::window_with(
            history,
            &t.name,
            now,
            chrono::Duration::hours(1),
            up,
            latency,
        );
        if w.checks >= c.min_checks_for_rate {
            let rate = w.failure_percent().unwrap_or(0.0);
            let severity = Severity::grade(
                rate,
                th.error_rate_warning_percent,
                th.error_rate_alert_percent,
                Severity::Error,
            );
            if let Some(severity) = severity {
                findings.push(
                    FindingDraft::new(severity, "errors", "High error rate")
                        .component(&component)
                        .key("rate")
                        .description(format!(
                            "{}: {} of {} checks failed in the last hour ({rate:.1}%; warning above {}%, alert above {}%)",
                            t.name, w.failures, w.checks, th.error_rate_warning_percent, th.error_rate_alert_percent
                        ))
                        .metadata(json!({"failure_percent": round1(rate), "checks": w.checks})),
                );
            }
        }
        ctx.data_in("targets", &t.name, {
            let mut s = web::summary(&outcome, now);
            s["url"] = json!(t.url);
            s["up"] = json!(up);
            s["last_hour"] = w.summary();
            s
        });
    }
    ctx.target(web::observation(&t.name, &outcome, up, &t.url));
    for f in findings {
        ctx.finding(f);
    }
    ctx.check(&component);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_targets_come_from_site_url() {
        let env = Config::from_lookup(&|k| match k {
            "SITE_URL" => Some("https://example.com".into()),
            "SITE_CRITICAL_PATHS" => Some("/, /pricing,/docs/api".into()),
            _ => None,
        })
        .unwrap();
        let config = Sentinel.default_config(&env);
        let names: Vec<&str> = config["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["home", "pricing", "docs-api"]);
        assert_eq!(config["targets"][1]["url"], "https://example.com/pricing");
        assert!(Sentinel.validate_config(&config).is_empty());
        let empty = Sentinel.default_config(&Config::from_lookup(&|_| None).unwrap());
        assert_eq!(empty["targets"], json!([]));
    }

    #[test]
    fn bad_configs_name_their_fields() {
        let errors =
            Sentinel.validate_config(&json!({"targets": [{"name": "home", "url": "ftp://x"}]}));
        assert_eq!(errors[0].field, "targets[0].url");
        let errors = Sentinel.validate_config(&json!({"thresholds": {"slow_ms": -1}}));
        assert_eq!(errors[0].field, "thresholds.slow_ms");
        let errors = Sentinel.validate_config(&json!({"targets": [], "colour": "red"}));
        assert!(
            errors[0].problem.contains("unknown field `colour`"),
            "{errors:?}"
        );
        let errors = Sentinel
            .validate_config(&json!({"targets": [{"name": "a b", "url": "https://x.example"}]}));
        assert_eq!(errors[0].field, "targets[0].name");
    }
}
