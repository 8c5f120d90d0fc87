//! Operating botfleet through the admin API: findings by hand, the knowledge base, live events.

use botfleet::auth::Role;
use botfleet::store::Severity;
use futures_util::StreamExt;
use serde_json::json;

use crate::both_backends;
use crate::common::bots::finding;

both_backends! {
    async fn a_finding_is_resolved_by_hand_once(h) {
        h.knobs.of("steady").set_findings(vec![finding(Severity::Error, "pump")]);
        let r = h.trigger("steady", "").await.expect(200);
        let id = r.json["findings"][0]["id"].as_str().unwrap().to_string();
        let op = h.token(Role::Operator);
        let resolved = h
            .call("POST", &format!("/api/admin/findings/{id}/resolve"), Some(&op), Some(json!({"notes": "replaced the pump"})))
            .await
            .expect(200);
        assert_eq!(resolved.json["resolution_method"], "manual");
        assert_eq!(resolved.json["resolved_by"], "token:test-operator");
        assert_eq!(resolved.json["resolution_notes"], "replaced the pump");
        let again = h.call("POST", &format!("/api/admin/findings/{id}/resolve"), Some(&op), None).await.expect(409);
        assert!(again.json["message"].as_str().unwrap().contains("already resolved (manual)"));
        // Seen again after a manual resolution: a new finding, not the old one reopened.
        let next = h.trigger("steady", "force=true").await.expect(200);
        assert_ne!(next.json["findings"][0]["id"], id.as_str());
        assert_eq!(next.json["findings"][0]["state"], "new");
        let audit = h.call("GET", "/api/admin/audit?kind=admin_change", Some(&op), None).await.expect(200);
        assert_eq!(audit.json["items"][0]["reason"], "finding.resolve");
        assert_eq!(audit.json["items"][0]["target"], id.as_str());
    }

    async fn knowledge_entries_are_added_edited_and_deleted(h) {
        let op = h.token(Role::Operator);
        let seeded = h.call("GET", "/api/admin/knowledge", Some(&h.token(Role::Viewer)), None).await.expect(200);
        let seeded_actions: Vec<&str> = seeded.json["entries"].as_array().unwrap().iter().map(|e| e["action"]["type"].as_str().unwrap()).collect();
        for action in ["shed_load", "drop_caches", "purge_cache"] {
            assert!(seeded_actions.contains(&action), "{action} is not seeded: {seeded_actions:?}");
            assert!(seeded.json["actions"].as_array().unwrap().contains(&json!(action)));
        }
        let created = h
            .call("POST", "/api/admin/knowledge", Some(&op), Some(json!({
                "category": "db", "issue_pattern": "^db: Slow", "solution": "look at the query plan"
            })))
            .await
            .expect(201);
        let id = created.json["id"].as_str().unwrap().to_string();
        assert_eq!(created.json["action"], json!(null));
        assert_eq!(created.json["enabled"], true);
        let edited = h
            .call("PUT", &format!("/api/admin/knowledge/{id}"), Some(&op), Some(json!({
                "category": "db", "issue_pattern": "^db: Slow", "solution": "shed load",
                "action": {"type": "shed_load", "params": {"duration_secs": 60}}, "enabled": false
            })))
            .await
            .expect(200);
        assert_eq!(edited.json["action"]["params"]["duration_secs"], 60);
        assert_eq!(edited.json["enabled"], false);
        let bad = h
            .call("PUT", &format!("/api/admin/knowledge/{id}"), Some(&op), Some(json!({
                "category": "db", "issue_pattern": "x", "solution": "y",
                "action": {"type": "shed_load", "params": {"duration_secs": 0}}
            })))
            .await
            .expect(422);
        assert!(bad.json["fields"]["action.params.duration_secs"].is_string(), "{}", bad.text);
        h.call("DELETE", &format!("/api/admin/knowledge/{id}"), Some(&op), None).await.expect(204);
        h.call("DELETE", &format!("/api/admin/knowledge/{id}"), Some(&op), None).await.expect(404);
        let audit = h.call("GET", "/api/admin/audit?kind=admin_change", Some(&op), None).await.expect(200);
        let whats: Vec<&str> = audit.json["items"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
        assert_eq!(whats, vec!["knowledge.delete", "knowledge.update", "knowledge.create"]);
        assert_eq!(audit.json["items"][1]["before_value"]["solution"], "look at the query plan");
        assert_eq!(audit.json["items"][1]["after_value"]["solution"], "shed load");
    }

    async fn live_events_stream_passes_as_they_finish(h) {
        use axum::http::Request;
        use tower::ServiceExt;
        let req = Request::get("/api/admin/events")
            .header("authorization", format!("Bearer {}", h.token(Role::Viewer)))
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = botfleet::app(h.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut stream = resp.into_body().into_data_stream();
        h.trigger("steady", "").await.expect(200);
        let mut text = String::new();
        while !text.contains("event: pass_finished") {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
                .await
                .expect("an event within 5 s")
                .unwrap()
                .unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(text.contains("event: pass_started"), "{text}");
        assert!(text.contains("\"bot\":\"steady\""), "{text}");
    }
}
