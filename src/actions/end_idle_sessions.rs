//! `end_idle_sessions`: ends PostgreSQL sessions idle in a transaction past the threshold — only
//! when sentinel-db's config sets `end_idle_transactions`. It re-checks each session's state
//! first, so a process id reused since the check is never hit.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::{Action, ActionContext};
use crate::error::FieldError;
use crate::store::Pools;

pub struct EndIdleSessions;

#[async_trait]
impl Action for EndIdleSessions {
    fn name(&self) -> &'static str {
        "end_idle_sessions"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        match params.as_object() {
            Some(m) if m.is_empty() => Vec::new(),
            _ => vec![FieldError::new(
                "(params)",
                "end_idle_sessions takes no parameters",
            )],
        }
    }

    async fn apply(&self, cx: &ActionContext<'_>, _params: &Value) -> Result<String, String> {
        if cx
            .pass
            .config
            .get("end_idle_transactions")
            .and_then(Value::as_bool)
            != Some(true)
        {
            return Err("not allowed: set end_idle_transactions to true in sentinel-db's config to let it end sessions".into());
        }
        let pids: Vec<i32> = cx.finding.metadata["pids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_i64().map(|p| p as i32))
            .collect();
        let threshold = cx.pass.config["thresholds"]["idle_in_transaction_secs"]
            .as_f64()
            .unwrap_or(300.0);
        let pool = match (cx.finding.component.as_str(), cx.pass.store.pools()) {
            ("db:botfleet", Pools::Postgres(pool)) => pool,
            ("db:botfleet", Pools::Sqlite { .. }) => {
                return Err("SQLite has no sessions to end".into())
            }
            ("db:monitored", _) => {
                let url = cx
                    .pass
                    .env
                    .monitored_database_url
                    .as_deref()
                    .ok_or("MONITORED_DATABASE_URL is not set")?;
                crate::bots::sentinel_db::monitored_pool(url)
                    .await
                    .map_err(|e| format!("cannot connect to the monitored database: {e}"))?
            }
            (other, _) => return Err(format!("no database behind {other:?}")),
        };
        let ended: Vec<(i32, bool)> = sqlx::query_as(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1) \
             AND state IN ('idle in transaction', 'idle in transaction (aborted)') \
             AND state_change < now() - make_interval(secs => $2)",
        )
        .bind(&pids)
        .bind(threshold)
        .fetch_all(&pool)
        .await
        .map_err(|e| format!("ending the sessions failed: {e}"))?;
        let ended: Vec<i32> = ended
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(p, _)| p)
            .collect();
        // Sessions end a moment after the signal; wait for them, briefly.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let left: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&ended)
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(0);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if ended.is_empty() {
            return Err("none of those sessions is still idle in a transaction".into());
        }
        Ok(format!(
            "ended sessions {}",
            ended
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}
