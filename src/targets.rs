//! Target history read back: success rate (uptime), mean and p95 latency over a window, from
//! the hourly buckets (and daily ones, older than 48 hours). A bucket counts when it overlaps
//! the window, so a window is covered fully and by at most one bucket more.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::store::{TargetStat, LATENCY_BOUNDS_MS};

#[derive(Debug, Clone, Default)]
pub struct Window {
    pub checks: i64,
    pub failures: i64,
    pub latency_sum_ms: f64,
    pub latency_max_ms: f64,
    pub buckets: [i64; 14],
}

impl Window {
    pub fn add(&mut self, s: &TargetStat) {
        self.checks += s.checks;
        self.failures += s.failures;
        self.latency_sum_ms += s.latency_sum_ms;
        self.latency_max_ms = self.latency_max_ms.max(s.latency_max_ms);
        for (a, b) in self.buckets.iter_mut().zip(s.latency_buckets) {
            *a += b;
        }
    }

    /// One more check, not yet recorded (the pass in progress).
    pub fn add_check(&mut self, ok: bool, latency_ms: Option<f64>) {
        self.checks += 1;
        if !ok {
            self.failures += 1;
        }
        if let Some(ms) = latency_ms {
            self.latency_sum_ms += ms;
            self.latency_max_ms = self.latency_max_ms.max(ms);
            self.buckets[crate::store::latency_bucket(ms)] += 1;
        }
    }

    pub fn success_percent(&self) -> Option<f64> {
        (self.checks > 0)
            .then(|| round2((self.checks - self.failures) as f64 * 100.0 / self.checks as f64))
    }

    pub fn failure_percent(&self) -> Option<f64> {
        (self.checks > 0).then(|| self.failures as f64 * 100.0 / self.checks as f64)
    }

    pub fn mean_ms(&self) -> Option<f64> {
        let timed: i64 = self.buckets.iter().sum();
        (timed > 0).then(|| round2(self.latency_sum_ms / timed as f64))
    }

    /// The histogram bound under which 95 % of measured latencies fall; `None` without data,
    /// `Some(None)` when it is beyond the last bound (10 s).
    pub fn p95_at_most_ms(&self) -> Option<Option<f64>> {
        let timed: i64 = self.buckets.iter().sum();
        if timed == 0 {
            return None;
        }
        let need = (timed as f64 * 0.95).ceil() as i64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= need {
                return Some(LATENCY_BOUNDS_MS.get(i).copied());
            }
        }
        Some(None)
    }

    pub fn summary(&self) -> Value {
        json!({
            "checks": self.checks,
            "failures": self.failures,
            "success_percent": self.success_percent(),
            "mean_ms": self.mean_ms(),
            "max_ms": (self.checks > 0).then_some(round2(self.latency_max_ms)),
            "p95_ms_at_most": match self.p95_at_most_ms() {
                None => Value::Null,
                Some(Some(b)) => json!(b),
                Some(None) => json!("over 10000"),
            },
        })
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn width(s: &TargetStat) -> Duration {
    if s.granularity == "day" {
        Duration::days(1)
    } else {
        Duration::hours(1)
    }
}

/// The buckets of `stats` that overlap the `span` before `now`, summed.
pub fn window(stats: &[&TargetStat], now: DateTime<Utc>, span: Duration) -> Window {
    let from = now - span;
    let mut w = Window::default();
    for s in stats {
        if s.bucket_start + width(s) > from && s.bucket_start <= now {
            w.add(s);
        }
    }
    w
}

/// The standard windows: 1 hour, 24 hours, 7 days, 30 days.
pub fn uptime(stats: &[&TargetStat], now: DateTime<Utc>) -> Value {
    json!({
        "1h": window(stats, now, Duration::hours(1)).summary(),
        "24h": window(stats, now, Duration::hours(24)).summary(),
        "7d": window(stats, now, Duration::days(7)).summary(),
        "30d": window(stats, now, Duration::days(30)).summary(),
    })
}

/// A point of the latency series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub granularity: String,
    pub checks: i64,
    pub failures: i64,
    pub mean_ms: Option<f64>,
    pub max_ms: f64,
}

pub fn series(stats: &[&TargetStat]) -> Vec<Point> {
    stats
        .iter()
        .map(|s| {
            let mut w = Window::default();
            w.add(s);
            Point {
                at: s.bucket_start,
                granularity: s.granularity.clone(),
                checks: s.checks,
                failures: s.failures,
                mean_ms: w.mean_ms(),
                max_ms: round2(s.latency_max_ms),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn stat(
        granularity: &str,
        start: DateTime<Utc>,
        checks: i64,
        failures: i64,
        lat: &[(usize, i64)],
    ) -> TargetStat {
        let mut latency_buckets = [0; 14];
        let mut sum = 0.0;
        for (i, n) in lat {
            latency_buckets[*i] = *n;
            sum += *n as f64 * LATENCY_BOUNDS_MS.get(*i).copied().unwrap_or(20_000.0);
        }
        TargetStat {
            bot: "sentinel".into(),
            target: "home".into(),
            granularity: granularity.into(),
            bucket_start: start,
            checks,
            failures,
            latency_sum_ms: sum,
            latency_max_ms: 1000.0,
            latency_buckets,
        }
    }

    #[test]
    fn windows_cover_overlapping_buckets_and_p95_reads_the_histogram() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 30, 0).unwrap();
        let rows = [
            stat("hour", now - Duration::minutes(30), 30, 0, &[(2, 30)]),
            stat("hour", now - Duration::minutes(90), 30, 3, &[(2, 27)]),
            stat("hour", now - Duration::hours(5), 30, 30, &[]),
            stat("day", now - Duration::days(5), 720, 0, &[(2, 700), (7, 20)]),
        ];
        let refs: Vec<&TargetStat> = rows.iter().collect();
        let h1 = window(&refs, now, Duration::hours(1));
        assert_eq!((h1.checks, h1.failures), (60, 3));
        assert_eq!(h1.success_percent(), Some(95.0));
        assert_eq!(h1.p95_at_most_ms(), Some(Some(100.0)));
        let d7 = window(&refs, now, Duration::days(7));
        assert_eq!(d7.checks, 810);
        assert_eq!(d7.p95_at_most_ms(), Some(Some(100.0)));
        let slow = [stat("hour", now, 20, 0, &[(2, 10), (13, 10)])];
        let refs: Vec<&TargetStat> = slow.iter().collect();
        assert_eq!(
            window(&refs, now, Duration::hours(1)).p95_at_most_ms(),
            Some(None)
        );
        assert_eq!(Window::default().p95_at_most_ms(), None);
    }
}
