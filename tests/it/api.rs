//! The HTTP contract: auth on every route, JSON errors, no redirects, health, status, metrics.

use std::collections::HashSet;

use axum::body::Body;
use axum::http::Request;
use botfleet::auth::Role;
use chrono::Duration;
use serde_json::json;

use crate::both_backends;
use crate::common::{Harness, CRON_SECRET};

/// Every route that needs credentials, with the least role it needs.
const PROTECTED: &[(&str, &str, Option<Role>)] = &[
    ("POST", "/api/bots/pulse", None),
    ("GET", "/api/bots/pulse", None),
    ("GET", "/api/bots/pulse/executions/x", None),
    ("GET", "/api/admin/bots", Some(Role::Viewer)),
    ("POST", "/api/admin/bots/pulse/pause", Some(Role::Operator)),
    ("POST", "/api/admin/bots/pulse/resume", Some(Role::Operator)),
    ("GET", "/api/admin/bots/pulse/config", Some(Role::Viewer)),
    ("PUT", "/api/admin/bots/pulse/config", Some(Role::Admin)),
    ("GET", "/api/admin/executions", Some(Role::Viewer)),
    ("GET", "/api/admin/executions/x", Some(Role::Viewer)),
    ("GET", "/api/admin/findings", Some(Role::Viewer)),
    (
        "POST",
        "/api/admin/findings/x/resolve",
        Some(Role::Operator),
    ),
    ("GET", "/api/admin/knowledge", Some(Role::Viewer)),
    ("POST", "/api/admin/knowledge", Some(Role::Operator)),
    ("PUT", "/api/admin/knowledge/x", Some(Role::Operator)),
    ("DELETE", "/api/admin/knowledge/x", Some(Role::Operator)),
    ("GET", "/api/admin/audit", Some(Role::Viewer)),
    ("GET", "/api/admin/metrics/daily", Some(Role::Viewer)),
    ("GET", "/api/admin/targets", Some(Role::Viewer)),
    ("GET", "/api/admin/events", Some(Role::Viewer)),
];

fn below(role: Role) -> Option<Role> {
    match role {
        Role::Viewer => None,
        Role::Operator => Some(Role::Viewer),
        Role::Admin => Some(Role::Operator),
    }
}

both_backends! {
    async fn every_protected_route_answers_401_then_403_in_json(h) {
        for (method, path, role) in PROTECTED {
            let r = h.call(method, path, None, None).await;
            assert_eq!(r.status, 401, "{method} {path}: {}", r.text);
            assert_eq!(r.json["error"], "unauthorized", "{method} {path}");
            assert!(r.json["message"].is_string());
            assert_eq!(r.headers["www-authenticate"], "Bearer");

            let r = h.call(method, path, Some("not-a-token"), None).await;
            assert_eq!(r.status, 401, "{method} {path}");

            match role {
                // Triggers: a viewer token is too little.
                None => {
                    let viewer = h.token(Role::Viewer);
                    let r = h.call(method, path, Some(&viewer), None).await;
                    assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
                    assert_eq!(r.json["error"], "forbidden");
                }
                Some(role) => {
                    // The cron secret may only trigger.
                    let r = h.call(method, path, Some(CRON_SECRET), None).await;
                    assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
                    assert!(r.json["message"].as_str().unwrap().contains("only trigger"));
                    if let Some(less) = below(*role) {
                        let r = h.call(method, path, Some(&h.token(less)), None).await;
                        assert_eq!(r.status, 403, "{method} {path} as {less:?}: {}", r.text);
                        assert!(r.json["message"].as_str().unwrap().contains(role.as_str()));
                    }
                }
            }
        }
        // Each refusal is on record, with the address.
        let audit = h.call("GET", "/api/admin/audit?kind=auth_failure&limit=500", Some(&h.token(Role::Viewer)), None).await.expect(200);
        let items = audit.json["items"].as_array().unwrap();
        assert_eq!(items.len(), PROTECTED.len() * 2);
        assert!(items.iter().all(|e| e["address"] == "10.0.0.1"));
        let reasons: HashSet<&str> = items.iter().map(|e| e["reason"].as_str().unwrap()).collect();
        assert!(reasons.contains("no credentials"));
        let forbidden = h.call("GET", "/api/admin/audit?kind=forbidden&limit=500", Some(&h.token(Role::Viewer)), None).await.expect(200);
        assert!(forbidden.json["items"].as_array().unwrap().len() >= PROTECTED.len());
    }

    async fn an_expired_or_forged_token_is_refused(h) {
        let expired = h.state.auth.mint("old", Role::Admin, Duration::hours(1), chrono::Utc::now() - Duration::hours(2));
        let r = h.call("GET", "/api/admin/bots", Some(&expired), None).await.expect(401);
        assert_eq!(r.json["message"], "the token has expired");
        let forged = botfleet::auth::AuthKeys::new(&botfleet::secrets::Secrets {
            cron_secret: "x".repeat(20),
            jwt_secret: "someone-elses-secret-0123456789abcdef".into(),
        })
        .mint("eve", Role::Admin, Duration::hours(1), chrono::Utc::now());
        h.call("GET", "/api/admin/bots", Some(&forged), None).await.expect(401);
        let req = Request::builder().uri("/api/admin/bots").header("authorization", "Basic abc").body(Body::empty()).unwrap();
        let r = h.send(req, "10.0.0.1").await.expect(401);
        assert!(r.json["message"].as_str().unwrap().contains("Bearer"));
    }

    async fn bad_input_is_a_clear_error_and_changes_nothing(h) {
        let admin = h.token(Role::Admin);
        // Query strings.
        let r = h.trigger("pulse", "force=maybe").await.expect(400);
        assert_eq!(r.json["error"], "invalid_query");
        assert!(r.json["message"].as_str().unwrap().contains("force"));
        let r = h.trigger("pulse", "forse=true").await.expect(400);
        assert!(r.json["message"].as_str().unwrap().contains("forse"), "{}", r.text);
        for uri in [
            "/api/admin/executions?limit=abc",
            "/api/admin/executions?limit=0",
            "/api/admin/executions?status=sideways",
            "/api/admin/executions?cursor=garbage",
            "/api/admin/findings?severity=meh",
            "/api/admin/findings?open=perhaps",
            "/api/admin/metrics/daily?days=9999",
            "/api/admin/audit?kind=everything",
        ] {
            let r = h.call("GET", uri, Some(&admin), None).await;
            assert_eq!(r.status, 400, "{uri}: {}", r.text);
            assert!(r.json["message"].is_string());
        }
        // Bodies.
        let req = Request::builder()
            .method("PUT")
            .uri("/api/admin/bots/pulse/config")
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::from("{\"thresholds\": "))
            .unwrap();
        let r = h.send(req, "10.0.0.1").await.expect(400);
        assert_eq!(r.json["error"], "invalid_json");

        let before = h.call("GET", "/api/admin/bots/pulse/config", Some(&admin), None).await.expect(200).json;
        let r = h
            .call("PUT", "/api/admin/bots/pulse/config", Some(&admin), Some(json!({
                "timeout_ms": -1,
                "thresholds": {"cpu_percent": 180},
            })))
            .await
            .expect(422);
        assert_eq!(r.json["error"], "invalid_config");
        assert!(r.json["fields"]["timeout_ms"].is_string(), "{}", r.text);
        assert!(r.json["fields"]["thresholds.cpu_percent"].as_str().unwrap().contains("180"));
        let r = h.call("PUT", "/api/admin/bots/pulse/config", Some(&admin), Some(json!({"probes": [{"name": "x"}]}))).await.expect(422);
        assert!(r.json["fields"].as_object().unwrap().keys().next().unwrap().starts_with("probes[0]"), "{}", r.text);
        let r = h.call("PUT", "/api/admin/bots/pulse/config", Some(&admin), Some(json!({"surprise": 1}))).await.expect(422);
        assert!(r.text.contains("surprise"));
        let after = h.call("GET", "/api/admin/bots/pulse/config", Some(&admin), None).await.expect(200).json;
        assert_eq!(before, after, "a refused config changes nothing");
        let changes = h.call("GET", "/api/admin/audit?kind=admin_change", Some(&admin), None).await.expect(200);
        assert_eq!(changes.json["items"], json!([]));

        // A good config is stored and audited.
        let r = h
            .call("PUT", "/api/admin/bots/pulse/config", Some(&admin), Some(json!({"thresholds": {"cpu_percent": 95}})))
            .await
            .expect(200);
        assert_eq!(r.json["config"]["thresholds"]["cpu_percent"], 95.0);
        let changes = h.call("GET", "/api/admin/audit?kind=admin_change", Some(&admin), None).await.expect(200);
        assert_eq!(changes.json["items"][0]["reason"], "bot.config");
        assert_eq!(changes.json["items"][0]["after_value"]["thresholds"]["cpu_percent"], 95);

        // Knowledge entries are checked too.
        let op = h.token(Role::Operator);
        let r = h
            .call("POST", "/api/admin/knowledge", Some(&op), Some(json!({
                "category": "",
                "issue_pattern": "([unclosed",
                "solution": "x",
                "action": {"type": "reboot_the_moon"}
            })))
            .await
            .expect(422);
        for field in ["category", "issue_pattern", "action.type"] {
            assert!(r.json["fields"][field].is_string(), "{field}: {}", r.text);
        }
        let r = h.call("POST", "/api/admin/knowledge", Some(&op), Some(json!({"category": "x"}))).await.expect(422);
        assert_eq!(r.json["error"], "invalid_body");
        let req = Request::builder()
            .method("POST")
            .uri("/api/admin/knowledge")
            .header("authorization", format!("Bearer {op}"))
            .body(Body::from("{}"))
            .unwrap();
        h.send(req, "10.0.0.1").await.expect(415);
    }

    async fn unknown_bots_routes_and_methods_answer_json(h) {
        let r = h.trigger("nope", "").await.expect(404);
        assert_eq!(r.json["error"], "unknown_bot");
        let bots: Vec<&str> = r.json["bots"].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
        assert!(bots.contains(&"pulse"));
        let op = h.token(Role::Operator);
        h.call("POST", "/api/admin/bots/nope/pause", Some(&op), None).await.expect(404);
        h.call("GET", "/api/admin/executions?bot=nope", Some(&op), None).await.expect(404);
        h.call("GET", "/api/admin/executions/01900000-0000-7000-8000-00000000dead", Some(&op), None).await.expect(404);
        h.call("POST", "/api/admin/findings/nothing/resolve", Some(&op), None).await.expect(404);
        h.call("DELETE", "/api/admin/knowledge/nothing", Some(&op), None).await.expect(404);
        let r = h.call("GET", "/api/nowhere", None, None).await.expect(404);
        assert_eq!(r.json["error"], "not_found");
        let r = h.call("DELETE", "/api/health", None, None).await.expect(405);
        assert_eq!(r.json["error"], "method_not_allowed");
        h.call("PATCH", "/api/bots/pulse", Some(CRON_SECRET), None).await.expect(405);
    }

    async fn nothing_answers_a_redirect(h) {
        let op = h.token(Role::Operator);
        for path in [
            "/api/health/", "/api/health/live/", "/api/status/", "/api/metrics/", "/api/openapi.json/",
            "/api/admin/bots/", "/api/admin/executions/", "/api/admin/knowledge/", "/api/bots/steady/",
            "//api/health", "/api/", "/", "/admin", "/api/bots/", "/api/admin/findings/?open=true",
        ] {
            let r = h.call("GET", path, Some(&op), None).await;
            assert!(!r.status.is_redirection(), "{path} answered {}", r.status);
            if path != "/api/metrics/" {
                assert!(r.json.is_object(), "{path} did not answer JSON: {}", r.text);
            }
        }
        // A trailing slash is the same route.
        h.call("GET", "/api/health/", None, None).await.expect(200);
        // (The loop's GET /api/bots/steady/ ran a pass; this is the same route and slot.)
        let r = h.call("POST", "/api/bots/steady/", Some(CRON_SECRET), None).await.expect(200);
        assert_eq!(r.json["reason"], "duplicate_slot");
    }

    async fn health_reports_overdue_bots_with_503(h) {
        let r = h.call("GET", "/api/health", None, None).await.expect(200);
        assert_eq!(r.json["status"], "healthy");
        assert_eq!(r.json["database"]["ok"], true);
        // A bot that ran once and was never called again becomes overdue.
        h.trigger("steady", "").await.expect(200);
        h.clock.jump(Duration::minutes(7)); // expected 12:05, grace 2.5 min
        h.call("GET", "/api/health", None, None).await.expect(200);
        h.clock.jump(Duration::minutes(1));
        let r = h.call("GET", "/api/health", None, None).await.expect(503);
        assert_eq!(r.json["status"], "degraded");
        assert_eq!(r.json["bots"]["overdue"], json!(["steady"]));
        assert!(r.json["reasons"][0].as_str().unwrap().contains("steady is overdue"));
        // Status shows it; paused bots are not overdue.
        let s = h.call("GET", "/api/status", None, None).await.expect(200);
        let steady = s.json["bots"].as_array().unwrap().iter().find(|b| b["name"] == "steady").unwrap().clone();
        assert_eq!(steady["punctuality"]["state"], "overdue");
        assert!(s.json["health_score"].as_f64().unwrap() <= 90.0);
        h.call("POST", "/api/admin/bots/steady/pause", Some(&h.token(Role::Operator)), None).await.expect(200);
        h.call("GET", "/api/health", None, None).await.expect(200);
        h.call("GET", "/api/health/live", None, None).await.expect(200);
    }

    async fn status_is_a_public_summary(h) {
        h.trigger("steady", "").await.expect(200);
        let s = h.call("GET", "/api/status", None, None).await.expect(200);
        assert_eq!(s.json["health_score"], 100.0);
        assert_eq!(s.json["tickets_open"], 0);
        let steady = s.json["bots"].as_array().unwrap().iter().find(|b| b["name"] == "steady").unwrap().clone();
        assert_eq!(steady["runs_24h"], 1);
        assert_eq!(steady["success_rate_24h"], 100.0);
        assert_eq!(steady["last_status"], "success");
        let pulse = s.json["bots"].as_array().unwrap().iter().find(|b| b["name"] == "pulse").unwrap().clone();
        assert_eq!(pulse["punctuality"]["state"], "new");
        h.call("GET", "/api/openapi.json", None, None).await.expect(200);
    }

    async fn metrics_pass_promtool(h) {
        h.knobs.of("steady").set_findings(vec![crate::common::bots::finding(botfleet::store::Severity::Warning, "x")]);
        h.trigger("steady", "").await.expect(200);
        h.trigger("steady", "").await.expect(200);
        // Calm thresholds: on a busy machine pulse would otherwise shed load and /api/nowhere
        // would answer 503 instead of 404.
        let calm = json!({"thresholds": crate::pulse::calm()});
        h.store().set_bot_config("pulse", &calm, h.now()).await.unwrap().unwrap();
        h.trigger("pulse", "").await.expect(200);
        h.call("GET", "/api/nowhere", None, None).await.expect(404);
        let r = h.call("GET", "/api/metrics", None, None).await.expect(200);
        assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = r.text;
        for needle in [
            "botfleet_bot_runs_total{bot=\"steady\",status=\"success\"} 1",
            "botfleet_triggers_total{bot=\"steady\",outcome=\"duplicate_slot\"} 1",
            "botfleet_bot_run_duration_seconds_count{bot=\"pulse\"} 1",
            "botfleet_findings_open{bot=\"steady\",severity=\"warning\"} 1",
            "botfleet_bot_overdue{bot=\"steady\"} 0",
            "botfleet_health_score ",
            "botfleet_tickets_open 0",
            "botfleet_database_up 1",
            "botfleet_http_requests_total{route=\"/api/bots/{name}\",method=\"POST\",status=\"200\"} 3",
            "botfleet_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
            "botfleet_target_up",
            "process_resident_memory_bytes ",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        crate::common::metrics::check_exposition(&text);
        crate::common::metrics::promtool(&text);
    }

    async fn a_database_that_cannot_be_reached_is_a_503_with_retry_after(h) {
        h.state.store.close().await;
        let r = h.trigger("steady", "").await.expect(503);
        assert_eq!(r.json["error"], "database_unavailable");
        assert!(r.json["message"].as_str().unwrap().contains("retrying is safe"), "{}", r.text);
        assert_eq!(r.headers["retry-after"], "5");
        let health = h.call("GET", "/api/health", None, None).await.expect(503);
        assert_eq!(health.json["status"], "unhealthy");
        assert!(health.json["reasons"][0].as_str().unwrap().contains("cannot be reached"));
        h.call("GET", "/api/health/live", None, None).await.expect(200);
        let metrics = h.call("GET", "/api/metrics", None, None).await.expect(200).text;
        assert!(metrics.contains("botfleet_database_up 0"), "{metrics}");
        let admin = h.call("GET", "/api/admin/executions", Some(&h.token(Role::Viewer)), None).await.expect(503);
        assert_eq!(admin.json["error"], "database_unavailable");
    }

    async fn pulse_reports_real_host_figures(h) {
        let r = h.trigger("pulse", "").await.expect(200);
        assert_eq!(r.json["status"], "success", "{}", r.text);
        let d = &r.json["data"];
        let cpu = d["cpu_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&cpu));
        assert!(d["memory"]["total_bytes"].as_u64().unwrap() > 0);
        assert!(d["load"]["cores"].as_u64().unwrap() >= 1);
        assert!(d["disk"]["total_bytes"].as_u64().unwrap() > 0);
        assert!(d["requests"]["total"].is_u64());
        assert!(r.json["checks_performed"].as_i64().unwrap() >= 5);
        assert!(r.json["notes"][0].as_str().unwrap().contains("no activity probes configured"));
    }
}

/// With `STATUS_PUBLIC=false` and `METRICS_TOKEN`, both need credentials.
#[tokio::test]
async fn status_and_metrics_can_be_closed() {
    let h = Harness::with_config(false, |c| {
        c.status_public = false;
        c.metrics_token = Some("scrape-token-123".into());
    })
    .await
    .unwrap();
    h.call("GET", "/api/status", None, None).await.expect(401);
    h.call("GET", "/api/status", Some(&h.token(Role::Viewer)), None)
        .await
        .expect(200);
    h.call("GET", "/api/metrics", None, None).await.expect(401);
    h.call("GET", "/api/metrics", Some("wrong"), None)
        .await
        .expect(401);
    h.call("GET", "/api/metrics", Some("scrape-token-123"), None)
        .await
        .expect(200);
    h.call("GET", "/api/health", None, None).await.expect(200);
}
