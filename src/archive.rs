//! Archiving old records: executions older than the retention period, with their resolved
//! findings and their actions, written to `DATA_DIR/archive/` as gzip-compressed JSON lines and
//! only then deleted — in batches of at most 1,000 rows, each in its own short transaction.
//!
//! Each batch is a complete gzip member appended to the file and synced to disk before its rows
//! are deleted: a crash leaves a readable file (`zcat` reads every member) and at worst a batch
//! written twice, never a row lost. Every (bot, day) being archived has its `bot_metrics` row
//! first, so no daily figure is lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;
use serde_json::json;

use crate::store::{ArchiveBatch, Store};

/// At most this many rows (executions, findings and actions) per transaction.
pub const MAX_BATCH_ROWS: usize = 1000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    pub executions: u64,
    pub findings: u64,
    pub actions: u64,
    /// Rows the deletes removed (executions, findings and actions).
    pub rows_deleted: u64,
    pub batches: u64,
    pub rollups_written: u64,
    pub longest_transaction_ms: f64,
    pub file: Option<PathBuf>,
    pub bytes: u64,
    /// Stopped because its time ran out; the rest waits for the next run.
    pub incomplete: bool,
}

fn lines(batch: &ArchiveBatch) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut push = |table: &str, row: serde_json::Value| -> Result<(), String> {
        serde_json::to_writer(&mut out, &json!({"table": table, "row": row}))
            .map_err(|e| e.to_string())?;
        out.push(b'\n');
        Ok(())
    };
    for e in &batch.executions {
        push("bot_executions", json!(e))?;
    }
    for f in &batch.findings {
        push("bot_findings", json!(f))?;
    }
    for a in &batch.actions {
        push("bot_actions", json!(a))?;
    }
    Ok(out)
}

fn gzip_member(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::default());
    enc.write_all(data).map_err(|e| e.to_string())?;
    enc.finish().map_err(|e| e.to_string())
}

/// Archives what started before `cutoff`, until done or until `until`.
pub async fn archive(
    store: &dyn Store,
    data_dir: &Path,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    batch_rows: usize,
    until: Option<Instant>,
) -> Result<ArchiveReport, String> {
    let batch_rows = batch_rows.clamp(1, MAX_BATCH_ROWS);
    let mut report = ArchiveReport {
        rollups_written: store
            .ensure_rollups(cutoff)
            .await
            .map_err(|e| format!("daily rollups could not be checked: {e}"))?,
        ..Default::default()
    };
    let dir = data_dir.join("archive");
    let mut file: Option<std::fs::File> = None;
    loop {
        if until.is_some_and(|u| Instant::now() >= u) {
            report.incomplete = true;
            break;
        }
        let batch = store
            .archive_read(cutoff, batch_rows)
            .await
            .map_err(|e| format!("reading records to archive failed: {e}"))?;
        if batch.executions.is_empty() {
            break;
        }
        let member = gzip_member(&lines(&batch)?)?;
        let f = match &mut file {
            Some(f) => f,
            None => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let path = dir.join(format!(
                    "records-before-{}-{}.jsonl.gz",
                    cutoff.format("%Y%m%d"),
                    now.format("%Y%m%dT%H%M%SZ")
                ));
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                // The new file's name must survive a crash too.
                if let Ok(d) = std::fs::File::open(&dir) {
                    let _ = d.sync_all();
                }
                report.file = Some(path);
                file.insert(f)
            }
        };
        f.write_all(&member)
            .map_err(|e| format!("writing the archive failed: {e}"))?;
        f.sync_data()
            .map_err(|e| format!("syncing the archive failed: {e}"))?;
        report.bytes += member.len() as u64;

        let t = Instant::now();
        let deleted = store
            .archive_delete(&batch)
            .await
            .map_err(|e| format!("deleting archived records failed (they are in the archive; the next run takes them again): {e}"))?;
        report.longest_transaction_ms = report
            .longest_transaction_ms
            .max(t.elapsed().as_secs_f64() * 1000.0);
        report.rows_deleted += deleted;
        report.executions += batch.executions.len() as u64;
        report.findings += batch.findings.len() as u64;
        report.actions += batch.actions.len() as u64;
        report.batches += 1;
    }
    Ok(report)
}

/// Reads an archive back: each line's table and row (all gzip members).
pub fn read_back(path: &Path) -> Result<Vec<(String, serde_json::Value)>, String> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        let table = v["table"].as_str().unwrap_or_default().to_string();
        out.push((table, v["row"].take()));
    }
    Ok(out)
}
