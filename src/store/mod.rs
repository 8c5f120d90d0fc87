//! Storage: one trait, two implementations (SQLite and PostgreSQL) chosen by the URL scheme.
//!
//! Both implementations run the same SQL, written once in `shared.rs` and compiled into each
//! backend module with `include!`: the schema gives both the same column names, integers are
//! 64-bit, timestamps are bound as `DateTime<Utc>` (TIMESTAMPTZ on PostgreSQL, fixed-offset
//! RFC 3339 text on SQLite, which sorts correctly), so the queries only differ where the dialects
//! do (row locks), and that is spelled out in each module.

/// Column lists shared by the queries of both backends.
macro_rules! bot_cols {
    () => {
        "id, name, display_name, description, schedule_cron, api_endpoint, status, \
         last_execution_at, next_execution_at, total_runs, successful_runs, failed_runs, \
         avg_execution_time_ms, created_at, updated_at, config, lease_execution_id, \
         lease_expires_at, circuit_state, consecutive_failures, circuit_open_until, last_status, \
         last_error, last_success_at"
    };
}

mod migrate;
pub mod model;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

pub use model::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached; nothing was done.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut => {
                StoreError::Unavailable("no database connection became free in time".into())
            }
            sqlx::Error::PoolClosed => {
                StoreError::Unavailable("the connection pool is closed".into())
            }
            sqlx::Error::Io(io) => StoreError::Unavailable(format!("connection failed: {io}")),
            sqlx::Error::Tls(t) => {
                StoreError::Unavailable(format!("TLS to the database failed: {t}"))
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::Database(db) if is_busy(db.code().as_deref()) => {
                StoreError::Unavailable(format!("the database is busy: {}", db.message()))
            }
            _ => StoreError::Db(e),
        }
    }
}

/// SQLite's BUSY/LOCKED and PostgreSQL's connection-class and shutdown errors.
fn is_busy(code: Option<&str>) -> bool {
    matches!(code, Some("5") | Some("6") | Some("517") | Some("261"))
        || code.is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P03")
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Everything botfleet keeps. Writes that belong together happen in one transaction inside
/// one method; callers never hold a transaction open across a network call.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies pending migrations; returns the names applied.
    async fn migrate(&self) -> Result<Vec<String>>;
    async fn ping(&self) -> Result<()>;
    async fn close(&self);

    // bots
    async fn sync_bots(&self, defs: &[BotDef], now: DateTime<Utc>) -> Result<()>;
    async fn list_bots(&self) -> Result<Vec<BotRow>>;
    async fn get_bot(&self, name: &str) -> Result<Option<BotRow>>;
    /// Sets `active`/`paused`; returns the row before and after, or `None` for an unknown bot.
    async fn set_bot_status(
        &self,
        name: &str,
        status: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(BotRow, BotRow)>>;
    /// Replaces the bot's config; returns the config before, or `None` for an unknown bot.
    async fn set_bot_config(
        &self,
        name: &str,
        config: &Value,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<Value>>>;

    // the pass
    /// Reads the time from `clock` once the bot's row is locked, so a pass never records a
    /// start before the previous pass released the lease.
    async fn begin_pass(
        &self,
        req: &BeginPass,
        clock: &dyn crate::clock::Clock,
    ) -> Result<BeginOutcome>;
    async fn record_findings(&self, req: &RecordFindings) -> Result<Reconciled>;
    async fn record_heal(&self, heal: &HealRecord) -> Result<()>;
    async fn finish_pass(&self, req: &FinishPass) -> Result<FinishOutcome>;
    /// Marks `abandoned` every running execution whose lease expired; returns (bot, execution).
    async fn abandon_expired(&self, now: DateTime<Utc>) -> Result<Vec<(String, String)>>;

    // executions, findings, actions
    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>>;
    async fn list_executions(&self, q: &ExecutionQuery) -> Result<Vec<ExecutionRow>>;
    async fn execution_findings(&self, execution_id: &str) -> Result<Vec<FindingRow>>;
    async fn execution_actions(&self, execution_id: &str) -> Result<Vec<ActionRow>>;
    async fn get_finding(&self, id: &str) -> Result<Option<FindingRow>>;
    async fn list_findings(&self, q: &FindingQuery) -> Result<Vec<FindingRow>>;
    /// Resolves an open finding by hand; `None` when there is no such finding.
    async fn resolve_finding(
        &self,
        id: &str,
        by: &str,
        notes: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<FindingRow>>;

    // knowledge
    async fn list_knowledge(&self) -> Result<Vec<KnowledgeRow>>;
    async fn get_knowledge(&self, id: &str) -> Result<Option<KnowledgeRow>>;
    async fn insert_knowledge(
        &self,
        id: &str,
        k: &KnowledgeInput,
        now: DateTime<Utc>,
    ) -> Result<KnowledgeRow>;
    async fn update_knowledge(
        &self,
        id: &str,
        k: &KnowledgeInput,
        now: DateTime<Utc>,
    ) -> Result<Option<KnowledgeRow>>;
    async fn delete_knowledge(&self, id: &str) -> Result<bool>;

    // security and audit
    async fn record_security_event(&self, e: &NewSecurityEvent) -> Result<()>;
    async fn list_security_events(&self, q: &EventQuery) -> Result<Vec<SecurityEvent>>;

    // aggregates for health, status and metrics
    async fn open_finding_counts(&self) -> Result<Vec<OpenCount>>;
    async fn open_ticket_count(&self) -> Result<i64>;
    async fn run_counts_since(&self, since: DateTime<Utc>) -> Result<Vec<RunCount>>;
    async fn daily_metrics(
        &self,
        bot: Option<&str>,
        since: NaiveDate,
    ) -> Result<Vec<DailyMetricsRow>>;
    async fn list_targets(&self) -> Result<Vec<TargetRow>>;
    async fn get_target(&self, bot: &str, target: &str) -> Result<Option<TargetRow>>;
    /// Stats buckets starting at or after `since`, optionally for one bot and one target.
    async fn target_stats(
        &self,
        bot: Option<&str>,
        target: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<TargetStat>>;
    // security: blocks, request counts, refusals
    async fn list_blocks(&self, now: DateTime<Utc>) -> Result<Vec<BlockRow>>;
    /// Adds a block, or replaces the address's current one.
    async fn put_block(&self, block: &BlockRow) -> Result<()>;
    /// Lifts a block; the row it was, or `None`.
    async fn delete_block(&self, address: &str) -> Result<Option<BlockRow>>;
    async fn add_address_requests(&self, counts: &[(String, DateTime<Utc>, i64)]) -> Result<()>;
    /// Minutes since `since` in which an address made more than `over` requests.
    async fn busy_addresses(&self, since: DateTime<Utc>, over: i64) -> Result<Vec<AddressMinute>>;
    /// Security events of `kind` since `since`, counted by address.
    async fn events_by_address(
        &self,
        kind: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<AddressCount>>;
    /// Drops expired blocks, request counts older than `requests_before` and security events
    /// older than `events_before`; returns the events dropped.
    async fn prune_security(
        &self,
        now: DateTime<Utc>,
        requests_before: DateTime<Utc>,
        events_before: DateTime<Utc>,
    ) -> Result<u64>;

    // database health and maintenance
    fn pools(&self) -> Pools;
    /// Writes, reads back and deletes a row; the three durations in milliseconds.
    async fn canary(&self, now: DateTime<Utc>) -> Result<(f64, f64, f64)>;
    /// Reads a row of each of botfleet's tables; the tables that could not be read, and why.
    async fn read_tables(&self) -> Result<Vec<(String, Option<String>)>>;
    /// Executions that started before `cutoff` and are finished.
    async fn archivable(&self, cutoff: DateTime<Utc>) -> Result<i64>;
    /// Makes sure every (bot, day) of archivable executions has its `bot_metrics` row, computing
    /// missing ones from the executions; returns how many were written.
    async fn ensure_rollups(&self, cutoff: DateTime<Utc>) -> Result<u64>;
    /// The oldest archivable executions with their resolved findings and actions, at most
    /// `max_rows` rows in all.
    async fn archive_read(&self, cutoff: DateTime<Utc>, max_rows: usize) -> Result<ArchiveBatch>;
    /// Deletes what a batch holds, in one short transaction; findings still open (or with a
    /// ticket) that those executions detected are kept, detached from them.
    async fn archive_delete(&self, batch: &ArchiveBatch) -> Result<u64>;

    /// Keeps history bounded: hourly rows before `hourly_before` fold into daily rows (in
    /// batches, one transaction each), daily rows before `daily_before` go, and targets not
    /// checked since `stale_before` are forgotten with their stats.
    async fn fold_target_stats(
        &self,
        hourly_before: DateTime<Utc>,
        daily_before: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<FoldReport>;
}

/// Opens the store the URL names (`sqlite:` or `postgres://`), creating a SQLite file and its
/// directory when missing. Does not migrate.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PgStore::connect(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::Unavailable(format!(
            "unsupported database URL scheme in {}",
            crate::config::redact_url(url)
        )))
    }
}

/// A new time-ordered id (UUIDv7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
