//! PostgreSQL, from its statistics views: size, connections, long-running and slow queries,
//! idle-in-transaction sessions, replication lag, dead tuples.

use serde_json::json;
use sqlx::PgPool;

use super::{storage, Report, Thresholds};
use crate::engine::round1;
use crate::store::Severity;

/// Whose database this is: botfleet's own (its schema) or a monitored one (every schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Own,
    Monitored,
}

pub async fn check(
    r: &mut Report<'_>,
    pool: &PgPool,
    scope: Scope,
    th: &Thresholds,
    quota: Option<u64>,
) {
    let what = match scope {
        Scope::Own => "botfleet's database",
        Scope::Monitored => "the monitored database",
    };
    match sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
        .fetch_one(pool)
        .await
    {
        Ok(size) => storage(r, size as u64, quota, th, what),
        Err(e) => r.not_measured("size_bytes", format!("pg_database_size failed: {e}")),
    }

    connections(r, pool, th).await;
    long_queries(r, pool, th).await;
    slow_queries(r, pool, th).await;
    idle_in_transaction(r, pool, th).await;
    replication(r, pool, th).await;
    dead_tuples(r, pool, scope, th).await;
}

async fn connections(r: &mut Report<'_>, pool: &PgPool, th: &Thresholds) {
    let q = sqlx::query_as::<_, (i64, i64)>(
        "SELECT (SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
         (SELECT setting::bigint FROM pg_settings WHERE name = 'max_connections')",
    )
    .fetch_one(pool)
    .await;
    match q {
        Ok((used, max)) => {
            let pct = used as f64 * 100.0 / max.max(1) as f64;
            r.figure("connections", used);
            r.figure("max_connections", max);
            r.figure("connections_percent", round1(pct));
            let severity = Severity::grade(
                pct,
                th.connections_warning_percent,
                th.connections_critical_percent,
                Severity::Critical,
            );
            if let Some(severity) = severity {
                r.finding(
                    severity,
                    "db",
                    "Connections near limit",
                    "connections",
                    format!("{used} of {max} connections in use ({pct:.1}%)"),
                    json!({"connections": used, "max_connections": max}),
                );
            }
        }
        Err(e) => r.not_measured(
            "connections",
            format!("pg_stat_activity could not be read: {e}"),
        ),
    }
}

async fn long_queries(r: &mut Report<'_>, pool: &PgPool, th: &Thresholds) {
    let q = sqlx::query_as::<_, (i32, Option<String>, f64, String)>(
        "SELECT pid, usename::text, EXTRACT(EPOCH FROM (now() - query_start))::float8 * 1000, left(query, 200) \
         FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' \
         AND pid <> pg_backend_pid() AND datname = current_database() \
         AND query_start < now() - make_interval(secs => $1) ORDER BY query_start",
    )
    .bind(th.long_query_ms / 1000.0)
    .fetch_all(pool)
    .await;
    match q {
        Ok(rows) => {
            let list: Vec<_> = rows
                .iter()
                .map(|(pid, user, ms, query)| json!({"pid": pid, "user": user, "running_ms": ms.round(), "query": query}))
                .collect();
            r.figure("long_running_queries", list.len());
            if !rows.is_empty() {
                let longest = rows.iter().map(|r| r.2).fold(0.0, f64::max);
                r.finding(
                    Severity::Warning,
                    "db",
                    "Long-running queries",
                    "long-queries",
                    format!(
                        "{} quer{} running longer than {} ms (the longest {:.0} ms): {}",
                        rows.len(),
                        if rows.len() == 1 { "y is" } else { "ies are" },
                        th.long_query_ms,
                        longest,
                        rows.iter()
                            .map(|r| format!("pid {} `{}`", r.0, r.3.replace('\n', " ")))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    json!({"queries": list}),
                );
            }
        }
        Err(e) => r.not_measured(
            "long_running_queries",
            format!("pg_stat_activity could not be read: {e}"),
        ),
    }
}

async fn slow_queries(r: &mut Report<'_>, pool: &PgPool, th: &Thresholds) {
    let installed = sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
    )
    .fetch_optional(pool)
    .await;
    match installed {
        Ok(Some(_)) => {}
        Ok(None) => {
            r.not_measured(
                "slow_queries",
                "pg_stat_statements is not installed (CREATE EXTENSION pg_stat_statements, with it in shared_preload_libraries)",
            );
            return;
        }
        Err(e) => {
            r.not_measured(
                "slow_queries",
                format!("pg_extension could not be read: {e}"),
            );
            return;
        }
    }
    let q = sqlx::query_as::<_, (String, i64, f64)>(
        "SELECT left(query, 200), calls, mean_exec_time FROM pg_stat_statements \
         WHERE mean_exec_time > $1 ORDER BY mean_exec_time DESC LIMIT 10",
    )
    .bind(th.slow_query_mean_ms)
    .fetch_all(pool)
    .await;
    match q {
        Ok(rows) => {
            r.figure("slow_queries", rows.len());
            if !rows.is_empty() {
                r.finding(
                    Severity::Warning,
                    "db",
                    "Slow queries",
                    "slow-queries",
                    format!(
                        "{} statement{} average more than {} ms: {}",
                        rows.len(),
                        if rows.len() == 1 { "" } else { "s" },
                        th.slow_query_mean_ms,
                        rows.iter().map(|r| format!("{:.0} ms × {} `{}`", r.2, r.1, r.0.replace('\n', " "))).collect::<Vec<_>>().join("; ")
                    ),
                    json!({"statements": rows.iter().map(|r| json!({"query": r.0, "calls": r.1, "mean_ms": r.2})).collect::<Vec<_>>()}),
                );
            }
        }
        Err(e) => r.not_measured(
            "slow_queries",
            format!("pg_stat_statements could not be read: {e}"),
        ),
    }
}

async fn idle_in_transaction(r: &mut Report<'_>, pool: &PgPool, th: &Thresholds) {
    let q = sqlx::query_as::<_, (i32, Option<String>, f64, String)>(
        "SELECT pid, usename::text, EXTRACT(EPOCH FROM (now() - state_change))::float8, left(query, 200) \
         FROM pg_stat_activity WHERE state IN ('idle in transaction', 'idle in transaction (aborted)') \
         AND datname = current_database() AND state_change < now() - make_interval(secs => $1) \
         ORDER BY state_change",
    )
    .bind(th.idle_in_transaction_secs)
    .fetch_all(pool)
    .await;
    match q {
        Ok(rows) => {
            r.figure("idle_in_transaction", rows.len());
            if !rows.is_empty() {
                let pids: Vec<i32> = rows.iter().map(|r| r.0).collect();
                r.finding(
                    Severity::Warning,
                    "db",
                    "Idle-in-transaction sessions",
                    "idle-tx",
                    format!(
                        "{} session{} idle in a transaction for more than {} s (pids {}); they hold locks and block vacuum",
                        rows.len(),
                        if rows.len() == 1 { "" } else { "s" },
                        th.idle_in_transaction_secs,
                        pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                    json!({"pids": pids, "sessions": rows.iter().map(|r| json!({"pid": r.0, "user": r.1, "idle_seconds": r.2.round(), "last_query": r.3})).collect::<Vec<_>>()}),
                );
            }
        }
        Err(e) => r.not_measured(
            "idle_in_transaction",
            format!("pg_stat_activity could not be read: {e}"),
        ),
    }
}

async fn replication(r: &mut Report<'_>, pool: &PgPool, th: &Thresholds) {
    let standby = match sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
        .fetch_one(pool)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            r.not_measured(
                "replication_lag_seconds",
                format!("pg_is_in_recovery failed: {e}"),
            );
            return;
        }
    };
    let lag: Option<(String, f64)> = if standby {
        match sqlx::query_scalar::<_, Option<f64>>(
            "SELECT EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8",
        )
        .fetch_one(pool)
        .await
        {
            Ok(Some(secs)) => Some(("this standby".into(), secs)),
            Ok(None) => {
                r.not_measured(
                    "replication_lag_seconds",
                    "this is a standby that has replayed no transaction yet",
                );
                return;
            }
            Err(e) => {
                r.not_measured(
                    "replication_lag_seconds",
                    format!("the replay time could not be read: {e}"),
                );
                return;
            }
        }
    } else {
        let rows = sqlx::query_as::<_, (Option<String>, Option<f64>)>(
            "SELECT application_name, EXTRACT(EPOCH FROM replay_lag)::float8 FROM pg_stat_replication",
        )
        .fetch_all(pool)
        .await;
        match rows {
            Ok(rows) if rows.is_empty() => {
                r.not_measured(
                    "replication_lag_seconds",
                    "no replicas are attached and this is not a standby",
                );
                return;
            }
            Ok(rows) => rows
                .into_iter()
                .map(|(name, lag)| (name.unwrap_or_else(|| "replica".into()), lag.unwrap_or(0.0)))
                .fold(None, |worst: Option<(String, f64)>, r| match worst {
                    Some(w) if w.1 >= r.1 => Some(w),
                    _ => Some(r),
                }),
            Err(e) => {
                r.not_measured(
                    "replication_lag_seconds",
                    format!("pg_stat_replication could not be read: {e}"),
                );
                return;
            }
        }
    };
    if let Some((who, secs)) = lag {
        r.figure("replication_lag_seconds", secs.round());
        if secs > th.replication_lag_secs {
            r.finding(
                Severity::Error,
                "db",
                "Replication lag",
                "replication",
                format!(
                    "{who} is {secs:.0} s behind (alert above {} s)",
                    th.replication_lag_secs
                ),
                json!({"lag_seconds": secs, "replica": who}),
            );
        }
    }
}

async fn dead_tuples(r: &mut Report<'_>, pool: &PgPool, scope: Scope, th: &Thresholds) {
    let q = sqlx::query_as::<_, (String, String, i64, i64)>(
        "SELECT schemaname::text, relname::text, n_live_tup, n_dead_tup FROM pg_stat_user_tables \
         WHERE ($1 OR schemaname = current_schema()) AND n_dead_tup >= $2 ORDER BY n_dead_tup DESC",
    )
    .bind(scope == Scope::Monitored)
    .bind(th.dead_tuple_min)
    .fetch_all(pool)
    .await;
    match q {
        Ok(rows) => {
            let over: Vec<_> = rows
                .iter()
                .filter(|(_, _, live, dead)| {
                    *dead as f64 * 100.0 / (*live + *dead).max(1) as f64 > th.dead_tuple_percent
                })
                .collect();
            let worst = rows
                .iter()
                .map(|(_, _, live, dead)| *dead as f64 * 100.0 / (*live + *dead).max(1) as f64)
                .fold(0.0, f64::max);
            r.figure("worst_dead_tuple_percent", round1(worst));
            if !over.is_empty() {
                let tables: Vec<_> = over
                    .iter()
                    .map(|(schema, table, live, dead)| json!({"schema": schema, "table": table, "live": live, "dead": dead,
                        "dead_percent": ((*dead as f64 * 1000.0 / (*live + *dead).max(1) as f64).round() / 10.0)}))
                    .collect();
                r.finding(
                    Severity::Warning,
                    "db",
                    "High dead-tuple ratio",
                    "dead-tuples",
                    format!(
                        "{} table{} over {}% dead tuples: {}",
                        over.len(),
                        if over.len() == 1 { "" } else { "s" },
                        th.dead_tuple_percent,
                        over.iter()
                            .map(|(s, t, live, dead)| format!("{s}.{t} ({dead} dead, {live} live)"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    json!({"tables": tables}),
                );
            }
        }
        Err(e) => r.not_measured(
            "worst_dead_tuple_percent",
            format!("pg_stat_user_tables could not be read: {e}"),
        ),
    }
}

/// `"schema"."table"`, quoted for SQL.
pub fn quote(schema: &str, table: &str) -> String {
    format!(
        "\"{}\".\"{}\"",
        schema.replace('"', "\"\""),
        table.replace('"', "\"\"")
    )
}
