//! SQLite, from its pragmas and files: integrity (`quick_check`), file and WAL size, the share
//! of free pages. The server-side figures PostgreSQL has do not exist here, and say so.

use std::path::Path;

use serde_json::json;
use sqlx::SqlitePool;

use super::{storage, Report, Thresholds};
use crate::engine::round1;
use crate::store::Severity;

pub async fn check(
    r: &mut Report<'_>,
    pool: &SqlitePool,
    file: &Path,
    th: &Thresholds,
    quota: Option<u64>,
) {
    match sqlx::query_scalar::<_, String>("PRAGMA quick_check")
        .fetch_all(pool)
        .await
    {
        Ok(lines) if lines == ["ok"] => r.figure("quick_check", "ok"),
        Ok(lines) => {
            r.figure("quick_check", &lines);
            r.finding(
                Severity::Critical,
                "db",
                "Integrity check failed",
                "integrity",
                format!(
                    "PRAGMA quick_check on {} reported: {}",
                    file.display(),
                    lines.join("; ")
                ),
                json!({"problems": lines}),
            );
        }
        Err(e) => r.not_measured("quick_check", format!("PRAGMA quick_check failed: {e}")),
    }

    let file_size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let wal = file.with_file_name(format!(
        "{}-wal",
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    let wal_size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    r.figure("file_bytes", file_size);
    r.figure("wal_bytes", wal_size);
    storage(
        r,
        file_size + wal_size,
        quota,
        th,
        &format!("{} (with its WAL)", file.display()),
    );

    let pages = sqlx::query_as::<_, (i64, i64)>("SELECT (SELECT page_count FROM pragma_page_count()), (SELECT freelist_count FROM pragma_freelist_count())")
        .fetch_one(pool)
        .await;
    match pages {
        Ok((total, free)) => {
            let pct = free as f64 * 100.0 / total.max(1) as f64;
            r.figure("pages", total);
            r.figure("free_pages", free);
            r.figure("free_page_percent", round1(pct));
            if pct > th.free_page_percent && free >= 100 {
                r.finding(
                    Severity::Warning,
                    "db",
                    "Many free pages",
                    "free-pages",
                    format!("{free} of {total} pages are free ({pct:.1}%, above {}%); VACUUM would give the space back", th.free_page_percent),
                    json!({"pages": total, "free_pages": free}),
                );
            }
        }
        Err(e) => r.not_measured(
            "free_page_percent",
            format!("the page counts could not be read: {e}"),
        ),
    }
    for figure in [
        "connections",
        "long_running_queries",
        "slow_queries",
        "idle_in_transaction",
        "replication_lag_seconds",
        "worst_dead_tuple_percent",
    ] {
        r.not_measured(figure, "not applicable to SQLite (a file, not a server)");
    }
}
