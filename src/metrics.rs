//! Prometheus metrics. Counters and histograms of this process live here; gauges about the fleet
//! (findings, overdue bots, targets) are read from the database at scrape time, so every replica
//! reports the same fleet state. Rendered by hand in the text exposition format.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const PASS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0,
];
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let le = fmt_float(*bound);
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.push(("le", &le));
            sample(out, &format!("{name}_bucket"), &l, cumulative as f64);
        }
        let mut l: Vec<(&str, &str)> = labels.to_vec();
        l.push(("le", "+Inf"));
        sample(out, &format!("{name}_bucket"), &l, self.count as f64);
        sample(out, &format!("{name}_sum"), labels, self.sum);
        sample(out, &format!("{name}_count"), labels, self.count as f64);
    }
}

#[derive(Default)]
struct RouteStats {
    by_method_status: BTreeMap<(&'static str, u16), u64>,
    duration: Option<Histogram>,
}

#[derive(Default)]
struct Inner {
    http: HashMap<String, RouteStats, crate::process::FastHash>,
    runs: BTreeMap<(String, &'static str), u64>,
    run_duration: BTreeMap<String, Histogram>,
    triggers: BTreeMap<(String, String), u64>,
    actions: BTreeMap<(String, String, bool), u64>,
    notifications: BTreeMap<(String, String), u64>,
    refused: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Fleet state read from the database at scrape time.
#[derive(Debug, Clone, Default)]
pub struct FleetGauges {
    pub database_up: bool,
    pub bots: Vec<BotGauge>,
    pub findings_open: Vec<(String, String, i64)>,
    pub tickets_open: i64,
    pub health_score: f64,
    pub targets: Vec<TargetGauge>,
}

#[derive(Debug, Clone)]
pub struct BotGauge {
    pub bot: String,
    pub last_success: Option<f64>,
    pub overdue: bool,
    pub circuit_open: bool,
    pub paused: bool,
}

#[derive(Debug, Clone)]
pub struct TargetGauge {
    pub bot: String,
    pub target: String,
    pub up: bool,
    pub response_seconds: Option<f64>,
    pub cert_expiry: Option<f64>,
}

fn method_name(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    pub fn http(&self, route: &str, method: &axum::http::Method, status: u16, elapsed: Duration) {
        let mut inner = self.inner.lock().unwrap();
        let stats = match inner.http.get_mut(route) {
            Some(s) => s,
            None => inner.http.entry(route.to_string()).or_default(),
        };
        *stats
            .by_method_status
            .entry((method_name(method), status))
            .or_default() += 1;
        stats
            .duration
            .get_or_insert_with(|| Histogram::new(HTTP_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    pub fn run(&self, bot: &str, status: &'static str, elapsed: Duration) {
        let mut inner = self.inner.lock().unwrap();
        *inner.runs.entry((bot.to_string(), status)).or_default() += 1;
        inner
            .run_duration
            .entry(bot.to_string())
            .or_insert_with(|| Histogram::new(PASS_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// How a trigger ended: a pass status, a skip reason, `replayed`, `accepted`, `dry_run`, `error`.
    pub fn trigger(&self, bot: &str, outcome: &str) {
        let mut inner = self.inner.lock().unwrap();
        *inner
            .triggers
            .entry((bot.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    pub fn action(&self, bot: &str, action: &str, success: bool) {
        let mut inner = self.inner.lock().unwrap();
        *inner
            .actions
            .entry((bot.to_string(), action.to_string(), success))
            .or_default() += 1;
    }

    /// A request refused because its address is blocked (`block`) or over its limit (`rate_limit`).
    pub fn refused(&self, why: &'static str) {
        *self.inner.lock().unwrap().refused.entry(why).or_default() += 1;
    }

    pub fn notification(&self, channel: &str, outcome: &str) {
        let mut inner = self.inner.lock().unwrap();
        *inner
            .notifications
            .entry((channel.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// The whole exposition: this process's counters, the fleet gauges, process metrics.
    pub fn render(&self, fleet: &FleetGauges) -> String {
        let mut out = String::with_capacity(8192);
        {
            let inner = self.inner.lock().unwrap();

            family(
                &mut out,
                "botfleet_bot_runs_total",
                "counter",
                "Passes finished by this process, by bot and status.",
            );
            for ((bot, status), n) in &inner.runs {
                sample(
                    &mut out,
                    "botfleet_bot_runs_total",
                    &[("bot", bot), ("status", status)],
                    *n as f64,
                );
            }
            family(
                &mut out,
                "botfleet_bot_run_duration_seconds",
                "histogram",
                "How long passes took, by bot.",
            );
            for (bot, h) in &inner.run_duration {
                h.render(
                    &mut out,
                    "botfleet_bot_run_duration_seconds",
                    &[("bot", bot)],
                );
            }
            family(&mut out, "botfleet_triggers_total", "counter", "Trigger calls by bot and outcome (pass status, skip reason, replayed, accepted, dry_run, error).");
            for ((bot, outcome), n) in &inner.triggers {
                sample(
                    &mut out,
                    "botfleet_triggers_total",
                    &[("bot", bot), ("outcome", outcome)],
                    *n as f64,
                );
            }
            family(
                &mut out,
                "botfleet_actions_total",
                "counter",
                "Self-healing and bot actions taken, by bot, action and success.",
            );
            for ((bot, action, ok), n) in &inner.actions {
                let ok = if *ok { "true" } else { "false" };
                sample(
                    &mut out,
                    "botfleet_actions_total",
                    &[("bot", bot), ("action", action), ("success", ok)],
                    *n as f64,
                );
            }
            family(
                &mut out,
                "botfleet_notifications_total",
                "counter",
                "Notifications sent, by channel and outcome.",
            );
            for ((channel, outcome), n) in &inner.notifications {
                sample(
                    &mut out,
                    "botfleet_notifications_total",
                    &[("channel", channel), ("outcome", outcome)],
                    *n as f64,
                );
            }

            family(
                &mut out,
                "botfleet_refused_requests_total",
                "counter",
                "Requests refused because the address is blocked or rate-limited.",
            );
            for (why, n) in &inner.refused {
                sample(
                    &mut out,
                    "botfleet_refused_requests_total",
                    &[("reason", why)],
                    *n as f64,
                );
            }

            let mut routes: Vec<(&String, &RouteStats)> = inner.http.iter().collect();
            routes.sort_by(|a, b| a.0.cmp(b.0));
            family(
                &mut out,
                "botfleet_http_requests_total",
                "counter",
                "HTTP requests served, by route template, method and status.",
            );
            for (route, stats) in &routes {
                for ((method, status), n) in &stats.by_method_status {
                    let status = status.to_string();
                    sample(
                        &mut out,
                        "botfleet_http_requests_total",
                        &[("route", route), ("method", method), ("status", &status)],
                        *n as f64,
                    );
                }
            }
            family(
                &mut out,
                "botfleet_http_request_duration_seconds",
                "histogram",
                "HTTP request latency, by route template.",
            );
            for (route, stats) in &routes {
                if let Some(h) = &stats.duration {
                    h.render(
                        &mut out,
                        "botfleet_http_request_duration_seconds",
                        &[("route", route)],
                    );
                }
            }
        }

        family(
            &mut out,
            "botfleet_database_up",
            "gauge",
            "1 when the database answered this scrape.",
        );
        sample(
            &mut out,
            "botfleet_database_up",
            &[],
            if fleet.database_up { 1.0 } else { 0.0 },
        );
        family(
            &mut out,
            "botfleet_bot_last_success_timestamp_seconds",
            "gauge",
            "When each bot last finished a successful pass (Unix time).",
        );
        for b in &fleet.bots {
            if let Some(t) = b.last_success {
                sample(
                    &mut out,
                    "botfleet_bot_last_success_timestamp_seconds",
                    &[("bot", &b.bot)],
                    t,
                );
            }
        }
        family(
            &mut out,
            "botfleet_bot_overdue",
            "gauge",
            "1 when a bot missed its schedule by more than the grace.",
        );
        for b in &fleet.bots {
            sample(
                &mut out,
                "botfleet_bot_overdue",
                &[("bot", &b.bot)],
                b.overdue as u8 as f64,
            );
        }
        family(
            &mut out,
            "botfleet_bot_circuit_open",
            "gauge",
            "1 while a bot's circuit breaker is open.",
        );
        for b in &fleet.bots {
            sample(
                &mut out,
                "botfleet_bot_circuit_open",
                &[("bot", &b.bot)],
                b.circuit_open as u8 as f64,
            );
        }
        family(
            &mut out,
            "botfleet_bot_paused",
            "gauge",
            "1 while a bot is paused.",
        );
        for b in &fleet.bots {
            sample(
                &mut out,
                "botfleet_bot_paused",
                &[("bot", &b.bot)],
                b.paused as u8 as f64,
            );
        }
        family(
            &mut out,
            "botfleet_findings_open",
            "gauge",
            "Open findings by bot and severity.",
        );
        for (bot, severity, n) in &fleet.findings_open {
            sample(
                &mut out,
                "botfleet_findings_open",
                &[("bot", bot), ("severity", severity)],
                *n as f64,
            );
        }
        family(
            &mut out,
            "botfleet_tickets_open",
            "gauge",
            "Tickets open or assigned.",
        );
        sample(
            &mut out,
            "botfleet_tickets_open",
            &[],
            fleet.tickets_open as f64,
        );
        family(
            &mut out,
            "botfleet_health_score",
            "gauge",
            "Fleet health score, 0 to 100 (formula in the README).",
        );
        sample(&mut out, "botfleet_health_score", &[], fleet.health_score);
        family(
            &mut out,
            "botfleet_target_up",
            "gauge",
            "1 when a target's last check succeeded.",
        );
        for t in &fleet.targets {
            sample(
                &mut out,
                "botfleet_target_up",
                &[("bot", &t.bot), ("target", &t.target)],
                t.up as u8 as f64,
            );
        }
        family(
            &mut out,
            "botfleet_target_response_seconds",
            "gauge",
            "A target's last response time.",
        );
        for t in &fleet.targets {
            if let Some(s) = t.response_seconds {
                sample(
                    &mut out,
                    "botfleet_target_response_seconds",
                    &[("bot", &t.bot), ("target", &t.target)],
                    s,
                );
            }
        }
        family(
            &mut out,
            "botfleet_target_cert_expiry_timestamp_seconds",
            "gauge",
            "When a target's TLS certificate expires (Unix time).",
        );
        for t in &fleet.targets {
            if let Some(s) = t.cert_expiry {
                sample(
                    &mut out,
                    "botfleet_target_cert_expiry_timestamp_seconds",
                    &[("bot", &t.bot), ("target", &t.target)],
                    s,
                );
            }
        }

        family(
            &mut out,
            "botfleet_build_info",
            "gauge",
            "Always 1; the version in a label.",
        );
        sample(
            &mut out,
            "botfleet_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        render_process(&mut out);
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&fmt_float(value));
    out.push('\n');
}

fn fmt_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The standard process metrics, from /proc (Linux).
fn render_process(out: &mut String) {
    let Some(p) = crate::host::process_stats() else {
        return;
    };
    family(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    sample(out, "process_cpu_seconds_total", &[], p.cpu_seconds);
    family(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    sample(
        out,
        "process_resident_memory_bytes",
        &[],
        p.resident_bytes as f64,
    );
    family(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    );
    sample(
        out,
        "process_virtual_memory_bytes",
        &[],
        p.virtual_bytes as f64,
    );
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    sample(out, "process_start_time_seconds", &[], p.start_time_seconds);
    family(
        out,
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    );
    sample(out, "process_open_fds", &[], p.open_fds as f64);
    if let Some(max) = p.max_fds {
        family(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
        );
        sample(out, "process_max_fds", &[], max as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_histograms_cumulate() {
        let m = Metrics::default();
        m.run("pulse", "success", Duration::from_millis(3));
        m.run("pulse", "success", Duration::from_millis(300));
        m.trigger("pulse", "duplicate_slot");
        let fleet = FleetGauges {
            targets: vec![TargetGauge {
                bot: "sentinel".into(),
                target: "home \"page\"\n".into(),
                up: true,
                response_seconds: Some(0.25),
                cert_expiry: None,
            }],
            ..Default::default()
        };
        let text = m.render(&fleet);
        assert!(
            text.contains(
                "botfleet_bot_run_duration_seconds_bucket{bot=\"pulse\",le=\"0.005\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("botfleet_bot_run_duration_seconds_bucket{bot=\"pulse\",le=\"0.5\"} 2\n")
        );
        assert!(text
            .contains("botfleet_bot_run_duration_seconds_bucket{bot=\"pulse\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("botfleet_bot_run_duration_seconds_count{bot=\"pulse\"} 2\n"));
        assert!(text.contains("target=\"home \\\"page\\\"\\n\""));
        assert!(
            text.contains("botfleet_triggers_total{bot=\"pulse\",outcome=\"duplicate_slot\"} 1\n")
        );
    }
}
