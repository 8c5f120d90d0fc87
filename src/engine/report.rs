//! What a trigger answers: a pass report, or a skip that says why.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::{ClearedFinding, ExecutionRow, Skip};

/// A figure to one decimal place, as reports and finding metadata show them.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportFinding {
    /// `None` in a dry run for a finding not open yet.
    pub id: Option<String>,
    pub fingerprint: String,
    pub severity: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub component: String,
    /// `new`, `ongoing`, or `auto-fixed` (healed and verified during this pass).
    pub state: String,
    pub occurrences: i64,
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportAction {
    pub id: String,
    pub action_type: String,
    pub description: String,
    pub finding_id: Option<String>,
    pub knowledge_id: Option<String>,
    pub success: bool,
    /// `Some(true)` when a re-check confirmed the fix; `None` when there was nothing to verify.
    pub verified: Option<bool>,
    pub error: Option<String>,
}

/// What a dry run would have done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedAction {
    pub fingerprint: String,
    pub knowledge_id: String,
    pub action_type: String,
    pub solution: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassReport {
    pub execution_id: Option<String>,
    pub bot: String,
    /// `success`, `failed` or `timeout`.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub execution_time_ms: i64,
    pub checks_performed: i64,
    pub issues_found: i64,
    pub actions_taken: i64,
    pub findings: Vec<ReportFinding>,
    pub actions: Vec<ReportAction>,
    /// Open findings this pass no longer saw, resolved `auto-cleared`.
    pub resolved: Vec<ClearedFinding>,
    pub notes: Vec<String>,
    /// The figures the bot observed.
    pub data: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    pub dry_run: bool,
    pub forced: bool,
    pub slot_at: Option<DateTime<Utc>>,
    pub triggered_by: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub planned_actions: Vec<PlannedAction>,
    /// True when this answer repeats an earlier one (same `Idempotency-Key`).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub replayed: bool,
}

impl PassReport {
    /// A copy with empty `data` (the figures can be large).
    pub fn clone_without_data(&self) -> PassReport {
        PassReport {
            execution_id: self.execution_id.clone(),
            bot: self.bot.clone(),
            status: self.status.clone(),
            started_at: self.started_at,
            completed_at: self.completed_at,
            execution_time_ms: self.execution_time_ms,
            checks_performed: self.checks_performed,
            issues_found: self.issues_found,
            actions_taken: self.actions_taken,
            findings: self.findings.clone(),
            actions: self.actions.clone(),
            resolved: self.resolved.clone(),
            notes: self.notes.clone(),
            data: Map::new(),
            error: self.error.clone(),
            dry_run: self.dry_run,
            forced: self.forced,
            slot_at: self.slot_at,
            triggered_by: self.triggered_by.clone(),
            planned_actions: self.planned_actions.clone(),
            replayed: self.replayed,
        }
    }
}

/// A trigger that ran nothing, and why. Not an error for a cron caller: answered with 200.
#[derive(Debug, Clone, Serialize)]
pub struct SkipReport {
    pub bot: String,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl SkipReport {
    pub fn new(bot: &str, skip: &Skip, schedule: Option<&str>) -> Self {
        let mut details = Map::new();
        let message = match skip {
            Skip::Paused => {
                format!("{bot} is paused; POST /api/admin/bots/{bot}/resume starts it again")
            }
            Skip::AlreadyRunning {
                execution_id,
                started_at,
                lease_expires_at,
            } => {
                details.insert("execution_id".into(), execution_id.clone().into());
                if let Some(t) = started_at {
                    details.insert("started_at".into(), ts(*t).into());
                }
                if let Some(t) = lease_expires_at {
                    details.insert("lease_expires_at".into(), ts(*t).into());
                }
                format!("{bot} is already running execution {execution_id}; a pass never overlaps another")
            }
            Skip::DuplicateSlot {
                execution_id,
                slot_at,
            } => {
                details.insert("execution_id".into(), execution_id.clone().into());
                details.insert("slot_at".into(), ts(*slot_at).into());
                details.insert("hint".into(), "force=true runs it anyway".into());
                format!(
                    "execution {execution_id} already served the {} slot of {bot}'s schedule ({}); force=true runs it anyway",
                    ts(*slot_at),
                    schedule.unwrap_or("?")
                )
            }
            Skip::CircuitOpen { until } => {
                details.insert("until".into(), ts(*until).into());
                format!(
                    "{bot}'s circuit is open after repeated failed passes; the next call after {} runs one trial pass",
                    ts(*until)
                )
            }
        };
        SkipReport {
            bot: bot.to_string(),
            status: "skipped",
            reason: skip.reason(),
            message,
            details,
        }
    }
}

/// The report kept with an execution, or — while it runs, or if it was abandoned — what is
/// known of it.
pub fn execution_report(row: &ExecutionRow) -> Value {
    if let Some(report) = row.metadata.as_ref().and_then(|m| m.0.get("report")) {
        return report.clone();
    }
    serde_json::json!({
        "execution_id": row.id,
        "bot": row.bot,
        "status": row.status,
        "started_at": row.started_at,
        "completed_at": row.completed_at,
        "execution_time_ms": row.execution_time_ms,
        "checks_performed": row.checks_performed,
        "issues_found": row.issues_found,
        "actions_taken": row.actions_taken,
        "error": row.error_message,
        "forced": row.forced,
        "slot_at": row.slot_at,
        "triggered_by": row.triggered_by,
        "lease_expires_at": row.deadline_at,
    })
}
