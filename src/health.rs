//! Health, status and the health score. `/api/health` is answered from a snapshot at most a
//! second old (recomputed sooner when a pass finishes or an admin changes something), so an
//! uptime checker hammering it costs one database round trip a second.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::process::DropCache;
use crate::schedule::{punctuality, Punctuality, Schedules};
use crate::store::{BotRow, OpenCount, RunCount, Store};

const FRESH_FOR: Duration = Duration::from_secs(1);

/// One bot as health and status see it.
#[derive(Debug, Clone, Serialize)]
pub struct BotState {
    pub name: String,
    /// `active` or `paused`.
    pub status: String,
    pub schedule: Option<String>,
    pub punctuality: Punctuality,
    pub circuit: String,
    pub circuit_open_until: Option<DateTime<Utc>>,
    pub running: bool,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub next_run_at: Option<DateTime<Utc>>,
}

impl BotState {
    pub fn from_row(row: &BotRow, schedules: &Schedules, now: DateTime<Utc>) -> Self {
        let schedule = schedules.get(&row.name);
        let paused = row.status == "paused";
        let punctuality = if paused {
            Punctuality::Unscheduled
        } else {
            punctuality(schedule, row.last_execution_at, now)
        };
        BotState {
            name: row.name.clone(),
            status: row.status.clone(),
            schedule: row.schedule_cron.clone(),
            punctuality,
            circuit: row.circuit_state.clone(),
            circuit_open_until: row.circuit_open_until,
            running: row.lease_execution_id.is_some()
                && row.lease_expires_at.is_some_and(|t| t > now),
            last_run_at: row.last_execution_at,
            last_status: row.last_status.clone(),
            last_success_at: row.last_success_at,
            next_run_at: schedule
                .map(|s| s.next_after(row.last_execution_at.unwrap_or(now).max(now))),
        }
    }

    pub fn overdue(&self) -> bool {
        matches!(self.punctuality, Punctuality::Overdue { .. })
    }

    pub fn circuit_open(&self) -> bool {
        self.circuit == "open"
    }
}

/// Readiness: database reachable, no bot overdue, no circuit open.
pub async fn readiness(
    store: &dyn Store,
    schedules: &Schedules,
    now: DateTime<Utc>,
) -> (StatusCode, serde_json::Value) {
    let t0 = Instant::now();
    let bots = match store.list_bots().await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "status": "unhealthy",
                    "checked_at": now,
                    "database": {"ok": false, "backend": store.backend().as_str(), "error": e.to_string()},
                    "reasons": [format!("the database cannot be reached: {e}")],
                    "version": env!("CARGO_PKG_VERSION"),
                }),
            );
        }
    };
    let db_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let states: Vec<BotState> = bots
        .iter()
        .map(|b| BotState::from_row(b, schedules, now))
        .collect();
    let mut reasons = Vec::new();
    let overdue: Vec<_> = states.iter().filter(|s| s.overdue()).collect();
    for s in &overdue {
        if let Punctuality::Overdue {
            expected_at,
            late_by_seconds,
            ..
        } = &s.punctuality
        {
            reasons.push(format!(
                "{} is overdue: a pass was expected at {} and none came ({} s late); is its scheduler calling /api/bots/{}?",
                s.name,
                expected_at.to_rfc3339(),
                late_by_seconds,
                s.name
            ));
        }
    }
    let open: Vec<_> = states.iter().filter(|s| s.circuit_open()).collect();
    for s in &open {
        reasons.push(format!(
            "{}'s circuit is open after repeated failed passes (until {})",
            s.name,
            s.circuit_open_until
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        ));
    }
    let healthy = reasons.is_empty();
    (
        if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        json!({
            "status": if healthy { "healthy" } else { "degraded" },
            "checked_at": now,
            "database": {"ok": true, "backend": store.backend().as_str(), "latency_ms": (db_ms * 100.0).round() / 100.0},
            "bots": {
                "total": states.len(),
                "overdue": overdue.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                "circuit_open": open.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                "paused": states.iter().filter(|s| s.status == "paused").map(|s| s.name.as_str()).collect::<Vec<_>>(),
            },
            "reasons": reasons,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

pub struct Snapshot {
    pub status: StatusCode,
    pub body: Bytes,
    computed: Instant,
    clock_at: DateTime<Utc>,
    generation: u64,
}

/// The cached `/api/health` answer.
#[derive(Default)]
pub struct HealthCache {
    current: RwLock<Option<Arc<Snapshot>>>,
    refresh: tokio::sync::Mutex<()>,
}

impl HealthCache {
    fn fresh(&self, now: DateTime<Utc>, generation: u64) -> Option<Arc<Snapshot>> {
        let cur = self.current.read().unwrap();
        let s = cur.as_ref()?;
        let clock_moved = (now - s.clock_at).num_milliseconds().abs() >= 1000;
        (s.computed.elapsed() < FRESH_FOR && !clock_moved && s.generation == generation)
            .then(|| s.clone())
    }

    pub async fn get(
        &self,
        store: &dyn Store,
        schedules: &Schedules,
        now: DateTime<Utc>,
        generation: u64,
    ) -> Arc<Snapshot> {
        if let Some(s) = self.fresh(now, generation) {
            return s;
        }
        // One request recomputes; the others wait for it and share the answer.
        let _guard = self.refresh.lock().await;
        if let Some(s) = self.fresh(now, generation) {
            return s;
        }
        let (status, body) = readiness(store, schedules, now).await;
        let snapshot = Arc::new(Snapshot {
            status,
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            computed: Instant::now(),
            clock_at: now,
            generation,
        });
        *self.current.write().unwrap() = Some(snapshot.clone());
        snapshot
    }
}

impl DropCache for HealthCache {
    fn name(&self) -> &'static str {
        "health"
    }

    fn drop_cache(&self) {
        *self.current.write().unwrap() = None;
    }
}

/// The inputs of the health score.
#[derive(Debug, Clone, Default)]
pub struct ScoreInputs {
    pub database_ok: bool,
    pub circuit_open: usize,
    pub overdue: usize,
    /// Bots whose last pass failed or timed out (circuit not open).
    pub last_failed: usize,
    pub critical: i64,
    pub error: i64,
    pub warning: i64,
    /// Finished passes in the last 24 hours, and how many succeeded.
    pub runs_24h: i64,
    pub successes_24h: i64,
}

/// The health score, 0–100 (documented in the README):
///
/// 100, minus 15 per bot with an open circuit, 10 per overdue bot, 5 per bot whose last pass
/// failed; minus 10 per open critical finding (at most 30), 5 per open error (at most 20),
/// 1 per open warning (at most 10); minus the points by which the fleet's 24-hour pass success
/// rate falls below 95 % (at most 20). Floored at 0; 0 when the database is unreachable.
pub fn health_score(i: &ScoreInputs) -> f64 {
    if !i.database_ok {
        return 0.0;
    }
    let mut score = 100.0;
    score -= 15.0 * i.circuit_open as f64;
    score -= 10.0 * i.overdue as f64;
    score -= 5.0 * i.last_failed as f64;
    score -= (10.0 * i.critical as f64).min(30.0);
    score -= (5.0 * i.error as f64).min(20.0);
    score -= (i.warning as f64).min(10.0);
    if i.runs_24h > 0 {
        let rate = i.successes_24h as f64 * 100.0 / i.runs_24h as f64;
        score -= (95.0 - rate).clamp(0.0, 20.0);
    }
    score.clamp(0.0, 100.0).round()
}

pub fn score_inputs(states: &[BotState], open: &[OpenCount], runs: &[RunCount]) -> ScoreInputs {
    let count = |sev: &str| {
        open.iter()
            .filter(|o| o.severity == sev)
            .map(|o| o.count)
            .sum()
    };
    ScoreInputs {
        database_ok: true,
        circuit_open: states.iter().filter(|s| s.circuit_open()).count(),
        overdue: states.iter().filter(|s| s.overdue()).count(),
        last_failed: states
            .iter()
            .filter(|s| !s.circuit_open())
            .filter(|s| {
                matches!(
                    s.last_status.as_deref(),
                    Some("failed" | "timeout" | "abandoned")
                )
            })
            .count(),
        critical: count("critical"),
        error: count("error"),
        warning: count("warning"),
        runs_24h: runs.iter().map(|r| r.total).sum(),
        successes_24h: runs.iter().map(|r| r.successful).sum(),
    }
}

/// Everything status and metrics show, read in one go.
pub struct Fleet {
    pub rows: Vec<BotRow>,
    pub states: Vec<BotState>,
    pub open: Vec<OpenCount>,
    pub tickets_open: i64,
    pub runs_24h: Vec<RunCount>,
    pub score: f64,
}

pub async fn fleet(
    store: &dyn Store,
    schedules: &Schedules,
    now: DateTime<Utc>,
) -> Result<Fleet, crate::store::StoreError> {
    let rows = store.list_bots().await?;
    let open = store.open_finding_counts().await?;
    let tickets_open = store.open_ticket_count().await?;
    let runs_24h = store
        .run_counts_since(now - chrono::Duration::hours(24))
        .await?;
    let states: Vec<BotState> = rows
        .iter()
        .map(|r| BotState::from_row(r, schedules, now))
        .collect();
    let score = health_score(&score_inputs(&states, &open, &runs_24h));
    Ok(Fleet {
        rows,
        states,
        open,
        tickets_open,
        runs_24h,
        score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_formula() {
        let perfect = ScoreInputs {
            database_ok: true,
            ..Default::default()
        };
        assert_eq!(health_score(&perfect), 100.0);
        let i = ScoreInputs {
            database_ok: true,
            circuit_open: 1,
            overdue: 1,
            critical: 5,
            warning: 3,
            runs_24h: 100,
            successes_24h: 90,
            ..Default::default()
        };
        // 100 - 15 - 10 - 30 - 3 - 5
        assert_eq!(health_score(&i), 37.0);
        assert_eq!(health_score(&ScoreInputs::default()), 0.0);
        let awful = ScoreInputs {
            database_ok: true,
            circuit_open: 9,
            ..Default::default()
        };
        assert_eq!(health_score(&awful), 0.0);
    }
}
