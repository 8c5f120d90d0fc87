//! pulse against real things: a local JSON endpoint for its activity probes, and botfleet's own
//! request counters for its 5xx rate — whose fix, load shedding, goes through the knowledge base.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use botfleet::auth::Role;
use chrono::Duration;
use serde_json::json;

use crate::both_backends;

/// Host thresholds out of reach: a busy test machine must not add findings of its own.
pub fn calm() -> serde_json::Value {
    json!({"cpu_percent": 100, "memory_percent": 100, "disk_percent": 100, "disk_critical_percent": 100})
}

/// Answers `{"active": <value>}`, or a 500 while the value is negative.
async fn stats_server(value: Arc<AtomicI64>) -> String {
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::get(move || {
            let value = value.clone();
            async move {
                let v = value.load(Ordering::SeqCst);
                if v < 0 {
                    (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({"error": "down"})),
                    )
                } else {
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"data": {"active": v}})),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/stats")
}

both_backends! {
    async fn activity_probes_alert_fail_and_clear(h) {
        let value = Arc::new(AtomicI64::new(500));
        let url = stats_server(value.clone()).await;
        let admin = h.token(Role::Admin);
        h.call("PUT", "/api/admin/bots/pulse/config", Some(&admin), Some(json!({
            "thresholds": calm(),
            "probes": [{"name": "users", "url": url, "pointer": "/data/active", "alert_above": 100, "warn_below": 1}]
        }))).await.expect(200);

        let r = h.trigger("pulse", "force=true").await.expect(200);
        assert_eq!(r.json["data"]["probes"]["users"], 500.0, "{}", r.text);
        let f = r.json["findings"].as_array().unwrap().iter().find(|f| f["category"] == "activity").unwrap().clone();
        assert_eq!(f["title"], "Activity above threshold");
        assert_eq!(f["severity"], "error");
        assert_eq!(f["component"], "probe:users");

        value.store(50, Ordering::SeqCst);
        let r = h.trigger("pulse", "force=true").await.expect(200);
        assert!(r.json["findings"].as_array().unwrap().iter().all(|f| f["category"] != "activity"));
        assert_eq!(r.json["resolved"][0]["fingerprint"], "activity/probe:users/value");

        value.store(-1, Ordering::SeqCst);
        let r = h.trigger("pulse", "force=true").await.expect(200);
        let f = r.json["findings"].as_array().unwrap().iter().find(|f| f["category"] == "activity").unwrap().clone();
        assert_eq!(f["title"], "Probe failed");
        assert!(f["description"].as_str().unwrap().contains("HTTP 500"));

        let targets = h.call("GET", "/api/admin/targets", Some(&admin), None).await.expect(200);
        let t = &targets.json["targets"][0];
        assert_eq!((t["bot"].as_str(), t["target"].as_str(), t["up"].as_bool()), (Some("pulse"), Some("probe:users"), Some(false)));
        assert_eq!(t["status_code"], 500);
        assert_eq!(t["consecutive_failures"], 1);
        let metrics = h.call("GET", "/api/metrics", None, None).await.expect(200).text;
        assert!(metrics.contains("botfleet_target_up{bot=\"pulse\",target=\"probe:users\"} 0"), "{metrics}");
    }

    async fn a_5xx_spike_sheds_load_through_the_knowledge_base_and_is_verified(h) {
        let admin = h.token(Role::Admin);
        h.call("PUT", "/api/admin/bots/pulse/config", Some(&admin), Some(json!({
            "thresholds": calm(), "min_requests": 10, "verify_window_ms": 400
        }))).await.expect(200);
        h.trigger("pulse", "force=true").await.expect(200); // the baseline for "since the last pass"

        // 40 answers of 500, as botfleet's request accounting counts them.
        for _ in 0..40 {
            h.state.process.requests.record(500, std::time::Duration::from_millis(3), true, false);
        }
        // Healthy traffic while the fix is verified.
        let h = Arc::new(h);
        let traffic = {
            let h = h.clone();
            tokio::spawn(async move {
                for _ in 0..150 {
                    h.call("GET", "/api/health/live", None, None).await.expect(200);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
        };
        let r = h.trigger("pulse", "force=true").await.expect(200);
        traffic.await.unwrap();
        let f = r.json["findings"].as_array().unwrap().iter().find(|f| f["category"] == "errors").cloned()
            .unwrap_or_else(|| panic!("no 5xx finding: {}", r.text));
        assert_eq!(f["title"], "High 5xx rate");
        assert_eq!(f["state"], "auto-fixed", "{}", r.text);
        let a = &r.json["actions"][0];
        assert_eq!((a["action_type"].as_str(), a["verified"].as_bool()), (Some("shed_load"), Some(true)));
        assert!(a["description"].as_str().unwrap().contains("the problem is gone"));

        // Shedding for the configured five minutes: status sheds, triggers and health do not.
        let s = h.call("GET", "/api/status", None, None).await.expect(503);
        assert!(s.headers.contains_key("retry-after"));
        h.call("GET", "/api/health", None, None).await.expect(200);
        h.trigger("pulse", "force=true").await.expect(200);
        h.clock.jump(Duration::minutes(5));
        h.call("GET", "/api/status", None, None).await.expect(200);

        let k = h.store().get_knowledge("01900000-0000-7000-8000-000000000001").await.unwrap().unwrap();
        assert_eq!((k.times_applied, k.times_successful), (1, 1));
    }
}
