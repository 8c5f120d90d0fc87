//! The pass semantics of DESIGN §4, on both backends.

use std::sync::atomic::Ordering;

use botfleet::auth::Role;
use botfleet::store::{BeginOutcome, BeginPass, Severity};
use chrono::Duration;
use serde_json::json;

use crate::both_backends;
use crate::common::bots::finding;
use crate::common::CRON_SECRET;

/// No two executions of a bot overlap in time.
fn assert_no_overlap(rows: &[botfleet::store::ExecutionRow]) {
    let mut spans: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.started_at,
                r.completed_at.expect("finished"),
                r.id.clone(),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "execution {} started at {} before {} ended at {}",
            pair[1].2,
            pair[1].0,
            pair[0].2,
            pair[0].1
        );
    }
}

both_backends! {
    async fn fifty_concurrent_forced_triggers_never_overlap(h) {
        h.knobs.of("slow").delay_ms.store(15, Ordering::SeqCst);
        let h = std::sync::Arc::new(h);
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.trigger("slow", "force=true").await })
            })
            .collect();
        let mut ran = 0;
        for c in calls {
            let r = c.await.unwrap().expect(200);
            match r.json["status"].as_str().unwrap() {
                "success" => ran += 1,
                "skipped" => {
                    assert_eq!(r.json["reason"], "already_running", "{}", r.text);
                    assert!(r.json["execution_id"].is_string());
                }
                other => panic!("unexpected status {other}: {}", r.text),
            }
        }
        assert!(ran >= 1);
        let rows = h.executions("slow").await;
        assert_eq!(rows.len(), ran, "one execution per pass that ran");
        assert!(rows.iter().all(|r| r.status == "success"));
        assert_no_overlap(&rows);
    }

    async fn a_duplicate_delivery_in_one_slot_is_skipped_naming_the_first(h) {
        let first = h.trigger("steady", "").await.expect(200);
        assert_eq!(first.json["status"], "success");
        let id = first.json["execution_id"].as_str().unwrap().to_string();
        assert_eq!(first.json["slot_at"], "2026-11-22T12:00:00Z");

        let again = h.trigger("steady", "").await.expect(200);
        assert_eq!(again.json["status"], "skipped");
        assert_eq!(again.json["reason"], "duplicate_slot");
        assert_eq!(again.json["execution_id"], id.as_str());
        assert!(again.json["message"].as_str().unwrap().contains("force=true"));

        let forced = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(forced.json["status"], "success");
        assert_eq!(forced.json["forced"], true);

        // Vercel's GET, in the next slot, runs.
        h.clock.jump(Duration::minutes(5));
        let next = h.call("GET", "/api/bots/steady", Some(CRON_SECRET), None).await.expect(200);
        assert_eq!(next.json["status"], "success");
        assert_eq!(next.json["slot_at"], "2026-11-22T12:05:00Z");
        assert_eq!(h.executions("steady").await.len(), 3);
    }

    async fn a_pass_whose_process_died_is_abandoned_when_its_lease_expires(h) {
        // A process takes the lease and dies before finishing.
        let begun = h
            .store()
            .begin_pass(&BeginPass {
                bot: "steady".into(),
                execution_id: botfleet::store::new_id(),
                slot: Some(h.state.schedules.get("steady").unwrap().slot_at_or_before(h.now())),
                force: false,
                idempotency_key: None,
                triggered_by: "test".into(),
                default_timeout_ms: 25_000,
                lease_grace_ms: 30_000,
            }, h.clock.as_ref())
            .await
            .unwrap();
        let BeginOutcome::Started(started) = begun else { panic!("the lease was free") };
        let dead = started.execution_id.clone();

        let busy = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(busy.json["reason"], "already_running");
        assert_eq!(busy.json["execution_id"], dead.as_str());
        // The skip released the bot row at once: the lease transaction was ended, not dropped.
        if h.is_postgres() {
            use sqlx::Connection;
            let mut other = sqlx::PgConnection::connect(&h.url).await.unwrap();
            sqlx::query("SELECT id FROM bots WHERE name = 'steady' FOR UPDATE NOWAIT")
                .fetch_one(&mut other)
                .await
                .expect("no transaction still holds the bot row after a skip");
        }

        // Past the deadline plus grace, the sweep marks it abandoned: never running forever.
        h.clock.jump(Duration::seconds(56));
        assert_eq!(h.state.engine.sweep().await.unwrap(), 1);
        let row = h.store().get_execution(&dead).await.unwrap().unwrap();
        assert_eq!(row.status, "abandoned");
        assert!(row.error_message.unwrap().contains("lease expired"));
        assert_eq!(h.state.engine.sweep().await.unwrap(), 0);

        // An abandoned execution does not hold its slot, and the bot runs again.
        let next = h.trigger("steady", "").await.expect(200);
        assert_eq!(next.json["status"], "success");
        let bot = h.store().get_bot("steady").await.unwrap().unwrap();
        assert_eq!(bot.lease_execution_id, None);
        assert_eq!((bot.total_runs, bot.failed_runs), (2, 1));
    }

    async fn a_trigger_takes_over_an_expired_lease(h) {
        let begun = h
            .store()
            .begin_pass(&BeginPass {
                bot: "steady".into(),
                execution_id: botfleet::store::new_id(),
                slot: None,
                force: true,
                idempotency_key: None,
                triggered_by: "test".into(),
                default_timeout_ms: 1_000,
                lease_grace_ms: 1_000,
            }, h.clock.as_ref())
            .await
            .unwrap();
        let BeginOutcome::Started(started) = begun else { panic!() };
        h.clock.jump(Duration::seconds(3));
        let r = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(r.json["status"], "success");
        let old = h.store().get_execution(&started.execution_id).await.unwrap().unwrap();
        assert_eq!(old.status, "abandoned");
    }

    async fn a_paused_bot_is_skipped(h) {
        let op = h.token(Role::Operator);
        let paused = h.call("POST", "/api/admin/bots/steady/pause", Some(&op), None).await.expect(200);
        assert_eq!(paused.json["status"], "paused");
        let r = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!((r.json["status"].as_str(), r.json["reason"].as_str()), (Some("skipped"), Some("paused")));
        assert!(h.executions("steady").await.is_empty());
        h.call("POST", "/api/admin/bots/steady/resume", Some(&op), None).await.expect(200);
        assert_eq!(h.trigger("steady", "").await.expect(200).json["status"], "success");
        let audit = h.call("GET", "/api/admin/audit?kind=admin_change", Some(&op), None).await.expect(200);
        let whats: Vec<&str> = audit.json["items"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
        assert_eq!(whats, vec!["bot.resume", "bot.pause"]);
        assert_eq!(audit.json["items"][1]["before_value"]["status"], "active");
        assert_eq!(audit.json["items"][1]["after_value"]["status"], "paused");
        assert_eq!(audit.json["items"][1]["subject"], "token:test-operator");
    }

    async fn the_circuit_opens_after_five_failures_and_half_opens_after_sixty_seconds(h) {
        let knobs = h.knobs.of("flaky");
        knobs.fail.store(true, Ordering::SeqCst);
        for i in 1..=5 {
            let r = h.trigger("flaky", "force=true").await.expect(200);
            assert_eq!(r.json["status"], "failed", "pass {i}");
            assert_eq!(r.json["error"], "the test bot was told to fail");
        }
        let open = h.trigger("flaky", "force=true").await.expect(200);
        assert_eq!(open.json["reason"], "circuit_open", "{}", open.text);
        assert!(open.json["until"].is_string());
        assert_eq!(knobs.runs.load(Ordering::SeqCst), 5, "an open circuit runs nothing");
        let health = h.call("GET", "/api/health", None, None).await.expect(503);
        assert_eq!(health.json["status"], "degraded");
        assert_eq!(health.json["bots"]["circuit_open"], json!(["flaky"]));

        // Still open at 59 s.
        h.clock.jump(Duration::seconds(59));
        assert_eq!(h.trigger("flaky", "force=true").await.json["reason"], "circuit_open");

        // Half-open after 60 s: one trial pass; it fails, so the circuit opens again.
        h.clock.jump(Duration::seconds(2));
        let trial = h.trigger("flaky", "force=true").await.expect(200);
        assert_eq!(trial.json["status"], "failed");
        assert_eq!(h.trigger("flaky", "force=true").await.json["reason"], "circuit_open");

        // Next trial succeeds: closed again.
        knobs.fail.store(false, Ordering::SeqCst);
        h.clock.jump(Duration::seconds(61));
        assert_eq!(h.trigger("flaky", "force=true").await.json["status"], "success");
        assert_eq!(h.trigger("flaky", "force=true").await.json["status"], "success");
        let bot = h.store().get_bot("flaky").await.unwrap().unwrap();
        assert_eq!((bot.circuit_state.as_str(), bot.consecutive_failures), ("closed", 0));
        h.call("GET", "/api/health", None, None).await.expect(200);
    }

    async fn a_dry_run_records_nothing(h) {
        let knobs = h.knobs.of("steady");
        knobs.set_findings(vec![finding(Severity::Error, "widget")]);
        let tables = ["bot_executions", "bot_findings", "bot_actions", "bot_metrics", "bot_targets"];
        let mut before = Vec::new();
        for t in tables {
            before.push(h.count(t).await);
        }
        let r = h.trigger("steady", "dry_run=true").await.expect(200);
        assert_eq!(r.json["dry_run"], true);
        assert_eq!(r.json["execution_id"], json!(null));
        assert_eq!(r.json["status"], "success");
        assert_eq!(r.json["findings"][0]["state"], "new");
        assert_eq!(knobs.runs.load(Ordering::SeqCst), 1, "the checks ran");
        for (t, n) in tables.iter().zip(before) {
            assert_eq!(h.count(t).await, n, "{t} changed");
        }
        let bot = h.store().get_bot("steady").await.unwrap().unwrap();
        assert_eq!((bot.total_runs, bot.lease_execution_id), (0, None));
        // And the slot is still free.
        assert_eq!(h.trigger("steady", "").await.json["status"], "success");
    }

    async fn an_idempotency_key_de_duplicates_exactly(h) {
        let send = |key: &'static str| {
            let req = axum::http::Request::builder()
                .method("POST")
                .uri("/api/bots/steady?force=true")
                .header("authorization", format!("Bearer {CRON_SECRET}"))
                .header("idempotency-key", key)
                .body(axum::body::Body::empty())
                .unwrap();
            h.send(req, "10.0.0.9")
        };
        let first = send("run-1").await.expect(200);
        let again = send("run-1").await.expect(200);
        assert_eq!(again.json["execution_id"], first.json["execution_id"]);
        assert_eq!(again.json["replayed"], true);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        // A new key runs, even in the same slot.
        let other = send("run-2").await.expect(200);
        assert_ne!(other.json["execution_id"], first.json["execution_id"]);
        assert_eq!(h.executions("steady").await.len(), 2);
    }

    async fn a_pass_past_its_deadline_ends_timeout_with_what_it_had(h) {
        let admin = h.token(Role::Admin);
        h.call("PUT", "/api/admin/bots/steady/config", Some(&admin), Some(json!({"timeout_ms": 300}))).await.expect(200);
        let knobs = h.knobs.of("steady");
        knobs.set_findings(vec![finding(Severity::Warning, "gear")]);
        knobs.hang_ms.store(5_000, Ordering::SeqCst);
        let t0 = std::time::Instant::now();
        let r = h.trigger("steady", "").await.expect(200);
        assert!(t0.elapsed() < std::time::Duration::from_secs(3));
        assert_eq!(r.json["status"], "timeout");
        assert_eq!(r.json["checks_performed"], 1);
        assert_eq!(r.json["issues_found"], 1);
        assert!(r.json["error"].as_str().unwrap().contains("300 ms deadline"));
        let row = h.store().get_execution(r.json["execution_id"].as_str().unwrap()).await.unwrap().unwrap();
        assert_eq!(row.status, "timeout");
        let bot = h.store().get_bot("steady").await.unwrap().unwrap();
        assert_eq!(bot.consecutive_failures, 1, "a timeout counts against the circuit");
    }

    async fn findings_reconcile_by_fingerprint_and_auto_clear(h) {
        let knobs = h.knobs.of("steady");
        knobs.set_findings(vec![finding(Severity::Warning, "widget"), finding(Severity::Info, "gear")]);
        let first = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(first.json["issues_found"], 2);
        assert_eq!(first.json["findings"][0]["state"], "new");
        let widget_id = first.json["findings"][0]["id"].as_str().unwrap().to_string();

        // Seen again, worse: same finding, one more occurrence, severity rises.
        knobs.set_findings(vec![finding(Severity::Error, "widget"), finding(Severity::Info, "gear")]);
        let second = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(second.json["findings"][0]["id"], widget_id.as_str());
        assert_eq!(second.json["findings"][0]["state"], "ongoing");
        assert_eq!(second.json["findings"][0]["occurrences"], 2);
        assert_eq!(second.json["findings"][0]["severity"], "error");

        // Better again: severity stays at its worst while open.
        knobs.set_findings(vec![finding(Severity::Warning, "widget")]);
        let third = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(third.json["findings"][0]["severity"], "error");
        // The gear is gone from a checked component: auto-cleared.
        assert_eq!(third.json["resolved"][0]["fingerprint"], "test/core/gear");

        // A pass that did not check `core` clears nothing.
        knobs.set_findings(vec![]);
        knobs.set_components(&["elsewhere"]);
        let fourth = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(fourth.json["resolved"], json!([]));
        knobs.set_components(&[]);
        let fifth = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(fifth.json["resolved"][0]["id"], widget_id.as_str());

        let viewer = h.token(Role::Viewer);
        let open = h.call("GET", "/api/admin/findings?bot=steady&open=true", Some(&viewer), None).await.expect(200);
        assert_eq!(open.json["items"], json!([]));
        let closed = h.call("GET", "/api/admin/findings?bot=steady&open=false", Some(&viewer), None).await.expect(200);
        let items = closed.json["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(|f| f["resolution_method"] == "auto-cleared"));
        let widget = items.iter().find(|f| f["id"] == widget_id.as_str()).unwrap();
        assert_eq!(widget["occurrences"], 3);

        // The day's rollup counts what happened.
        let daily = h.call("GET", "/api/admin/metrics/daily?bot=steady&days=1", Some(&viewer), None).await.expect(200);
        let day = &daily.json["days"][0];
        assert_eq!(day["total_executions"], 5);
        assert_eq!(day["successful_executions"], 5);
        assert_eq!(day["issues_detected"], 2);
        assert_eq!(day["issues_resolved"], 2);
    }

    async fn self_healing_applies_verifies_and_records_through_the_knowledge_base(h) {
        let r = h.trigger("shedcheck", "").await.expect(200);
        let f = &r.json["findings"][0];
        assert_eq!(f["state"], "auto-fixed", "{}", r.text);
        let a = &r.json["actions"][0];
        assert_eq!(a["action_type"], "shed_load");
        assert_eq!(a["success"], true);
        assert_eq!(a["verified"], true);
        assert_eq!(a["knowledge_id"], "01900000-0000-7000-8000-000000000001");
        assert_eq!(r.json["actions_taken"], 1);

        let detail = h.execution_detail(&r).await;
        assert_eq!(detail["actions"][0]["verified"], true);
        assert_eq!(detail["findings"][0]["resolution_method"], "auto-fixed");

        let k = h.store().get_knowledge("01900000-0000-7000-8000-000000000001").await.unwrap().unwrap();
        assert_eq!((k.times_applied, k.times_successful), (1, 1));
        assert_eq!(k.success_rate, 100.0);
        assert!(k.last_used_at.is_some());

        // Load is shed: non-essential routes 503 with Retry-After; triggers and health go on.
        let status = h.call("GET", "/api/status", None, None).await.expect(503);
        assert_eq!(status.json["error"], "shedding_load");
        let retry: u64 = status.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((299..=300).contains(&retry), "{retry}");
        h.call("GET", "/api/openapi.json", None, None).await.expect(503);
        h.call("GET", "/api/admin/bots", Some(&h.token(Role::Viewer)), None).await.expect(200);
        h.call("GET", "/api/health", None, None).await.expect(200);
        h.call("GET", "/api/health/live", None, None).await.expect(200);
        h.call("GET", "/api/metrics", None, None).await.expect(200);
        assert_eq!(h.trigger("steady", "").await.expect(200).json["status"], "success");

        // It ends on its own.
        h.clock.jump(Duration::seconds(301));
        h.call("GET", "/api/status", None, None).await.expect(200);
    }

    async fn a_fix_that_does_not_hold_is_recorded_unverified(h) {
        // An entry whose action cannot fix the scripted bot's finding: applied, not verified.
        let op = h.token(Role::Operator);
        h.call(
            "POST",
            "/api/admin/knowledge",
            Some(&op),
            Some(json!({
                "category": "test",
                "issue_pattern": "^test: Broken widget$",
                "solution": "drop the caches and hope",
                "action": {"type": "drop_caches", "params": {}}
            })),
        )
        .await
        .expect(201);
        h.knobs.of("steady").set_findings(vec![finding(Severity::Error, "widget")]);
        let r = h.trigger("steady", "").await.expect(200);
        assert_eq!(r.json["findings"][0]["state"], "new");
        assert_eq!(r.json["actions"][0]["action_type"], "drop_caches");
        assert_eq!(r.json["actions"][0]["success"], true);
        assert_eq!(r.json["actions"][0]["verified"], false);
        let list = h.call("GET", "/api/admin/knowledge", Some(&op), None).await.expect(200);
        let entry = list.json["entries"].as_array().unwrap().iter().find(|e| e["category"] == "test").unwrap().clone();
        assert_eq!((entry["times_applied"].as_i64(), entry["times_successful"].as_i64()), (Some(1), Some(0)));
        // Within the cool-down, the next pass does not try again.
        let again = h.trigger("steady", "force=true").await.expect(200);
        assert_eq!(again.json["actions"], json!([]));
        assert!(again.json["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("waiting")));
    }

    async fn wait_false_answers_202_and_the_pass_can_be_polled(h) {
        h.knobs.of("slow").delay_ms.store(100, Ordering::SeqCst);
        let r = h.trigger("slow", "wait=false").await.expect(202);
        let id = r.json["execution_id"].as_str().unwrap().to_string();
        let location = r.headers["location"].to_str().unwrap().to_string();
        assert_eq!(location, format!("/api/bots/slow/executions/{id}"));
        let mut last = serde_json::Value::Null;
        for _ in 0..100 {
            last = h.call("GET", &location, Some(CRON_SECRET), None).await.expect(200).json;
            if last["status"] != "running" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(last["status"], "success");
        assert_eq!(last["execution_id"], id.as_str());
        assert!(h.state.engine.drain(std::time::Duration::from_secs(1)).await);
    }

    async fn a_panicking_bot_fails_its_pass_and_frees_its_lease(h) {
        h.knobs.of("flaky").panic.store(true, Ordering::SeqCst);
        let r = h.trigger("flaky", "").await.expect(200);
        assert_eq!(r.json["status"], "failed");
        assert!(r.json["error"].as_str().unwrap().contains("panicked"));
        h.knobs.of("flaky").panic.store(false, Ordering::SeqCst);
        assert_eq!(h.trigger("flaky", "force=true").await.json["status"], "success");
    }

    async fn execution_pages_cover_everything_once(h) {
        for _ in 0..7 {
            h.trigger("steady", "force=true").await.expect(200);
        }
        let viewer = h.token(Role::Viewer);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let uri = match &cursor {
                Some(c) => format!("/api/admin/executions?bot=steady&limit=3&cursor={c}"),
                None => "/api/admin/executions?bot=steady&limit=3".to_string(),
            };
            let page = h.call("GET", &uri, Some(&viewer), None).await.expect(200);
            for item in page.json["items"].as_array().unwrap() {
                seen.push(item["id"].as_str().unwrap().to_string());
            }
            match page.json["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 7);
        let mut unique = seen.clone();
        unique.dedup();
        assert_eq!(unique.len(), 7);
        let failed = h.call("GET", "/api/admin/executions?status=failed", Some(&viewer), None).await.expect(200);
        assert_eq!(failed.json["items"], json!([]));
    }
}
