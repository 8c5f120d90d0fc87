//! pulse: the host and botfleet's own load. Host CPU (since the last pass), memory, load
//! average, disk of the data directory; botfleet's request count, 5xx rate and mean latency
//! since the last pass; optional activity probes (a JSON number at a URL, e.g. active users)
//! with thresholds. Its auto-fix is shedding load (through the knowledge base).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{check, parse_config, Bot, Recheck};
use crate::config::Config;
use crate::engine::{expand_env, round1, BotError, FindingDraft, PassContext};
use crate::error::FieldError;
use crate::host::{self, CpuTimes};
use crate::process::RequestSnapshot;
use crate::store::{Severity, TargetObservation};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulseConfig {
    #[serde(default)]
    pub thresholds: Thresholds,
    /// The 5xx rate and mean latency only count with at least this many requests.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// How long a re-check after a fix measures for.
    #[serde(default = "default_verify_window_ms")]
    pub verify_window_ms: u64,
    #[serde(default)]
    pub probes: Vec<Probe>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default = "default_cpu")]
    pub cpu_percent: f64,
    #[serde(default = "default_memory")]
    pub memory_percent: f64,
    #[serde(default = "default_disk")]
    pub disk_percent: f64,
    #[serde(default = "default_disk_critical")]
    pub disk_critical_percent: f64,
    #[serde(default = "default_error_rate")]
    pub error_rate_percent: f64,
    #[serde(default = "default_latency")]
    pub mean_latency_ms: f64,
    /// Load average per core above which to warn; off unless set.
    #[serde(default)]
    pub load_per_core: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            cpu_percent: default_cpu(),
            memory_percent: default_memory(),
            disk_percent: default_disk(),
            disk_critical_percent: default_disk_critical(),
            error_rate_percent: default_error_rate(),
            mean_latency_ms: default_latency(),
            load_per_core: None,
        }
    }
}

/// A number read from a JSON document at a URL, with bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON pointer (RFC 6901), e.g. `/data/active_users`; empty for the whole document.
    pub pointer: String,
    #[serde(default)]
    pub warn_above: Option<f64>,
    #[serde(default)]
    pub alert_above: Option<f64>,
    #[serde(default)]
    pub warn_below: Option<f64>,
    #[serde(default)]
    pub alert_below: Option<f64>,
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
}

fn default_cpu() -> f64 {
    80.0
}
fn default_memory() -> f64 {
    90.0
}
fn default_disk() -> f64 {
    90.0
}
fn default_disk_critical() -> f64 {
    95.0
}
fn default_error_rate() -> f64 {
    5.0
}
fn default_latency() -> f64 {
    3000.0
}
fn default_min_requests() -> u64 {
    20
}
fn default_verify_window_ms() -> u64 {
    2000
}
fn default_probe_timeout() -> u64 {
    5000
}

/// What the last pass of this process saw, so the next one can take differences.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    cpu: Option<CpuTimes>,
    requests: RequestSnapshot,
}

#[derive(Default)]
pub struct Pulse {
    last: Mutex<Option<Sample>>,
}

/// Over this gap the previous sample says little about now; take a short fresh one instead.
const STALE_SAMPLE: Duration = Duration::from_secs(15 * 60);
const FRESH_CPU_SAMPLE: Duration = Duration::from_millis(250);

#[async_trait]
impl Bot for Pulse {
    fn name(&self) -> &'static str {
        "pulse"
    }

    fn display_name(&self) -> &'static str {
        "Pulse"
    }

    fn description(&self) -> &'static str {
        "Host CPU, memory, load and disk; botfleet's own request rate, 5xx rate and latency; activity probes"
    }

    fn default_config(&self, _env: &Config) -> Value {
        json!({
            "thresholds": Thresholds::default(),
            "min_requests": default_min_requests(),
            "verify_window_ms": default_verify_window_ms(),
            "probes": [],
        })
    }

    fn validate_config(&self, config: &Value) -> Vec<FieldError> {
        let c: PulseConfig = match parse_config(config) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut errors = Vec::new();
        let t = &c.thresholds;
        check::percent(&mut errors, "thresholds.cpu_percent", t.cpu_percent);
        check::percent(&mut errors, "thresholds.memory_percent", t.memory_percent);
        check::percent(&mut errors, "thresholds.disk_percent", t.disk_percent);
        check::percent(
            &mut errors,
            "thresholds.disk_critical_percent",
            t.disk_critical_percent,
        );
        check::percent(
            &mut errors,
            "thresholds.error_rate_percent",
            t.error_rate_percent,
        );
        check::non_negative(&mut errors, "thresholds.mean_latency_ms", t.mean_latency_ms);
        if let Some(l) = t.load_per_core {
            check::non_negative(&mut errors, "thresholds.load_per_core", l);
        }
        if c.verify_window_ms == 0 || c.verify_window_ms > 60_000 {
            errors.push(FieldError::new(
                "verify_window_ms",
                "must be from 1 to 60000 milliseconds",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in c.probes.iter().enumerate() {
            let at = |f: &str| format!("probes[{i}].{f}");
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                errors.push(FieldError::new(
                    at("name"),
                    "must be letters, digits, - or _",
                ));
            } else if !names.insert(p.name.clone()) {
                errors.push(FieldError::new(
                    at("name"),
                    format!("{:?} is used by another probe", p.name),
                ));
            }
            check::http_url(&mut errors, &at("url"), &p.url);
            if !(p.pointer.is_empty() || p.pointer.starts_with('/')) {
                errors.push(FieldError::new(
                    at("pointer"),
                    "must be a JSON pointer starting with /, or empty",
                ));
            }
            if [p.warn_above, p.alert_above, p.warn_below, p.alert_below]
                .iter()
                .all(Option::is_none)
            {
                errors.push(FieldError::new(at("warn_above"), "a probe needs at least one of warn_above, alert_above, warn_below, alert_below"));
            }
            if p.timeout_ms == 0 || p.timeout_ms > 60_000 {
                errors.push(FieldError::new(
                    at("timeout_ms"),
                    "must be from 1 to 60000 milliseconds",
                ));
            }
        }
        errors
    }

    async fn run(&self, ctx: &PassContext) -> Result<(), BotError> {
        let c: PulseConfig = ctx.config_as()?;
        let t = &c.thresholds;
        let now_requests = ctx.process.requests.snapshot();
        let previous = *self.last.lock().unwrap();
        let previous = previous.filter(|p| p.at.elapsed() < STALE_SAMPLE);

        // CPU: the busy share since the last pass, else over a short fresh sample.
        let (cpu_now, cpu_percent, window) = match previous.and_then(|p| p.cpu.map(|c| (p.at, c))) {
            Some((at, before)) => {
                let now = host::cpu_times();
                (
                    now,
                    now.and_then(|n| n.percent_since(&before)),
                    at.elapsed(),
                )
            }
            None => {
                let before = host::cpu_times();
                tokio::time::sleep(FRESH_CPU_SAMPLE.min(ctx.remaining())).await;
                let now = host::cpu_times();
                let pct = before.zip(now).and_then(|(b, n)| n.percent_since(&b));
                (now, pct, FRESH_CPU_SAMPLE)
            }
        };
        match cpu_percent {
            Some(pct) => {
                ctx.data("cpu_percent", round1(pct));
                ctx.data("cpu_window_seconds", round1(window.as_secs_f64()));
                if pct > t.cpu_percent {
                    ctx.finding(cpu_finding(pct, t.cpu_percent, window));
                }
                ctx.check("host");
            }
            None => ctx.note("CPU usage could not be read (/proc/stat is not available)"),
        }

        match host::memory() {
            Some(m) => {
                let pct = m.cgroup_used_percent.unwrap_or(m.used_percent);
                ctx.data("memory", m);
                if pct > t.memory_percent {
                    ctx.finding(memory_finding(
                        pct,
                        t.memory_percent,
                        m.cgroup_limit_bytes.is_some(),
                    ));
                }
                ctx.check("host");
            }
            None => ctx.note("memory could not be read (/proc/meminfo is not available)"),
        }

        match host::load() {
            Some(l) => {
                ctx.data("load", l);
                if let Some(limit) = t.load_per_core {
                    let per_core = l.one / l.cores as f64;
                    if per_core > limit {
                        ctx.finding(
                            FindingDraft::new(Severity::Warning, "load", "High load average")
                                .component("host")
                                .key("loadavg")
                                .description(format!(
                                    "1-minute load average {:.2} on {} cores ({:.2} per core, threshold {limit})",
                                    l.one, l.cores, per_core
                                )),
                        );
                    }
                }
                ctx.check("host");
            }
            None => ctx.note("load average could not be read (/proc/loadavg is not available)"),
        }

        let data_dir = if ctx.env.data_dir.exists() {
            ctx.env.data_dir.clone()
        } else {
            ".".into()
        };
        match host::disk(&data_dir) {
            Some(d) => {
                ctx.data("disk", json!({"path": data_dir.display().to_string(), "total_bytes": d.total_bytes, "available_bytes": d.available_bytes, "used_percent": round1(d.used_percent)}));
                if let Some(f) = disk_finding(d.used_percent, t, &data_dir.display().to_string()) {
                    ctx.finding(f);
                }
                ctx.check("host");
            }
            None => ctx.note(format!(
                "disk space of {} could not be read",
                data_dir.display()
            )),
        }

        // botfleet's own traffic since the last pass.
        let base = previous.map(|p| p.requests).unwrap_or_default();
        let window = previous.map(|p| p.at.elapsed());
        let delta = now_requests.since(&base);
        ctx.data("requests", request_figures(&delta, window));
        for f in request_findings(&delta, t, c.min_requests, window) {
            ctx.finding(f);
        }
        ctx.check("botfleet");

        if c.probes.is_empty() {
            ctx.note("no activity probes configured (probes in pulse's config)");
        }
        let results =
            futures_util::future::join_all(c.probes.iter().map(|p| run_probe(ctx, p))).await;
        let mut values = serde_json::Map::new();
        for (p, value) in c.probes.iter().zip(results) {
            if let Some(v) = value {
                values.insert(p.name.clone(), json!(v));
            }
        }
        if !c.probes.is_empty() {
            ctx.data("probes", values);
        }

        if !ctx.dry_run {
            *self.last.lock().unwrap() = Some(Sample {
                at: Instant::now(),
                cpu: cpu_now,
                requests: now_requests,
            });
        }
        Ok(())
    }

    async fn recheck(
        &self,
        ctx: &PassContext,
        finding: &FindingDraft,
    ) -> Result<Recheck, BotError> {
        let c: PulseConfig = ctx.config_as()?;
        let t = &c.thresholds;
        let window = Duration::from_millis(c.verify_window_ms);
        let present = |f: Option<FindingDraft>| {
            if f.is_some() {
                Recheck::Present
            } else {
                Recheck::Gone
            }
        };
        Ok(match finding.key.as_str() {
            "cpu" => {
                let before = host::cpu_times();
                tokio::time::sleep(window).await;
                match before
                    .zip(host::cpu_times())
                    .and_then(|(b, n)| n.percent_since(&b))
                {
                    Some(pct) => present(
                        (pct > t.cpu_percent).then(|| cpu_finding(pct, t.cpu_percent, window)),
                    ),
                    None => Recheck::Unknown("CPU usage could not be read".into()),
                }
            }
            "memory" => match host::memory() {
                Some(m) => {
                    let pct = m.cgroup_used_percent.unwrap_or(m.used_percent);
                    present(
                        (pct > t.memory_percent)
                            .then(|| memory_finding(pct, t.memory_percent, false)),
                    )
                }
                None => Recheck::Unknown("memory could not be read".into()),
            },
            "disk" => {
                let dir = ctx.env.data_dir.display().to_string();
                match host::disk(&ctx.env.data_dir) {
                    Some(d) => present(disk_finding(d.used_percent, t, &dir)),
                    None => Recheck::Unknown("disk space could not be read".into()),
                }
            }
            "5xx" | "latency" => {
                let before = ctx.process.requests.snapshot();
                tokio::time::sleep(window).await;
                let delta = ctx.process.requests.snapshot().since(&before);
                if delta.total.saturating_sub(delta.shed) < c.min_requests {
                    Recheck::Unknown(format!(
                        "only {} requests were served in the {} ms window; at least {} are needed to tell",
                        delta.total - delta.shed,
                        window.as_millis(),
                        c.min_requests
                    ))
                } else {
                    let still = request_findings(&delta, t, c.min_requests, Some(window))
                        .into_iter()
                        .any(|f| f.key == finding.key);
                    if still {
                        Recheck::Present
                    } else {
                        Recheck::Gone
                    }
                }
            }
            _ => {
                let fresh = ctx.fresh();
                match c
                    .probes
                    .iter()
                    .find(|p| finding.component == format!("probe:{}", p.name))
                {
                    Some(p) => {
                        run_probe(&fresh, p).await;
                        if fresh.has_finding(&finding.fingerprint()) {
                            Recheck::Present
                        } else {
                            Recheck::Gone
                        }
                    }
                    None => Recheck::Unknown("that probe is no longer configured".into()),
                }
            }
        })
    }
}

fn cpu_finding(pct: f64, threshold: f64, window: Duration) -> FindingDraft {
    let severity = if pct > 95.0 {
        Severity::Error
    } else {
        Severity::Warning
    };
    FindingDraft::new(severity, "load", "High CPU usage")
        .component("host")
        .key("cpu")
        .description(format!(
            "host CPU busy {pct:.1}% over the last {:.0} s (threshold {threshold}%)",
            window.as_secs_f64()
        ))
        .metadata(json!({"cpu_percent": round1(pct), "threshold": threshold}))
}

fn memory_finding(pct: f64, threshold: f64, container: bool) -> FindingDraft {
    let whose = if container {
        "container memory"
    } else {
        "host memory"
    };
    FindingDraft::new(Severity::Error, "memory", "High memory usage")
        .component("host")
        .key("memory")
        .description(format!("{whose} {pct:.1}% used (threshold {threshold}%)"))
        .metadata(json!({"used_percent": round1(pct), "threshold": threshold}))
}

fn disk_finding(pct: f64, t: &Thresholds, path: &str) -> Option<FindingDraft> {
    let severity = Severity::grade(
        pct,
        t.disk_percent,
        t.disk_critical_percent,
        Severity::Critical,
    )?;
    Some(
        FindingDraft::new(severity, "disk", "Low disk space")
            .component("host")
            .key("disk")
            .description(format!(
                "the file system holding {path} is {pct:.1}% full (warning above {}%, critical above {}%)",
                t.disk_percent, t.disk_critical_percent
            ))
            .metadata(json!({"used_percent": round1(pct), "path": path})),
    )
}

fn request_figures(d: &RequestSnapshot, window: Option<Duration>) -> Value {
    let counted = d.total.saturating_sub(d.shed);
    json!({
        "window_seconds": window.map(|w| round1(w.as_secs_f64())),
        "since": if window.is_some() { "the last pass" } else { "this process started" },
        "total": d.total,
        "per_minute": window.filter(|w| w.as_secs_f64() > 0.0).map(|w| round1(d.total as f64 * 60.0 / w.as_secs_f64())),
        "server_errors": d.server_errors,
        "error_rate_percent": (counted > 0).then(|| round1(d.server_errors as f64 * 100.0 / counted as f64)),
        "shed": d.shed,
        "mean_latency_ms": (d.timed > 0).then(|| round1(d.timed_latency_us as f64 / d.timed as f64 / 1000.0)),
        "note": "triggers and the event stream are long by nature and left out of the latency mean",
    })
}

fn request_findings(
    d: &RequestSnapshot,
    t: &Thresholds,
    min_requests: u64,
    window: Option<Duration>,
) -> Vec<FindingDraft> {
    let mut out = Vec::new();
    let span = window
        .map(|w| format!("the last {:.0} s", w.as_secs_f64()))
        .unwrap_or_else(|| "this process's life".into());
    let counted = d.total.saturating_sub(d.shed);
    if counted >= min_requests && counted > 0 {
        let rate = d.server_errors as f64 * 100.0 / counted as f64;
        if rate > t.error_rate_percent {
            out.push(
                FindingDraft::new(Severity::Error, "errors", "High 5xx rate")
                    .component("botfleet")
                    .key("5xx")
                    .description(format!(
                        "{} of {counted} requests answered 5xx over {span} ({rate:.1}%, threshold {}%)",
                        d.server_errors, t.error_rate_percent
                    ))
                    .metadata(json!({"error_rate_percent": round1(rate), "requests": counted})),
            );
        }
    }
    if d.timed >= min_requests && d.timed > 0 {
        let mean = d.timed_latency_us as f64 / d.timed as f64 / 1000.0;
        if mean > t.mean_latency_ms {
            out.push(
                FindingDraft::new(Severity::Warning, "latency", "Slow responses")
                    .component("botfleet")
                    .key("latency")
                    .description(format!(
                        "mean response time {mean:.0} ms over {} requests in {span} (threshold {} ms)",
                        d.timed, t.mean_latency_ms
                    ))
                    .metadata(json!({"mean_latency_ms": round1(mean), "requests": d.timed})),
            );
        }
    }
    out
}

/// Fetches one probe; records its target state and any finding; returns the value read.
async fn run_probe(ctx: &PassContext, p: &Probe) -> Option<f64> {
    let component = format!("probe:{}", p.name);
    let started = Instant::now();
    let fetched = fetch_number(ctx, p).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let target = |up: bool, status: Option<i64>, error: Option<String>| TargetObservation {
        target: component.clone(),
        up,
        status_code: status,
        latency_ms: Some(round1(latency_ms)),
        error,
        cert_expires_at: None,
        metadata: json!({"url": p.url}),
    };
    match fetched {
        Ok((status, value)) => {
            ctx.target(target(true, Some(status), None));
            let bound = |b: Option<f64>, above: bool| {
                b.filter(|b| if above { value > *b } else { value < *b })
            };
            let hit = bound(p.alert_above, true)
                .map(|b| (Severity::Error, "above", b))
                .or_else(|| bound(p.alert_below, false).map(|b| (Severity::Error, "below", b)))
                .or_else(|| bound(p.warn_above, true).map(|b| (Severity::Warning, "above", b)))
                .or_else(|| bound(p.warn_below, false).map(|b| (Severity::Warning, "below", b)));
            if let Some((severity, side, b)) = hit {
                ctx.finding(
                    FindingDraft::new(severity, "activity", &format!("Activity {side} threshold"))
                        .component(&component)
                        .key("value")
                        .description(format!(
                            "{} reads {value} at {}{}, {side} {b}",
                            p.name, p.url, p.pointer
                        ))
                        .metadata(json!({"value": value, "bound": b, "probe": p.name})),
                );
            }
            ctx.check(&component);
            Some(value)
        }
        Err((status, why)) => {
            ctx.target(target(false, status, Some(why.clone())));
            ctx.finding(
                FindingDraft::new(Severity::Warning, "activity", "Probe failed")
                    .component(&component)
                    .key("fetch")
                    .description(format!("{}: {why}", p.name))
                    .metadata(json!({"url": p.url, "probe": p.name})),
            );
            ctx.check(&component);
            None
        }
    }
}

async fn fetch_number(ctx: &PassContext, p: &Probe) -> Result<(i64, f64), (Option<i64>, String)> {
    let url = expand_env(&p.url).map_err(|e| (None, e))?;
    let mut req = ctx.http.get(&url);
    for (k, v) in &p.headers {
        req = req.header(k, expand_env(v).map_err(|e| (None, e))?);
    }
    let limit = Duration::from_millis(p.timeout_ms).min(ctx.remaining());
    let resp = tokio::time::timeout(limit, req.send())
        .await
        .map_err(|_| (None, format!("no answer within {} ms", limit.as_millis())))?
        .map_err(|e| (None, format!("request failed: {}", crate::error::chain(&e))))?;
    let status = resp.status().as_u16() as i64;
    if !resp.status().is_success() {
        return Err((Some(status), format!("answered HTTP {status}")));
    }
    let body = tokio::time::timeout(limit, resp.bytes())
        .await
        .map_err(|_| (Some(status), "the body did not arrive in time".to_string()))?
        .map_err(|e| (Some(status), format!("reading the body failed: {e}")))?;
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| (Some(status), format!("the body is not JSON: {e}")))?;
    let v = doc.pointer(&p.pointer).ok_or_else(|| {
        (
            Some(status),
            format!("nothing at {:?} in the JSON", p.pointer),
        )
    })?;
    let n = v
        .as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| {
            (
                Some(status),
                format!("{:?} holds {v}, not a number", p.pointer),
            )
        })?;
    Ok((status, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_ones_name_their_fields() {
        let pulse = Pulse::default();
        let env = Config::from_lookup(&|_| None).unwrap();
        assert!(pulse
            .validate_config(&pulse.default_config(&env))
            .is_empty());
        let errors = pulse.validate_config(&json!({"thresholds": {"cpu_percent": -5}}));
        assert_eq!(errors[0].field, "thresholds.cpu_percent");
        let errors = pulse.validate_config(&json!({"thresholds": {"cpu": 5}}));
        assert_eq!(errors[0].field, "thresholds.cpu");
        assert!(
            errors[0].problem.contains("unknown field `cpu`"),
            "{:?}",
            errors
        );
        let errors = pulse.validate_config(&json!({"probes": [{"name": "users", "url": "not a url", "pointer": "/n", "warn_above": 3}]}));
        assert_eq!(errors[0].field, "probes[0].url");
    }

    #[test]
    fn error_rate_needs_enough_requests_and_ignores_shedding() {
        let t = Thresholds::default();
        let few = RequestSnapshot {
            total: 10,
            server_errors: 5,
            ..Default::default()
        };
        assert!(request_findings(&few, &t, 20, None).is_empty());
        let many = RequestSnapshot {
            total: 100,
            server_errors: 10,
            ..Default::default()
        };
        let f = request_findings(&many, &t, 20, None);
        assert_eq!(f[0].subject(), "errors: High 5xx rate");
        let shed = RequestSnapshot {
            total: 100,
            shed: 90,
            server_errors: 0,
            ..Default::default()
        };
        assert!(request_findings(&shed, &t, 5, None).is_empty());
    }
}
