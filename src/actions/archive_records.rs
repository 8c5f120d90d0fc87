//! `archive_records`: executions older than `RETENTION_DAYS`, with their findings and actions,
//! to a gzip JSON-lines file under `DATA_DIR/archive/`, then deleted in small batches (see
//! `archive`). It stops after `max_seconds`; the next pass carries on.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, ActionContext};
use crate::error::FieldError;

pub struct ArchiveRecords;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "thousand")]
    batch_rows: usize,
    #[serde(default = "fifteen")]
    max_seconds: u64,
}

fn thousand() -> usize {
    crate::archive::MAX_BATCH_ROWS
}

fn fifteen() -> u64 {
    15
}

#[async_trait]
impl Action for ArchiveRecords {
    fn name(&self) -> &'static str {
        "archive_records"
    }

    fn validate_params(&self, params: &Value) -> Vec<FieldError> {
        match crate::bots::parse_config::<Params>(params) {
            Err(e) => e,
            Ok(p) => {
                let mut errors = Vec::new();
                if p.batch_rows == 0 || p.batch_rows > crate::archive::MAX_BATCH_ROWS {
                    errors.push(FieldError::new("batch_rows", "must be from 1 to 1000"));
                }
                if p.max_seconds == 0 || p.max_seconds > 18 {
                    errors.push(FieldError::new(
                        "max_seconds",
                        "must be from 1 to 18 (an action has 20 seconds)",
                    ));
                }
                errors
            }
        }
    }

    async fn apply(&self, cx: &ActionContext<'_>, params: &Value) -> Result<String, String> {
        let p: Params = serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
        let now = cx.pass.now();
        let cutoff = now - chrono::Duration::days(cx.pass.env.retention_days as i64);
        let until = Instant::now() + Duration::from_secs(p.max_seconds);
        let r = crate::archive::archive(
            cx.pass.store.as_ref(),
            &cx.pass.env.data_dir,
            cutoff,
            now,
            p.batch_rows,
            Some(until),
        )
        .await?;
        Ok(format!(
            "archived {} executions, {} findings and {} actions older than {} days into {} ({} bytes, {} batches, longest transaction {:.0} ms{}{})",
            r.executions,
            r.findings,
            r.actions,
            cx.pass.env.retention_days,
            r.file.map(|f| f.display().to_string()).unwrap_or_else(|| "no file (nothing to archive)".into()),
            r.bytes,
            r.batches,
            r.longest_transaction_ms,
            if r.rollups_written > 0 { format!("; {} missing daily rollups computed first", r.rollups_written) } else { String::new() },
            if r.incomplete { "; stopped for time, the next pass continues" } else { "" }
        ))
    }
}
