//! SQLite: the zero-set-up default. WAL mode, a busy timeout, foreign keys on; one writer
//! connection (writes queue in-process instead of failing with SQLITE_BUSY) and a few readers.
//! Write transactions start with `BEGIN IMMEDIATE`, so a second process on the same file
//! (`botfleet run` beside `botfleet serve`) waits for the write lock rather than deadlocking.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;

use super::migrate::{Migration, SQLITE};
use super::*;

type Db = sqlx::Sqlite;
const BACKEND: Backend = Backend::Sqlite;
const MIGRATIONS: &[Migration] = SQLITE;
// BEGIN IMMEDIATE already holds the write lock: a plain read is enough.
const LOCK_BOT_SQL: &str = concat!(
    "SELECT ",
    bot_cols!(),
    ", (SELECT COUNT(*) FROM bot_findings f WHERE f.bot_id = bots.id AND f.resolved_at IS NULL) \
     AS open_findings FROM bots WHERE name = $1"
);
/// An execution's start day (UTC) in this dialect.
const DAY_OF_STARTED: &str = "substr(e.started_at, 1, 10)";
const EXPIRED_LEASES_SQL: &str = "SELECT id, name, lease_execution_id FROM bots \
     WHERE lease_execution_id IS NOT NULL AND lease_expires_at <= $1";

pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
}

type StoreImpl = SqliteStore;

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL {url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Checkpoints run in the background (below), not inside whichever commit crosses
            // the threshold; the last connection to close checkpoints what is left.
            .pragma("wal_autocheckpoint", "0");
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            if let Some(dir) = options
                .get_filename()
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!(
                        "cannot create the directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {url}: {e}")))?;
        // An in-memory database exists once per connection: share the writer.
        let read = if in_memory {
            write.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot open {url}: {e}")))?
        };
        if !in_memory {
            tokio::spawn(checkpoint_loop(read.clone()));
        }
        Ok(Self { read, write })
    }

    fn reader(&self) -> &SqlitePool {
        &self.read
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn lock_migrations(_tx: &mut sqlx::Transaction<'static, Db>) -> Result<()> {
        Ok(()) // BEGIN IMMEDIATE serialises writers across processes.
    }

    fn raw_pools(&self) -> Pools {
        Pools::Sqlite {
            read: self.read.clone(),
            write: self.write.clone(),
        }
    }

    async fn close_pools(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Copies the WAL back into the database every few seconds, from a reader connection, so
/// writers never pay for it. Ends when the pool closes.
async fn checkpoint_loop(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "SQLite checkpoint failed");
        }
    }
}

impl SqliteStore {
    /// Per-target state and the hour's stats: multi-row upserts, a few hundred rows each.
    async fn write_targets(
        tx: &mut Tx,
        bot_id: &str,
        now: DateTime<Utc>,
        targets: &[TargetObservation],
    ) -> Result<()> {
        let unique = unique_targets(targets);
        let hour = hour_of(now);
        for chunk in unique.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO bot_targets (bot_id, target, up, status_code, latency_ms, error, \
                 cert_expires_at, consecutive_failures, last_checked_at, last_change_at, metadata) VALUES ",
            );
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = 3 + i * 7;
                    format!(
                        "($1, ${b}, ${}, ${}, ${}, ${}, ${}, CASE WHEN ${} THEN 0 ELSE 1 END, $2, $2, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 1,
                        b + 6
                    )
                })
                .collect();
            sql.push_str(&rows.join(", "));
            sql.push_str(TARGET_CONFLICT);
            let mut q = sqlx::query(&sql).bind(bot_id).bind(now);
            for t in chunk {
                q = q
                    .bind(&t.target)
                    .bind(t.up)
                    .bind(t.status_code)
                    .bind(t.latency_ms)
                    .bind(&t.error)
                    .bind(t.cert_expires_at)
                    .bind(Json(&t.metadata));
            }
            q.execute(&mut **tx).await?;

            let mut sql = format!(
                "INSERT INTO bot_target_stats (bot_id, target, granularity, bucket_start, checks, \
                 failures, latency_sum_ms, latency_max_ms, {}) VALUES ",
                LATENCY_COLUMNS.join(", ")
            );
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = 3 + i * 4;
                    let lat: Vec<String> = (0..LATENCY_COLUMNS.len())
                        .map(|k| format!("CASE WHEN ${} = {k} THEN 1 ELSE 0 END", b + 3))
                        .collect();
                    format!(
                        "($1, ${b}, 'hour', $2, 1, ${}, ${}, ${}, {})",
                        b + 1,
                        b + 2,
                        b + 2,
                        lat.join(", ")
                    )
                })
                .collect();
            sql.push_str(&rows.join(", "));
            sql.push_str(&stats_conflict());
            let mut q = sqlx::query(&sql).bind(bot_id).bind(hour);
            for t in chunk {
                q = q
                    .bind(&t.target)
                    .bind(if t.up { 0i64 } else { 1i64 })
                    .bind(t.latency_ms.unwrap_or(0.0))
                    .bind(
                        t.latency_ms
                            .map(|ms| latency_bucket(ms) as i64)
                            .unwrap_or(-1),
                    );
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

include!("shared.rs");
