//! oracle: brute force blocked everywhere until it expires or is lifted, abuse rate-limited,
//! refused admin access reported, addresses that are never blocked, proxies, and OSV.dev.

use axum::body::Body;
use axum::http::Request;
use botfleet::auth::Role;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{Harness, CRON_SECRET};

async fn quiet_oracle(h: &Harness) {
    let r = h
        .call(
            "PUT",
            "/api/admin/bots/oracle/config",
            Some(&h.token(Role::Admin)),
            Some(json!({"scan_dependencies": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn finding<'a>(report: &'a Value, title: &str, address: &str) -> Option<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["title"] == title && f["component"] == format!("address:{address}"))
}

both_backends! {
    async fn six_wrong_secrets_get_an_address_blocked_everywhere_until_expiry_or_lift(h) {
        quiet_oracle(&h).await;
        let attacker = "10.66.0.1";
        for _ in 0..6 {
            h.call_from("POST", "/api/bots/pulse", Some("wrong-secret-wrong-secret"), None, attacker).await.expect(401);
        }
        let r = h.trigger("oracle", "").await.expect(200);
        let f = finding(&r.json, "Brute force", attacker).unwrap_or_else(|| panic!("{}", r.text));
        assert_eq!(f["severity"], "error");
        assert!(f["description"].as_str().unwrap().contains("6 failed authentications"));
        assert_eq!(f["state"], "auto-fixed");
        let a = &r.json["actions"][0];
        assert_eq!((a["action_type"].as_str(), a["verified"].as_bool()), (Some("block_ip"), Some(true)));

        // 403 JSON on every route for that address, whatever its credentials.
        let admin = h.token(Role::Admin);
        for (method, path, auth) in [
            ("GET", "/api/health", None),
            ("GET", "/api/status", None),
            ("GET", "/api/metrics", None),
            ("POST", "/api/bots/pulse", Some(CRON_SECRET)),
            ("GET", "/api/admin/bots", Some(admin.as_str())),
            ("GET", "/api/nowhere", None),
        ] {
            let r = h.call_from(method, path, auth, None, attacker).await;
            assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
            assert_eq!(r.json["error"], "blocked");
            assert!(r.json["message"].as_str().unwrap().contains(attacker));
        }
        h.call_from("GET", "/api/health/live", None, None, attacker).await.expect(200);
        // Everyone else is unaffected.
        h.call_from("GET", "/api/health", None, None, "10.0.0.2").await.expect(200);
        h.call("GET", "/api/admin/bots", Some(&admin), None).await.expect(200);

        // The admin API shows the block, the finding, the action and the audit trail.
        let viewer = h.token(Role::Viewer);
        let blocks = h.call("GET", "/api/admin/blocks", Some(&viewer), None).await.expect(200);
        assert_eq!(blocks.json["blocks"][0]["address"], attacker);
        assert_eq!(blocks.json["blocks"][0]["kind"], "block");
        let findings = h.call("GET", "/api/admin/findings?bot=oracle", Some(&viewer), None).await.expect(200);
        assert_eq!(findings.json["items"][0]["resolution_method"], "auto-fixed");
        let exec = h.execution_detail(&r).await;
        assert_eq!(exec["actions"][0]["action_type"], "block_ip");
        let audit = h.call("GET", "/api/admin/audit?kind=auth_failure", Some(&viewer), None).await.expect(200);
        assert_eq!(audit.json["items"].as_array().unwrap().iter().filter(|e| e["address"] == attacker).count(), 6);
        let changes = h.call("GET", "/api/admin/audit?kind=admin_change", Some(&viewer), None).await.expect(200);
        assert!(changes.json["items"].as_array().unwrap().iter().any(|e| e["reason"] == "address.block" && e["target"] == attacker));
        let metrics = h.call("GET", "/api/metrics", None, None).await.expect(200).text;
        assert!(metrics.contains("botfleet_refused_requests_total{reason=\"block\"} 6"), "{metrics}");

        // The block expires on its own (status, not health: an hour on, bots are overdue)...
        h.clock.jump(chrono::Duration::minutes(61));
        h.call_from("GET", "/api/status", None, None, attacker).await.expect(200);

        // ...or is lifted by an operator.
        for _ in 0..6 {
            h.call_from("POST", "/api/bots/pulse", Some("wrong-secret-wrong-secret"), None, attacker).await.expect(401);
        }
        h.trigger("oracle", "force=true").await.expect(200);
        h.call_from("GET", "/api/health", None, None, attacker).await.expect(403);
        let op = h.token(Role::Operator);
        h.call("DELETE", &format!("/api/admin/blocks/{attacker}"), Some(&op), None).await.expect(200);
        h.call_from("GET", "/api/status", None, None, attacker).await.expect(200);
        h.call("DELETE", &format!("/api/admin/blocks/{attacker}"), Some(&op), None).await.expect(404);
        h.call("DELETE", "/api/admin/blocks/not-an-ip", Some(&op), None).await.expect(400);
        let changes = h.call("GET", "/api/admin/audit?kind=admin_change", Some(&viewer), None).await.expect(200);
        assert_eq!(changes.json["items"][0]["reason"], "address.lift");
    }

    async fn api_abuse_is_rate_limited(h) {
        quiet_oracle(&h).await;
        let noisy = "10.77.0.1";
        for _ in 0..1100 {
            h.call_from("GET", "/api/health/live", None, None, noisy).await.expect(200);
        }
        let r = h.trigger("oracle", "").await.expect(200);
        let f = finding(&r.json, "API abuse", noisy).unwrap_or_else(|| panic!("{}", r.text));
        assert!(f["metadata"]["peak_requests_per_minute"].as_i64().unwrap() >= 1100);
        let a = r.json["actions"].as_array().unwrap().iter().find(|a| a["action_type"] == "rate_limit").unwrap();
        assert_eq!(a["verified"], true);
        assert!(a["description"].as_str().unwrap().contains("60 requests a minute"));
        // Over its limit this minute already: 429 with Retry-After (liveness stays open).
        let limited = h.call_from("GET", "/api/health", None, None, noisy).await.expect(429);
        assert_eq!(limited.json["error"], "rate_limited");
        assert!(limited.headers.contains_key("retry-after"));
        h.call_from("GET", "/api/health/live", None, None, noisy).await.expect(200);
        // A new minute: within the limit again.
        h.clock.jump(chrono::Duration::minutes(1));
        h.call_from("GET", "/api/health", None, None, noisy).await.expect(200);
    }

    async fn refused_admin_access_is_reported(h) {
        quiet_oracle(&h).await;
        let viewer = h.token(Role::Viewer);
        for _ in 0..2 {
            h.call_from("PUT", "/api/admin/bots/pulse/config", Some(&viewer), Some(json!({})), "10.55.0.1").await.expect(403);
        }
        let r = h.trigger("oracle", "").await.expect(200);
        let f = finding(&r.json, "Refused admin access", "10.55.0.1").unwrap_or_else(|| panic!("{}", r.text));
        assert_eq!(f["severity"], "warning");
        assert!(f["description"].as_str().unwrap().contains("2 requests"));
        assert_eq!(r.json["actions"], json!([]), "no fix for that; it is for a person to look at");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_block_and_trusted_proxies_are_respected() {
    let h = Harness::with_config(false, |c| {
        c.never_block = botfleet::net::parse_list("10.44.0.0/16").unwrap();
        c.trusted_proxies = botfleet::net::parse_list("10.1.0.0/16").unwrap();
    })
    .await
    .unwrap();
    quiet_oracle(&h).await;
    for _ in 0..6 {
        h.call_from(
            "POST",
            "/api/bots/pulse",
            Some("wrong-secret-wrong-secret"),
            None,
            "10.44.0.9",
        )
        .await
        .expect(401);
    }
    // Behind a trusted proxy the forwarded address counts; from anyone else the header is ignored.
    for _ in 0..6 {
        let req = Request::post("/api/bots/pulse")
            .header("authorization", "Bearer wrong-secret-wrong-secret")
            .header("x-forwarded-for", "198.51.100.23, 10.1.0.7")
            .body(Body::empty())
            .unwrap();
        h.send(req, "10.1.0.5").await.expect(401);
    }
    let req = Request::post("/api/bots/pulse")
        .header("authorization", "Bearer wrong")
        .header("x-forwarded-for", "198.51.100.99")
        .body(Body::empty())
        .unwrap();
    h.send(req, "10.99.0.1").await.expect(401);
    let audit = h
        .call(
            "GET",
            "/api/admin/audit?kind=auth_failure&limit=100",
            Some(&h.token(Role::Viewer)),
            None,
        )
        .await
        .expect(200);
    let addresses: Vec<&str> = audit.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert!(addresses.contains(&"198.51.100.23"));
    assert!(addresses.contains(&"10.99.0.1"));
    assert!(
        !addresses.contains(&"198.51.100.99"),
        "a header from an untrusted peer is not believed"
    );
    assert!(!addresses.contains(&"10.1.0.5"));

    let r = h.trigger("oracle", "").await.expect(200);
    let never =
        finding(&r.json, "Brute force", "10.44.0.9").unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(never["state"], "new", "reported, not blocked");
    let failed = r.json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["error"]
                .as_str()
                .is_some_and(|e| e.contains("NEVER_BLOCK"))
        })
        .unwrap();
    assert_eq!(failed["success"], false);
    assert!(finding(&r.json, "Brute force", "198.51.100.23").is_some());
    h.call_from("GET", "/api/health", None, None, "10.44.0.9")
        .await
        .expect(200);
    let req = Request::get("/api/health")
        .header("x-forwarded-for", "198.51.100.23")
        .body(Body::empty())
        .unwrap();
    h.send(req, "10.1.0.5").await.expect(403);
}

/// A local OSV.dev answering `/v1/querybatch` and `/v1/vulns/{id}` as documented.
async fn osv_server(vulnerable: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/v1/querybatch",
            post(move |axum::Json(body): axum::Json<Value>| {
                let vulnerable = vulnerable.clone();
                async move {
                    let results: Vec<Value> = body["queries"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|q| {
                            let hit = q["package"]["name"] == "lodash" && q["version"] == "4.17.20" && q["package"]["ecosystem"] == "npm";
                            if hit && vulnerable.load(std::sync::atomic::Ordering::SeqCst) {
                                json!({"vulns": [{"id": "GHSA-35jh-r3h4-6jhm", "modified": "2024-01-01T00:00:00Z"}]})
                            } else {
                                json!({})
                            }
                        })
                        .collect();
                    axum::Json(json!({ "results": results }))
                }
            }),
        )
        .route(
            "/v1/vulns/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                axum::Json(json!({
                    "id": id, "summary": "Command Injection in lodash", "aliases": ["CVE-2021-23337"],
                    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}],
                    "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
                                  "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]}],
                    "database_specific": {"severity": "HIGH"}
                }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

both_backends! {
    async fn vulnerable_dependencies_are_found_through_osv(h) {
        let vulnerable = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let osv = osv_server(vulnerable.clone()).await;
        let lock = h.data_dir().join("package-lock.json");
        std::fs::write(&lock, r#"{"lockfileVersion": 3, "packages": {"": {"name": "app"},
            "node_modules/lodash": {"version": "4.17.20"}, "node_modules/left-pad": {"version": "1.3.0"}}}"#).unwrap();
        let lock = lock.display().to_string();
        let r = h
            .call("PUT", "/api/admin/bots/oracle/config", Some(&h.token(Role::Admin)), Some(json!({"osv_url": osv, "lock_files": [lock]})))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = h.trigger("oracle", "").await.expect(200);
        let deps = r.json["findings"].as_array().unwrap().iter().filter(|f| f["category"] == "dependencies").collect::<Vec<_>>();
        assert_eq!(deps.len(), 1, "{}", r.text);
        let f = deps[0];
        assert_eq!(f["title"], "Vulnerable dependency");
        assert_eq!(f["severity"], "error", "HIGH");
        let d = f["description"].as_str().unwrap();
        assert!(d.contains("lodash 4.17.20") && d.contains("GHSA-35jh-r3h4-6jhm") && d.contains("fixed in 4.17.21"), "{d}");
        assert_eq!(f["metadata"]["advisories"][0]["aliases"][0], "CVE-2021-23337");
        // botfleet's own lock file went to the same server, and is clean there.
        assert!(r.json["data"]["dependencies"]["botfleet/Cargo.lock"]["packages"].as_u64().unwrap() > 100);
        assert_eq!(r.json["data"]["dependencies"]["botfleet/Cargo.lock"]["vulnerable"], 0);

        vulnerable.store(false, std::sync::atomic::Ordering::SeqCst);
        let r = h.trigger("oracle", "force=true").await.expect(200);
        assert!(r.json["resolved"].as_array().unwrap().iter().any(|f| f["fingerprint"].as_str().unwrap().contains("lodash@4.17.20")), "{}", r.text);
    }
}

both_backends! {
    async fn security_records_stay_bounded(h) {
        quiet_oracle(&h).await;
        for _ in 0..6 {
            h.call_from("POST", "/api/bots/pulse", Some("wrong-secret-wrong-secret"), None, "10.88.0.1").await.expect(401);
        }
        h.trigger("oracle", "").await.expect(200);
        assert_eq!(h.store().list_blocks(h.now()).await.unwrap().len(), 1);
        assert_eq!(h.state.engine.prune_security().await.unwrap(), 0, "nothing is old yet");
        h.clock.jump(chrono::Duration::days(91));
        let dropped = h.state.engine.prune_security().await.unwrap();
        assert!(dropped >= 7, "six failures and the block's audit entry: {dropped}");
        assert_eq!(h.count("security_events").await, 0);
        assert_eq!(h.count("blocked_addresses").await, 0, "expired blocks go too");
        assert_eq!(h.count("address_requests").await, 0);
    }
}
