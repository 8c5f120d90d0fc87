//! `vacuum`: VACUUM (ANALYZE) the tables a finding names (PostgreSQL), or VACUUM the file
//! (SQLite). botfleet's own database only: a monitored one is used read-only.

use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use super::{Action, ActionContext};
use crate::dbcheck::postgres::quote;
use crate::error::FieldError;
use crate::store::Pools;

pub struct Vacuum;

#[async_trait]
impl Action for Vacuum {
    fn name(&self) -> &'static str {
        "vacuum"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        match params.as_object() {
            Some(m) if m.is_empty() => Vec::new(),
            _ => vec![FieldError::new(
                "(params)",
                "vacuum takes no parameters: the tables come from the finding",
            )],
        }
    }

    async fn apply(&self, cx: &ActionContext<'_>, _params: &Value) -> Result<String, String> {
        if cx.finding.component != "db:botfleet" {
            return Err(
                "only botfleet's own database is vacuumed; a monitored database is used read-only"
                    .into(),
            );
        }
        let started = Instant::now();
        match cx.pass.store.pools() {
            Pools::Postgres(pool) => {
                let tables: Vec<(String, String)> = cx.finding.metadata["tables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        Some((
                            t["schema"].as_str()?.to_string(),
                            t["table"].as_str()?.to_string(),
                        ))
                    })
                    .collect();
                if tables.is_empty() {
                    return Err("the finding names no tables".into());
                }
                for (schema, table) in &tables {
                    sqlx::query(&format!("VACUUM (ANALYZE) {}", quote(schema, table)))
                        .execute(&pool)
                        .await
                        .map_err(|e| format!("VACUUM {schema}.{table} failed: {e}"))?;
                }
                Ok(format!(
                    "VACUUM (ANALYZE) {} in {} ms",
                    tables
                        .iter()
                        .map(|(s, t)| format!("{s}.{t}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    started.elapsed().as_millis()
                ))
            }
            Pools::Sqlite { write, .. } => {
                let before: i64 = sqlx::query_scalar("PRAGMA freelist_count")
                    .fetch_one(&write)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query("VACUUM")
                    .execute(&write)
                    .await
                    .map_err(|e| format!("VACUUM failed: {e}"))?;
                let after: i64 = sqlx::query_scalar("PRAGMA freelist_count")
                    .fetch_one(&write)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "VACUUM: free pages {before} -> {after} in {} ms",
                    started.elapsed().as_millis()
                ))
            }
        }
    }
}
