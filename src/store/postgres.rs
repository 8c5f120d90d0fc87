//! PostgreSQL: production and several replicas. The lease is taken with a row lock on the bot
//! (`SELECT … FOR UPDATE`), so two replicas asking at once queue for a moment and exactly one
//! wins; migrations are serialised with an advisory lock.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;

use super::migrate::{Migration, POSTGRES};
use super::*;

type Db = sqlx::Postgres;
const BACKEND: Backend = Backend::Postgres;
const MIGRATIONS: &[Migration] = POSTGRES;
const LOCK_BOT_SQL: &str = concat!(
    "SELECT ",
    bot_cols!(),
    ", (SELECT COUNT(*) FROM bot_findings f WHERE f.bot_id = bots.id AND f.resolved_at IS NULL) \
     AS open_findings FROM bots WHERE name = $1 FOR UPDATE"
);
/// An execution's start day (UTC) in this dialect.
const DAY_OF_STARTED: &str = "CAST(e.started_at AT TIME ZONE 'UTC' AS DATE)";
const EXPIRED_LEASES_SQL: &str = "SELECT id, name, lease_execution_id FROM bots \
     WHERE lease_execution_id IS NOT NULL AND lease_expires_at <= $1 FOR UPDATE SKIP LOCKED";
/// Any constant will do, as long as it is always the same one.
const MIGRATION_LOCK_KEY: i64 = 0x626f_7466_6c65_6574; // "botfleet"

pub struct PgStore {
    pool: PgPool,
}

type StoreImpl = PgStore;

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let redacted = crate::config::redact_url(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad PostgreSQL URL {redacted}: {e}")))?
            .application_name("botfleet");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {redacted}: {e}")))?;
        Ok(Self { pool })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(self.pool.begin().await?)
    }

    async fn lock_migrations(tx: &mut sqlx::Transaction<'static, Db>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    fn raw_pools(&self) -> Pools {
        Pools::Postgres(self.pool.clone())
    }

    async fn close_pools(&self) {
        self.pool.close().await;
    }
}

impl PgStore {
    /// Per-target state and the hour's stats: one statement per table whatever the number of
    /// targets, the rows passed as arrays and unnested (a handful of parameters, one cached plan).
    async fn write_targets(
        tx: &mut Tx,
        bot_id: &str,
        now: DateTime<Utc>,
        targets: &[TargetObservation],
    ) -> Result<()> {
        let unique = unique_targets(targets);
        let names: Vec<&str> = unique.iter().map(|t| t.target.as_str()).collect();
        let up: Vec<bool> = unique.iter().map(|t| t.up).collect();
        let status: Vec<Option<i64>> = unique.iter().map(|t| t.status_code).collect();
        let latency: Vec<Option<f64>> = unique.iter().map(|t| t.latency_ms).collect();
        let error: Vec<Option<&str>> = unique.iter().map(|t| t.error.as_deref()).collect();
        let cert: Vec<Option<DateTime<Utc>>> = unique.iter().map(|t| t.cert_expires_at).collect();
        let metadata: Vec<Json<&Value>> = unique.iter().map(|t| Json(&t.metadata)).collect();
        let sql = format!(
            "INSERT INTO bot_targets (bot_id, target, up, status_code, latency_ms, error, \
             cert_expires_at, consecutive_failures, last_checked_at, last_change_at, metadata) \
             SELECT $1, u.target, u.up, u.status_code, u.latency_ms, u.error, u.cert_expires_at, \
                 CASE WHEN u.up THEN 0 ELSE 1 END, $2, $2, u.metadata \
             FROM UNNEST($3::text[], $4::bool[], $5::int8[], $6::float8[], $7::text[], \
                 $8::timestamptz[], $9::jsonb[]) AS u(target, up, status_code, latency_ms, error, \
                 cert_expires_at, metadata){TARGET_CONFLICT}"
        );
        sqlx::query(&sql)
            .bind(bot_id)
            .bind(now)
            .bind(&names)
            .bind(&up)
            .bind(&status)
            .bind(&latency)
            .bind(&error)
            .bind(&cert)
            .bind(&metadata)
            .execute(&mut **tx)
            .await?;

        let failed: Vec<i64> = unique.iter().map(|t| if t.up { 0 } else { 1 }).collect();
        let latency_sum: Vec<f64> = unique.iter().map(|t| t.latency_ms.unwrap_or(0.0)).collect();
        let bucket: Vec<i64> = unique
            .iter()
            .map(|t| {
                t.latency_ms
                    .map(|ms| latency_bucket(ms) as i64)
                    .unwrap_or(-1)
            })
            .collect();
        let lat: Vec<String> = (0..LATENCY_COLUMNS.len())
            .map(|k| format!("CASE WHEN u.bucket = {k} THEN 1 ELSE 0 END"))
            .collect();
        let sql = format!(
            "INSERT INTO bot_target_stats (bot_id, target, granularity, bucket_start, checks, \
             failures, latency_sum_ms, latency_max_ms, {}) \
             SELECT $1, u.target, 'hour', $2, 1, u.failed, u.latency, u.latency, {} \
             FROM UNNEST($3::text[], $4::int8[], $5::float8[], $6::int8[]) AS u(target, failed, latency, bucket){}",
            LATENCY_COLUMNS.join(", "),
            lat.join(", "),
            stats_conflict()
        );
        sqlx::query(&sql)
            .bind(bot_id)
            .bind(hour_of(now))
            .bind(&names)
            .bind(&failed)
            .bind(&latency_sum)
            .bind(&bucket)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

include!("shared.rs");
