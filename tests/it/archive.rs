//! Archiving old records: 100,000 executions out to a gzip file in small transactions, nothing
//! lost, the daily figures untouched; and the same through sentinel-db's self-healing.

use std::collections::HashMap;

use botfleet::auth::Role;

use crate::both_backends;
use crate::common::Harness;

const OLD: i64 = 100_000;

/// 100,000 finished executions of `steady` from 40+ days ago, spread over 3 days; a finding for
/// every 1,000th (resolved, except every 10,000th), an action for every 500th, and a ticket on
/// one resolved finding.
async fn seed(h: &Harness) {
    let bot_id = h.store().get_bot("steady").await.unwrap().unwrap().id;
    if h.is_postgres() {
        h.exec(&format!(
            "INSERT INTO bot_executions (id, bot_id, status, started_at, completed_at, execution_time_ms, \
             checks_performed, issues_found, actions_taken, created_at, forced, triggered_by, deadline_at, metadata) \
             SELECT 'old-' || g, '{bot_id}', CASE WHEN g % 7 = 0 THEN 'failed' ELSE 'success' END, \
             TIMESTAMPTZ '2026-10-01 00:00:00+00' + g * INTERVAL '2 seconds', \
             TIMESTAMPTZ '2026-10-01 00:00:01+00' + g * INTERVAL '2 seconds', 40, 1, 0, 0, \
             TIMESTAMPTZ '2026-10-01 00:00:00+00' + g * INTERVAL '2 seconds', false, 'test', \
             TIMESTAMPTZ '2026-10-01 00:01:00+00' + g * INTERVAL '2 seconds', '{{\"note\": \"old\"}}'::jsonb \
             FROM generate_series(1, {OLD}) g"
        ))
        .await;
        h.exec(&format!(
            "INSERT INTO bot_findings (id, bot_id, execution_id, severity, category, title, detected_at, resolved_at, \
             resolution_method, fingerprint, occurrences, last_seen_at) \
             SELECT 'f-' || g, '{bot_id}', 'old-' || g, 'warning', 'test', 'Old widget', \
             TIMESTAMPTZ '2026-10-01 00:00:00+00' + g * INTERVAL '2 seconds', \
             CASE WHEN g % 10000 = 0 THEN NULL ELSE TIMESTAMPTZ '2026-10-02 00:00:00+00' END, \
             CASE WHEN g % 10000 = 0 THEN NULL ELSE 'auto-cleared' END, 'test/core/old-' || g, 1, \
             TIMESTAMPTZ '2026-10-01 00:00:00+00' + g * INTERVAL '2 seconds' \
             FROM generate_series(1000, {OLD}, 1000) g"
        ))
        .await;
        h.exec(&format!(
            "INSERT INTO bot_actions (id, bot_id, execution_id, action_type, action_description, success, taken_at) \
             SELECT 'a-' || g, '{bot_id}', 'old-' || g, 'retry_check', 'retried', true, \
             TIMESTAMPTZ '2026-10-01 00:00:00+00' + g * INTERVAL '2 seconds' FROM generate_series(500, {OLD}, 500) g"
        ))
        .await;
    } else {
        let ts = |expr: &str| {
            format!("strftime('%Y-%m-%dT%H:%M:%S+00:00', '2026-10-01 00:00:00', '+' || ({expr}) || ' seconds')")
        };
        h.exec(&format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {OLD}) \
             INSERT INTO bot_executions (id, bot_id, status, started_at, completed_at, execution_time_ms, \
             checks_performed, issues_found, actions_taken, created_at, forced, triggered_by, deadline_at, metadata) \
             SELECT 'old-' || n, '{bot_id}', CASE WHEN n % 7 = 0 THEN 'failed' ELSE 'success' END, {s}, {c}, 40, 1, 0, 0, \
             {s}, 0, 'test', {d}, '{{\"note\": \"old\"}}' FROM g",
            s = ts("n * 2"),
            c = ts("n * 2 + 1"),
            d = ts("n * 2 + 60"),
        ))
        .await;
        h.exec(&format!(
            "WITH RECURSIVE g(n) AS (SELECT 1000 UNION ALL SELECT n + 1000 FROM g WHERE n < {OLD}) \
             INSERT INTO bot_findings (id, bot_id, execution_id, severity, category, title, detected_at, resolved_at, \
             resolution_method, fingerprint, occurrences, last_seen_at) \
             SELECT 'f-' || n, '{bot_id}', 'old-' || n, 'warning', 'test', 'Old widget', {s}, \
             CASE WHEN n % 10000 = 0 THEN NULL ELSE '2026-10-02T00:00:00+00:00' END, \
             CASE WHEN n % 10000 = 0 THEN NULL ELSE 'auto-cleared' END, 'test/core/old-' || n, 1, {s} FROM g",
            s = ts("n * 2"),
        ))
        .await;
        h.exec(&format!(
            "WITH RECURSIVE g(n) AS (SELECT 500 UNION ALL SELECT n + 500 FROM g WHERE n < {OLD}) \
             INSERT INTO bot_actions (id, bot_id, execution_id, action_type, action_description, success, taken_at) \
             SELECT 'a-' || n, '{bot_id}', 'old-' || n, 'retry_check', 'retried', 1, {s} FROM g",
            s = ts("n * 2"),
        ))
        .await;
    }
    // A resolved finding that a ticket still refers to is kept.
    h.exec(&format!(
        "INSERT INTO bot_tickets (id, bot_id, finding_id, severity, title, description, status, created_at, updated_at) \
         VALUES ('t-1', '{bot_id}', 'f-5000', 'warning', 'Old widget', 'kept for its ticket', 'open', \
         '2026-10-03T00:00:00+00:00', '2026-10-03T00:00:00+00:00')"
    ))
    .await;
}

async fn metrics_snapshot(h: &Harness) -> Vec<String> {
    let since = chrono::NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    let mut rows: Vec<String> = h
        .store()
        .daily_metrics(Some("steady"), since)
        .await
        .unwrap()
        .into_iter()
        .map(|m| serde_json::to_string(&m).unwrap())
        .collect();
    rows.sort();
    rows
}

both_backends! {
    async fn archiving_100000_old_executions_loses_nothing_in_short_transactions(h) {
        seed(&h).await;
        let before: HashMap<&str, i64> = [
            ("bot_executions", h.count("bot_executions").await),
            ("bot_findings", h.count("bot_findings").await),
            ("bot_actions", h.count("bot_actions").await),
        ]
        .into_iter()
        .collect();
        assert_eq!(before["bot_executions"], OLD);
        let cutoff = h.now() - chrono::Duration::days(30);
        // Days without a rollup get one computed from their executions, before anything goes.
        let written = h.store().ensure_rollups(cutoff).await.unwrap();
        assert_eq!(written, 3, "the seeded executions span three days");
        let metrics_before = metrics_snapshot(&h).await;
        let day: serde_json::Value = serde_json::from_str(&metrics_before[0]).unwrap();
        assert!(day["total_executions"].as_i64().unwrap() > 0);

        let report = botfleet::archive::archive(h.store(), &h.data_dir(), cutoff, h.now(), 1000, None).await.unwrap();
        assert_eq!(report.executions as i64, OLD);
        assert!(report.longest_transaction_ms < 1000.0, "a transaction was open {} ms", report.longest_transaction_ms);
        assert!(report.batches >= 100);
        assert_eq!(report.rollups_written, 0, "nothing left to roll up");

        let file = report.file.clone().unwrap();
        assert!(file.starts_with(h.data_dir().join("archive")));
        assert!(file.to_string_lossy().ends_with(".jsonl.gz"));
        let rows = botfleet::archive::read_back(&file).unwrap();
        let mut archived: HashMap<String, i64> = HashMap::new();
        for (table, _) in &rows {
            *archived.entry(table.clone()).or_default() += 1;
        }
        for table in ["bot_executions", "bot_findings", "bot_actions"] {
            let left = h.count(table).await;
            let out = archived.get(table).copied().unwrap_or(0);
            assert_eq!(out + left, before[table], "{table}: {out} archived + {left} left != {} before", before[table]);
            eprintln!("{}: {table}: {out} archived + {left} left = {} before", h.url.split(':').next().unwrap(), before[table]);
        }
        eprintln!(
            "{}: {} batches, longest transaction {:.1} ms, {} bytes of gzip",
            h.url.split(':').next().unwrap(),
            report.batches,
            report.longest_transaction_ms,
            report.bytes
        );
        assert_eq!(h.count("bot_executions").await, 0);
        // The open findings and the ticketed one stay, detached from their executions.
        let kept = h.store().list_findings(&botfleet::store::FindingQuery { bot: Some("steady".into()), limit: 100, ..Default::default() }).await.unwrap();
        let mut kept_ids: Vec<&str> = kept.iter().map(|f| f.id.as_str()).collect();
        kept_ids.sort();
        assert_eq!(kept_ids.len(), 11, "{kept_ids:?}");
        assert!(kept_ids.contains(&"f-5000"));
        assert!(kept.iter().all(|f| f.execution_id.is_none()));
        let row = rows.iter().find(|(t, r)| t == "bot_executions" && r["id"] == "old-7").unwrap();
        assert_eq!((row.1["status"].as_str(), row.1["bot"].as_str()), (Some("failed"), Some("steady")));
        assert_eq!(row.1["metadata"]["note"], "old");

        assert_eq!(metrics_snapshot(&h).await, metrics_before, "the daily figures are unchanged");
        let again = botfleet::archive::archive(h.store(), &h.data_dir(), cutoff, h.now(), 1000, None).await.unwrap();
        assert_eq!((again.executions, again.file), (0, None));
    }

    async fn sentinel_db_archives_through_the_knowledge_base(h) {
        let bot_id = h.store().get_bot("steady").await.unwrap().unwrap().id;
        for i in 0..50 {
            h.exec(&format!(
                "INSERT INTO bot_executions (id, bot_id, status, started_at, completed_at, execution_time_ms, created_at, \
                 forced, triggered_by, deadline_at) VALUES ('old-{i}', '{bot_id}', 'success', '2026-09-0{d}T00:00:00+00:00', \
                 '2026-09-0{d}T00:00:01+00:00', 5, '2026-09-0{d}T00:00:00+00:00', {f}, 'test', '2026-09-0{d}T00:01:00+00:00')",
                d = 1 + i % 3,
                f = if h.is_postgres() { "false" } else { "0" },
            ))
            .await;
        }
        h.trigger("steady", "").await.expect(200);
        let r = h.trigger("sentinel-db", "").await.expect(200);
        let f = r.json["findings"].as_array().unwrap().iter().find(|f| f["title"] == "Records past retention").cloned()
            .unwrap_or_else(|| panic!("{}", r.text));
        assert_eq!(f["state"], "auto-fixed", "{}", r.text);
        let a = r.json["actions"].as_array().unwrap().iter().find(|a| a["action_type"] == "archive_records").unwrap();
        assert_eq!(a["verified"], true);
        assert!(a["description"].as_str().unwrap().contains("archived 50 executions"), "{a}");
        assert_eq!(h.executions("steady").await.len(), 1, "this week's execution stays");
        let viewer = h.token(Role::Viewer);
        let daily = h.call("GET", "/api/admin/metrics/daily?bot=steady&days=120", Some(&viewer), None).await.expect(200);
        let total: i64 = daily.json["days"].as_array().unwrap().iter().map(|d| d["total_executions"].as_i64().unwrap()).sum();
        assert_eq!(total, 51, "the archived days keep their rollups: {}", daily.text);
        let files: Vec<_> = std::fs::read_dir(h.data_dir().join("archive")).unwrap().collect();
        assert_eq!(files.len(), 1);
    }
}
