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

    async fn close_pools(&self) {
        self.pool.close().await;
    }
}

include!("shared.rs");
