//! sentinel-db against real databases: SQLite's pragmas and a vacuum of free pages; on
//! PostgreSQL, dead tuples, a long query, an idle-in-transaction session and a monitored
//! database — each made for real by the test.

use std::time::{Duration, SystemTime};

use botfleet::auth::Role;
use serde_json::{json, Value};

use crate::common::{postgres_url, Harness};

fn finding<'a>(report: &'a Value, component: &str, title: &str) -> Option<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["component"] == component && f["title"] == title)
}

fn action<'a>(report: &'a Value, kind: &str) -> Option<&'a Value> {
    report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action_type"] == kind)
}

async fn configure(h: &Harness, config: Value) {
    let r = h
        .call(
            "PUT",
            "/api/admin/bots/sentinel-db/config",
            Some(&h.token(Role::Admin)),
            Some(config),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A backup directory whose newest file is `hours` old.
fn backups(hours: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("db.dump")).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(hours * 3600))
        .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_it_reads_the_pragmas_and_vacuums_free_pages() {
    let backup_dir = backups(100);
    let path = backup_dir.path().to_path_buf();
    let h = Harness::with_config(false, move |c| {
        c.backup_dir = Some(path);
        c.db_storage_quota_bytes = Some(10 << 30);
    })
    .await
    .unwrap();
    // Free pages: 10,000 rows of half a kilobyte, written and deleted.
    h.exec(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 10000) \
         INSERT INTO security_events (id, occurred_at, kind, reason) \
         SELECT 'filler-' || n, '2026-11-01T00:00:00+00:00', 'filler', hex(randomblob(500)) FROM g; \
         DELETE FROM security_events WHERE kind = 'filler'; PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .await;
    let r = h.trigger("sentinel-db", "").await.expect(200);
    let db = &r.json["data"]["botfleet_db"];
    assert_eq!(db["backend"], "sqlite");
    assert_eq!(db["quick_check"], "ok");
    assert_eq!(db["tables_read"], 13);
    for figure in [
        "connect_ms",
        "file_bytes",
        "wal_bytes",
        "pages",
        "free_pages",
        "size_bytes",
        "size_percent_of_quota",
    ] {
        assert!(db[figure].is_number(), "{figure}: {db}");
    }
    assert!(db["canary_ms"]["write"].is_number());
    assert_eq!(
        db["not_measured"]["replication_lag_seconds"],
        "not applicable to SQLite (a file, not a server)"
    );
    let free =
        finding(&r.json, "db:botfleet", "Many free pages").unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(free["state"], "auto-fixed", "{}", r.text);
    let vacuum = action(&r.json, "vacuum").unwrap();
    assert_eq!(vacuum["verified"], true);
    assert!(
        vacuum["description"].as_str().unwrap().contains("-> 0"),
        "{vacuum}"
    );

    let backup =
        finding(&r.json, "db:backups", "Backup overdue").unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(backup["severity"], "error");
    assert!(r.json["data"]["backups"]["age_hours"].as_f64().unwrap() > 26.0);
    assert!(r.json["notes"][0]
        .as_str()
        .unwrap()
        .contains("no MONITORED_DATABASE_URL"));
}

/// A new database on the test PostgreSQL; returns its URL.
async fn database(base: &str, name: &str) -> String {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(base)
        .await
        .expect("TEST_DATABASE_URL reachable");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url = reqwest::Url::parse(base).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn drop_database(base: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut admin) = sqlx::PgConnection::connect(base).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_it_measures_everything_and_fixes_what_it_may() {
    let Some(base) = postgres_url() else {
        eprintln!("TEST_DATABASE_URL is not set: the PostgreSQL run of this test is not performed");
        return;
    };
    let id = uuid::Uuid::now_v7().simple().to_string();
    let (own_name, app_name) = (
        format!("bf_own_{}", &id[20..]),
        format!("bf_app_{}", &id[20..]),
    );
    let own = database(&base, &own_name).await;
    let app = database(&base, &app_name).await;
    let result = tokio::spawn(postgres_body(own.clone(), app.clone())).await;
    drop_database(&base, &own_name).await;
    drop_database(&base, &app_name).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}

async fn postgres_body(own: String, app: String) {
    use sqlx::{Connection, Executor};
    let backup_dir = backups(2);
    let path = backup_dir.path().to_path_buf();
    let monitored = app.clone();
    let h = Harness::on_url(own.clone(), move |c| {
        c.monitored_database_url = Some(monitored);
        c.db_storage_quota_bytes = Some(10 << 30);
        c.backup_dir = Some(path);
    })
    .await;
    configure(
        &h,
        json!({"end_idle_transactions": true, "thresholds": {"idle_in_transaction_secs": 1, "long_query_ms": 1000}}),
    )
    .await;

    // Dead tuples in one of botfleet's tables.
    h.exec(
        "INSERT INTO security_events (id, occurred_at, kind) SELECT 'filler-' || g, now(), 'filler' FROM generate_series(1, 5000) g; \
         DELETE FROM security_events WHERE kind = 'filler' AND id <> 'filler-1';",
    )
    .await;
    // A session idle in a transaction, in botfleet's database.
    let mut idle = sqlx::PgConnection::connect(&own).await.unwrap();
    idle.execute("BEGIN; SELECT 1;").await.unwrap();
    // A long query in the monitored database.
    let app_url = app.clone();
    let long = tokio::spawn(async move {
        let mut c = sqlx::PgConnection::connect(&app_url).await.unwrap();
        let _ = sqlx::query("SELECT pg_sleep(5)").execute(&mut c).await;
    });
    let mut app_conn = sqlx::PgConnection::connect(&app).await.unwrap();
    app_conn
        .execute("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1);")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;

    let r = h.trigger("sentinel-db", "").await.expect(200);
    let db = &r.json["data"]["botfleet_db"];
    assert_eq!(db["backend"], "postgres");
    for figure in [
        "connect_ms",
        "tables_read",
        "size_bytes",
        "quota_bytes",
        "size_percent_of_quota",
        "connections",
        "max_connections",
        "connections_percent",
        "long_running_queries",
        "idle_in_transaction",
        "worst_dead_tuple_percent",
        "executions_past_retention",
    ] {
        assert!(db[figure].is_number(), "{figure} missing from {db}");
    }
    assert!(db["canary_ms"]["read"].is_number());
    let not_measured = &db["not_measured"];
    assert!(
        not_measured["slow_queries"]
            .as_str()
            .unwrap()
            .contains("pg_stat_statements is not installed"),
        "{not_measured}"
    );
    assert!(
        not_measured["replication_lag_seconds"]
            .as_str()
            .unwrap()
            .contains("no replicas"),
        "{not_measured}"
    );

    let dead = finding(&r.json, "db:botfleet", "High dead-tuple ratio")
        .unwrap_or_else(|| panic!("{}", r.text));
    assert!(dead["description"]
        .as_str()
        .unwrap()
        .contains("security_events"));
    assert_eq!(dead["state"], "auto-fixed", "{}", r.text);
    assert_eq!(action(&r.json, "vacuum").unwrap()["verified"], true);

    let idle_finding = finding(&r.json, "db:botfleet", "Idle-in-transaction sessions")
        .unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(idle_finding["state"], "auto-fixed", "{}", r.text);
    assert!(action(&r.json, "end_idle_sessions").unwrap()["description"]
        .as_str()
        .unwrap()
        .starts_with("ended sessions"));
    assert!(
        idle.execute("SELECT 1").await.is_err(),
        "the idle session was ended"
    );

    let mon = &r.json["data"]["monitored_db"];
    assert_eq!(mon["read_only"], true);
    assert!(mon["tables_read"].as_u64().unwrap() >= 1, "{mon}");
    assert!(mon["connect_ms"].is_number());
    assert_eq!(
        mon["not_measured"]["canary_ms"],
        "the monitored database is used read-only"
    );
    let long_finding = finding(&r.json, "db:monitored", "Long-running queries")
        .unwrap_or_else(|| panic!("{}", r.text));
    assert!(long_finding["description"]
        .as_str()
        .unwrap()
        .contains("pg_sleep"));
    assert!(
        finding(&r.json, "db:botfleet", "Long-running queries").is_none(),
        "only the monitored database has one"
    );
    assert!(finding(&r.json, "db:backups", "Backup overdue").is_none());
    assert!(r.json["data"]["backups"]["age_hours"].is_number());
    long.await.unwrap();
    let _ = app_conn.close().await;
}
