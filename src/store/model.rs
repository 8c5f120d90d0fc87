//! Rows and requests exchanged with the store. One set of types serves both backends.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A figure against two thresholds: `top` above `alert`, a warning above `warning`,
    /// nothing at or under both.
    pub fn grade(value: f64, warning: f64, alert: f64, top: Severity) -> Option<Severity> {
        if value > alert {
            Some(top)
        } else if value > warning {
            Some(Severity::Warning)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecStatus {
    Running,
    Success,
    Failed,
    Timeout,
    Abandoned,
}

impl ExecStatus {
    pub const ALL: [ExecStatus; 5] = [
        ExecStatus::Running,
        ExecStatus::Success,
        ExecStatus::Failed,
        ExecStatus::Timeout,
        ExecStatus::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Running => "running",
            ExecStatus::Success => "success",
            ExecStatus::Failed => "failed",
            ExecStatus::Timeout => "timeout",
            ExecStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<ExecStatus> {
        ExecStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What the registry and `crons.json` say a bot is; written to `bots` at every start.
#[derive(Debug, Clone)]
pub struct BotDef {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub schedule_cron: Option<String>,
    pub next_execution_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct BotRow {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub description: Option<String>,
    pub schedule_cron: Option<String>,
    pub api_endpoint: String,
    pub status: String,
    pub last_execution_at: Option<DateTime<Utc>>,
    pub next_execution_at: Option<DateTime<Utc>>,
    pub total_runs: i64,
    pub successful_runs: i64,
    pub failed_runs: i64,
    pub avg_execution_time_ms: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub config: Option<Json<Value>>,
    pub lease_execution_id: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub circuit_state: String,
    pub consecutive_failures: i64,
    pub circuit_open_until: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_error: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// A bot row as the lease transaction reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LockedBot {
    #[sqlx(flatten)]
    pub bot: BotRow,
    pub open_findings: i64,
}

impl BotRow {
    pub fn config_value(&self) -> Option<&Value> {
        self.config.as_ref().map(|j| &j.0)
    }
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ExecutionRow {
    pub id: String,
    pub bot_id: String,
    pub bot: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub execution_time_ms: Option<i64>,
    pub checks_performed: i64,
    pub issues_found: i64,
    pub actions_taken: i64,
    pub error_message: Option<String>,
    pub metadata: Option<Json<Value>>,
    pub created_at: DateTime<Utc>,
    pub slot_at: Option<DateTime<Utc>>,
    pub forced: bool,
    pub triggered_by: String,
    pub idempotency_key: Option<String>,
    pub deadline_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct FindingRow {
    pub id: String,
    pub bot_id: String,
    pub bot: String,
    pub execution_id: Option<String>,
    pub severity: String,
    pub category: String,
    pub title: String,
    pub description: Option<String>,
    pub affected_component: Option<String>,
    pub detected_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution_method: Option<String>,
    pub metadata: Option<Json<Value>>,
    pub fingerprint: String,
    pub occurrences: i64,
    pub last_seen_at: DateTime<Utc>,
    pub last_execution_id: Option<String>,
    pub last_heal_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolution_notes: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ActionRow {
    pub id: String,
    pub bot_id: String,
    pub bot: String,
    pub finding_id: Option<String>,
    pub execution_id: Option<String>,
    pub action_type: String,
    pub action_description: String,
    pub success: bool,
    pub error_message: Option<String>,
    pub taken_at: DateTime<Utc>,
    pub metadata: Option<Json<Value>>,
    pub knowledge_id: Option<String>,
    pub verified: Option<bool>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct KnowledgeRow {
    pub id: String,
    pub category: String,
    pub issue_pattern: String,
    pub solution: String,
    pub success_rate: f64,
    pub times_applied: i64,
    pub times_successful: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub action: Option<Json<Value>>,
    pub enabled: bool,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DailyMetricsRow {
    pub metric_date: NaiveDate,
    pub bot: String,
    pub total_executions: i64,
    pub successful_executions: i64,
    pub failed_executions: i64,
    pub avg_execution_time_ms: Option<i64>,
    pub issues_detected: i64,
    pub issues_resolved: i64,
    pub tickets_created: i64,
    pub timeout_executions: i64,
    pub abandoned_executions: i64,
    pub actions_taken: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct SecurityEvent {
    pub id: String,
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub address: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
    pub reason: Option<String>,
    pub subject: Option<String>,
    pub target: Option<String>,
    pub before_value: Option<Json<Value>>,
    pub after_value: Option<Json<Value>>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct TargetRow {
    pub bot: String,
    pub target: String,
    pub up: bool,
    pub status_code: Option<i64>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    pub cert_expires_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i64,
    pub last_checked_at: DateTime<Utc>,
    pub last_change_at: DateTime<Utc>,
    pub metadata: Option<Json<Value>>,
}

/// Open findings of one bot at one severity.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OpenCount {
    pub bot: String,
    pub severity: String,
    pub count: i64,
}

/// Finished passes of one bot since a moment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunCount {
    pub bot: String,
    pub total: i64,
    pub successful: i64,
}

// ---- the pass ------------------------------------------------------------------------------

/// Step 1–3 of a pass: refuse or take the lease and insert the running execution.
#[derive(Debug, Clone)]
pub struct BeginPass {
    pub bot: String,
    pub execution_id: String,
    /// The schedule slot this call falls in; `None` for a bot with no schedule.
    pub slot: Option<DateTime<Utc>>,
    pub force: bool,
    pub idempotency_key: Option<String>,
    pub triggered_by: String,
    pub default_timeout_ms: i64,
    pub lease_grace_ms: i64,
}

#[derive(Debug, Clone)]
pub enum BeginOutcome {
    Started(Box<Started>),
    Skipped(Skip),
    /// The `Idempotency-Key` was seen before: this is the execution that served it.
    Replay {
        execution_id: String,
    },
    UnknownBot,
}

#[derive(Debug, Clone)]
pub struct Started {
    /// The bot row as it was before this pass took its lease.
    pub bot: BotRow,
    pub execution_id: String,
    pub started_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub timeout_ms: i64,
    /// A half-open circuit's one trial pass.
    pub trial: bool,
    /// An execution whose lease had expired and which this pass marked abandoned.
    pub abandoned: Option<String>,
    /// Open findings of this bot when the pass began (none: nothing to auto-clear).
    pub open_findings: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    Paused,
    AlreadyRunning {
        execution_id: String,
        started_at: Option<DateTime<Utc>>,
        lease_expires_at: Option<DateTime<Utc>>,
    },
    DuplicateSlot {
        execution_id: String,
        slot_at: DateTime<Utc>,
    },
    CircuitOpen {
        until: DateTime<Utc>,
    },
}

impl Skip {
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::Paused => "paused",
            Skip::AlreadyRunning { .. } => "already_running",
            Skip::DuplicateSlot { .. } => "duplicate_slot",
            Skip::CircuitOpen { .. } => "circuit_open",
        }
    }
}

/// A finding as a pass observed it, ready to reconcile.
#[derive(Debug, Clone)]
pub struct NewFinding {
    pub id: String,
    pub severity: Severity,
    pub category: String,
    pub title: String,
    pub description: String,
    pub component: String,
    pub fingerprint: String,
    pub metadata: Value,
}

/// Which open findings a pass may auto-clear: those on components it checked and did not see.
#[derive(Debug, Clone, Default)]
pub struct Reconcile {
    pub components: Vec<String>,
    pub seen_fingerprints: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RecordFindings {
    pub bot_id: String,
    pub execution_id: String,
    pub now: DateTime<Utc>,
    pub findings: Vec<NewFinding>,
    pub reconcile: Reconcile,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordedFinding {
    pub id: String,
    pub fingerprint: String,
    pub severity: String,
    pub occurrences: i64,
    pub detected_at: DateTime<Utc>,
    pub last_heal_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct ClearedFinding {
    pub id: String,
    pub fingerprint: String,
    pub severity: String,
    pub title: String,
}

#[derive(Debug, Clone, Default)]
pub struct Reconciled {
    pub findings: Vec<RecordedFinding>,
    pub cleared: Vec<ClearedFinding>,
}

#[derive(Debug, Clone)]
pub struct NewAction {
    pub id: String,
    pub bot_id: String,
    pub execution_id: String,
    pub finding_id: Option<String>,
    pub action_type: String,
    pub description: String,
    pub success: bool,
    pub error_message: Option<String>,
    pub metadata: Value,
    pub knowledge_id: Option<String>,
    pub verified: Option<bool>,
    pub taken_at: DateTime<Utc>,
}

/// One self-healing attempt, recorded as soon as it is over (so a crash cannot lose it).
#[derive(Debug, Clone)]
pub struct HealRecord {
    pub action: NewAction,
    /// Resolve the finding `auto-fixed` (the re-check no longer sees it).
    pub resolve_finding: bool,
}

/// A target's result in one pass (a page, an endpoint, a probe).
#[derive(Debug, Clone, Serialize)]
pub struct TargetObservation {
    pub target: String,
    pub up: bool,
    pub status_code: Option<i64>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    pub cert_expires_at: Option<DateTime<Utc>>,
    pub metadata: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CircuitUpdate {
    pub state: CircuitState,
    pub consecutive_failures: i64,
    pub open_until: Option<DateTime<Utc>>,
}

/// Step 7: everything a pass ends with, in one transaction.
#[derive(Debug, Clone)]
pub struct FinishPass {
    pub execution_id: String,
    pub bot_id: String,
    pub now: DateTime<Utc>,
    pub status: ExecStatus,
    pub execution_time_ms: i64,
    pub checks_performed: i64,
    pub issues_found: i64,
    pub actions_taken: i64,
    pub error_message: Option<String>,
    pub metadata: Value,
    pub next_execution_at: Option<DateTime<Utc>>,
    pub circuit: CircuitUpdate,
    /// New findings this pass (for the day's `issues_detected`).
    pub issues_detected: i64,
    /// Findings this pass resolved (auto-cleared or auto-fixed).
    pub issues_resolved: i64,
    /// Actions the bot itself took during its checks (e.g. retries).
    pub actions: Vec<NewAction>,
    pub targets: Vec<TargetObservation>,
}

#[derive(Debug, Clone)]
pub enum FinishOutcome {
    Recorded,
    /// The lease expired and another caller took it over: this execution is `abandoned`.
    LeaseLost,
}

// ---- admin queries -------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct ExecutionQuery {
    pub bot: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
    /// Rows strictly older than this (started_at, id).
    pub before: Option<(DateTime<Utc>, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct FindingQuery {
    pub bot: Option<String>,
    pub severity: Option<String>,
    pub open: Option<bool>,
    pub limit: i64,
    pub before: Option<(DateTime<Utc>, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub kind: Option<String>,
    pub limit: i64,
    pub before: Option<(DateTime<Utc>, String)>,
}

#[derive(Debug, Clone)]
pub struct NewSecurityEvent {
    pub kind: &'static str,
    pub address: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
    pub reason: Option<String>,
    pub subject: Option<String>,
    pub target: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct KnowledgeInput {
    pub category: String,
    pub issue_pattern: String,
    pub solution: String,
    pub action: Option<Value>,
    pub enabled: bool,
}

/// A bot's pass deadline: `timeout_ms` in its config, else the default.
pub fn pass_timeout_ms(config: Option<&Value>, default_ms: i64) -> i64 {
    config
        .and_then(|c| c.get("timeout_ms"))
        .and_then(Value::as_i64)
        .filter(|v| *v > 0)
        .unwrap_or(default_ms)
}

/// Upper bounds (ms) of the latency histogram kept per target and bucket; a 14th bucket holds
/// everything slower.
pub const LATENCY_BOUNDS_MS: [f64; 13] = [
    25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 10000.0,
];

/// The histogram's columns in `bot_target_stats`, in bucket order.
pub const LATENCY_COLUMNS: [&str; 14] = [
    "lat_le_25",
    "lat_le_50",
    "lat_le_100",
    "lat_le_200",
    "lat_le_300",
    "lat_le_500",
    "lat_le_750",
    "lat_le_1000",
    "lat_le_1500",
    "lat_le_2000",
    "lat_le_3000",
    "lat_le_5000",
    "lat_le_10000",
    "lat_le_inf",
];

/// The histogram bucket a latency falls in.
pub fn latency_bucket(ms: f64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// One bucket (an hour, or a day once older than 48 hours) of a target's results.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStat {
    pub bot: String,
    pub target: String,
    pub granularity: String,
    pub bucket_start: DateTime<Utc>,
    pub checks: i64,
    pub failures: i64,
    /// Sum of the latencies measured (checks that got no answer have none).
    pub latency_sum_ms: f64,
    pub latency_max_ms: f64,
    pub latency_buckets: [i64; 14],
}

/// What a fold of target history did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FoldReport {
    pub hourly_rows_folded: u64,
    pub daily_rows_written: u64,
    pub daily_rows_dropped: u64,
    pub targets_forgotten: u64,
}

/// A blocked or rate-limited address.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct BlockRow {
    pub address: String,
    /// `block` or `rate_limit`.
    pub kind: String,
    pub requests_per_minute: Option<i64>,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub finding_id: Option<String>,
}

/// Refusals of one address over a window.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AddressCount {
    pub address: String,
    pub count: i64,
    pub last_at: DateTime<Utc>,
}

/// Requests from one address in one minute, summed over replicas.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AddressMinute {
    pub address: String,
    pub minute_start: DateTime<Utc>,
    pub requests: i64,
}

/// Raw pools, for database diagnostics and maintenance that only make sense per backend.
#[derive(Clone)]
pub enum Pools {
    Sqlite {
        read: sqlx::SqlitePool,
        write: sqlx::SqlitePool,
    },
    Postgres(sqlx::PgPool),
}

/// One batch of old records, read for the archive.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveBatch {
    pub executions: Vec<ExecutionRow>,
    /// Resolved findings first detected by these executions, without tickets: archived.
    pub findings: Vec<FindingRow>,
    pub actions: Vec<ActionRow>,
}

impl ArchiveBatch {
    pub fn rows(&self) -> usize {
        self.executions.len() + self.findings.len() + self.actions.len()
    }
}
