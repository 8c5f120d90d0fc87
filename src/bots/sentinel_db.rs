//! sentinel-db: botfleet's own database (SQLite or PostgreSQL) and, optionally, a monitored
//! PostgreSQL (`MONITORED_DATABASE_URL`, read-only). Connect time, every table readable, a
//! canary row written, read and deleted (own database), size against `DB_STORAGE_QUOTA_BYTES`,
//! connections, long and slow queries, idle-in-transaction sessions, replication lag, dead
//! tuples; SQLite's integrity, file sizes and free pages; records past `RETENTION_DAYS`; the
//! last backup's age. What it cannot measure it names, with the reason.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Connection;

use super::{check, parse_config, Bot};
use crate::config::Config;
use crate::dbcheck::postgres::Scope;
use crate::dbcheck::{self, Report, Thresholds};
use crate::engine::{round1, BotError, PassContext};
use crate::error::FieldError;
use crate::store::{Pools, Severity};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Let the `end_idle_sessions` fix end sessions idle in a transaction.
    #[serde(default)]
    pub end_idle_transactions: bool,
    #[serde(default = "day_and_a_bit")]
    pub backup_max_age_hours: f64,
}

fn day_and_a_bit() -> f64 {
    26.0
}

#[derive(Default)]
pub struct SentinelDb;

/// A pool on the monitored database whose every transaction is read-only.
pub async fn monitored_pool(url: &str) -> Result<PgPool, String> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| format!("bad MONITORED_DATABASE_URL: {e}"))?
        .application_name("botfleet sentinel-db")
        .options([("default_transaction_read_only", "on")]);
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())
}

#[async_trait]
impl Bot for SentinelDb {
    fn name(&self) -> &'static str {
        "sentinel-db"
    }

    fn display_name(&self) -> &'static str {
        "Sentinel DB"
    }

    fn description(&self) -> &'static str {
        "Databases: connect time, reads, a canary write, size, connections, slow and long queries, replication, dead tuples, backups"
    }

    fn default_config(&self, _env: &Config) -> Value {
        json!({
            "thresholds": Thresholds::default(),
            "end_idle_transactions": false,
            "backup_max_age_hours": day_and_a_bit(),
        })
    }

    fn validate_config(&self, config: &Value) -> Vec<FieldError> {
        let c: DbConfig = match parse_config(config) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut errors = Vec::new();
        let t = &c.thresholds;
        for (name, v) in [
            ("storage_warning_percent", t.storage_warning_percent),
            ("storage_critical_percent", t.storage_critical_percent),
            ("connections_warning_percent", t.connections_warning_percent),
            (
                "connections_critical_percent",
                t.connections_critical_percent,
            ),
            ("dead_tuple_percent", t.dead_tuple_percent),
            ("free_page_percent", t.free_page_percent),
        ] {
            check::percent(&mut errors, &format!("thresholds.{name}"), v);
        }
        for (name, v) in [
            ("long_query_ms", t.long_query_ms),
            ("slow_query_mean_ms", t.slow_query_mean_ms),
            ("idle_in_transaction_secs", t.idle_in_transaction_secs),
            ("replication_lag_secs", t.replication_lag_secs),
        ] {
            check::non_negative(&mut errors, &format!("thresholds.{name}"), v);
        }
        if t.dead_tuple_min < 0 {
            errors.push(FieldError::new(
                "thresholds.dead_tuple_min",
                "must be zero or more",
            ));
        }
        check::non_negative(&mut errors, "backup_max_age_hours", c.backup_max_age_hours);
        errors
    }

    async fn run(&self, ctx: &PassContext) -> Result<(), BotError> {
        let c: DbConfig = ctx.config_as()?;
        let env = ctx.env.clone();
        let quota = env.db_storage_quota_bytes;

        // botfleet's own database.
        let mut r = Report::new(ctx, "botfleet_db", "db:botfleet");
        r.figure("backend", ctx.store.backend().as_str());
        connect_time(&mut r, &env.database_url).await;
        match ctx.store.read_tables().await {
            Ok(tables) => {
                let bad: Vec<_> = tables.iter().filter(|(_, p)| p.is_some()).collect();
                r.figure("tables_read", tables.len() - bad.len());
                if !bad.is_empty() {
                    r.finding(
                        Severity::Critical,
                        "db",
                        "Tables unreadable",
                        "tables",
                        format!(
                            "{} of botfleet's tables could not be read: {}",
                            bad.len(),
                            bad.iter()
                                .map(|(t, p)| format!("{t} ({})", p.as_deref().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        json!({"tables": bad.iter().map(|(t, _)| t).collect::<Vec<_>>()}),
                    );
                }
            }
            Err(e) => r.not_measured("tables_read", e.to_string()),
        }
        match ctx.store.canary(ctx.now()).await {
            Ok((write, read, delete)) => r.figure(
                "canary_ms",
                json!({"write": round2(write), "read": round2(read), "delete": round2(delete)}),
            ),
            Err(e) => r.finding(
                Severity::Critical,
                "db",
                "Canary write failed",
                "canary",
                format!("a row could not be written, read back and deleted: {e}"),
                json!({}),
            ),
        }
        match ctx.store.pools() {
            Pools::Postgres(pool) => {
                dbcheck::postgres::check(&mut r, &pool, Scope::Own, &c.thresholds, quota).await
            }
            Pools::Sqlite { read, .. } => {
                let file = sqlite_file(&env.database_url);
                dbcheck::sqlite::check(&mut r, &read, &file, &c.thresholds, quota).await
            }
        }
        retention(&mut r, ctx).await;
        r.checked();

        // The monitored database, when there is one.
        match &env.monitored_database_url {
            Some(url) => monitored(ctx, url, &c).await,
            None => ctx.note("no MONITORED_DATABASE_URL: only botfleet's own database is checked"),
        }

        backups(ctx, &c).await;
        Ok(())
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn sqlite_file(url: &str) -> std::path::PathBuf {
    sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map(|o| o.get_filename().to_path_buf())
        .unwrap_or_else(|_| {
            url.trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .into()
        })
}

/// A fresh connection, timed: what a new client of the database waits.
async fn connect_time(r: &mut Report<'_>, url: &str) {
    let t = Instant::now();
    let result = if url.starts_with("sqlite:") {
        match sqlx::SqliteConnection::connect(url).await {
            Ok(c) => c.close().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    } else {
        match sqlx::PgConnection::connect(url).await {
            Ok(c) => c.close().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    match result {
        Ok(()) => r.figure("connect_ms", round2(t.elapsed().as_secs_f64() * 1000.0)),
        Err(e) => r.finding(
            Severity::Critical,
            "db",
            "Database unreachable",
            "connect",
            format!("a new connection failed: {}", crate::config::redact_url(&e)),
            json!({}),
        ),
    }
}

async fn retention(r: &mut Report<'_>, ctx: &PassContext) {
    let days = ctx.env.retention_days;
    let cutoff = ctx.now() - chrono::Duration::days(days as i64);
    match ctx.store.archivable(cutoff).await {
        Ok(n) => {
            r.figure("executions_past_retention", n);
            if n > 0 {
                r.finding(
                    Severity::Warning,
                    "retention",
                    "Records past retention",
                    "retention",
                    format!("{n} executions are older than RETENTION_DAYS={days}; they should be archived"),
                    json!({"executions": n, "retention_days": days}),
                );
            }
        }
        Err(e) => r.not_measured("executions_past_retention", e.to_string()),
    }
}

/// At most this many of the monitored database's tables are read in a pass.
const MONITORED_TABLES_READ: usize = 500;

async fn monitored(ctx: &PassContext, url: &str, c: &DbConfig) {
    let mut r = Report::new(ctx, "monitored_db", "db:monitored");
    let t = Instant::now();
    let pool = match monitored_pool(url).await {
        Ok(p) => p,
        Err(e) => {
            r.finding(
                Severity::Critical,
                "db",
                "Database unreachable",
                "connect",
                format!(
                    "the monitored database ({}) could not be reached: {e}",
                    crate::config::redact_url(url)
                ),
                json!({}),
            );
            r.checked();
            return;
        }
    };
    r.figure("connect_ms", round2(t.elapsed().as_secs_f64() * 1000.0));
    r.figure("read_only", true);
    let tables = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT schemaname::text, tablename::text, count(*) OVER () FROM pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2 LIMIT $1",
    )
    .bind(MONITORED_TABLES_READ as i64)
    .fetch_all(&pool)
    .await;
    match tables {
        Ok(tables) => {
            let total = tables.first().map_or(0, |t| t.2);
            if total > tables.len() as i64 {
                r.figure("tables_total", total);
                r.ctx.note(format!(
                    "the monitored database has {total} tables; the first {} (by schema and name) were read",
                    tables.len()
                ));
            }
            let mut bad = Vec::new();
            for (schema, table, _) in &tables {
                let sql = format!(
                    "SELECT 1 FROM {} LIMIT 1",
                    dbcheck::postgres::quote(schema, table)
                );
                if let Err(e) = sqlx::query(&sql).fetch_optional(&pool).await {
                    bad.push(format!("{schema}.{table} ({e})"));
                }
            }
            r.figure("tables_read", tables.len() - bad.len());
            if !bad.is_empty() {
                r.finding(
                    Severity::Error,
                    "db",
                    "Tables unreadable",
                    "tables",
                    format!("{} tables could not be read: {}", bad.len(), bad.join("; ")),
                    json!({"tables": bad}),
                );
            }
        }
        Err(e) => r.not_measured("tables_read", format!("pg_tables could not be read: {e}")),
    }
    r.not_measured("canary_ms", "the monitored database is used read-only");
    dbcheck::postgres::check(
        &mut r,
        &pool,
        Scope::Monitored,
        &c.thresholds,
        ctx.env.db_storage_quota_bytes,
    )
    .await;
    pool.close().await;
    r.checked();
}

/// The newest file's age in `BACKUP_DIR`, or the time `BACKUP_STATUS_URL` reports.
async fn backups(ctx: &PassContext, c: &DbConfig) {
    let env = &ctx.env;
    let mut r = Report::new(ctx, "backups", "db:backups");
    let last: Result<Option<DateTime<Utc>>, String> = if let Some(dir) = &env.backup_dir {
        r.figure("source", dir.display().to_string());
        newest_file(dir)
    } else if let Some(url) = &env.backup_status_url {
        r.figure("source", url);
        backup_status(&ctx.http, url).await
    } else {
        r.not_measured(
            "last_backup_at",
            "neither BACKUP_DIR nor BACKUP_STATUS_URL is set",
        );
        return;
    };
    let max = c.backup_max_age_hours;
    match last {
        Ok(Some(at)) => {
            let hours = (ctx.now() - at).num_seconds() as f64 / 3600.0;
            r.figure("last_backup_at", at);
            r.figure("age_hours", round1(hours));
            if hours > max {
                r.finding(
                    Severity::Error,
                    "backup",
                    "Backup overdue",
                    "backup",
                    format!("the last backup is {hours:.1} hours old (alert above {max} h)"),
                    json!({"last_backup_at": at, "age_hours": hours}),
                );
            }
        }
        Ok(None) => r.finding(
            Severity::Error,
            "backup",
            "Backup overdue",
            "backup",
            "no backup was found".to_string(),
            json!({}),
        ),
        Err(why) => {
            r.not_measured("last_backup_at", why.clone());
            ctx.note(format!("backup age not measured: {why}"));
            return;
        }
    }
    r.checked();
}

fn newest_file(dir: &Path) -> Result<Option<DateTime<Utc>>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read BACKUP_DIR={}: {e}", dir.display()))?;
    let mut newest: Option<SystemTime> = None;
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_file() {
            if let Ok(t) = meta.modified() {
                newest = newest.max(Some(t));
            }
        }
    }
    Ok(newest.map(DateTime::<Utc>::from))
}

/// `BACKUP_STATUS_URL` answers JSON with the last backup's time under `last_backup_at`
/// (or `completed_at`, `finished_at`), RFC 3339.
async fn backup_status(http: &reqwest::Client, url: &str) -> Result<Option<DateTime<Utc>>, String> {
    let url = crate::engine::expand_env(url)?;
    let resp = http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            format!(
                "BACKUP_STATUS_URL could not be reached: {}",
                crate::error::chain(&e)
            )
        })?;
    if !resp.status().is_success() {
        return Err(format!(
            "BACKUP_STATUS_URL answered {}",
            resp.status().as_u16()
        ));
    }
    let v: Value = resp
        .json()
        .await
        .map_err(|e| format!("BACKUP_STATUS_URL did not answer JSON: {e}"))?;
    let field = ["last_backup_at", "completed_at", "finished_at"]
        .iter()
        .find_map(|k| v.get(*k));
    match field {
        None => Err("BACKUP_STATUS_URL's JSON has no last_backup_at".into()),
        Some(Value::Null) => Ok(None),
        Some(t) => t
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| Some(t.with_timezone(&Utc)))
            .ok_or_else(|| format!("last_backup_at is not an RFC 3339 time: {t}")),
    }
}
