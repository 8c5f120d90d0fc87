//! sentinel-api against a real HTTP server started by the test.

use std::sync::atomic::Ordering;

use botfleet::auth::Role;
use serde_json::{json, Value};

use crate::common::site;
use crate::common::Harness;
use crate::on_both;

on_both! {
    json_assertions_name_each_pointer_expected_and_actual => assertions;
    failures_are_retried_with_backoff_and_each_retry_recorded => retries;
    cors_rate_limits_content_type_and_latency_budget => contract_checks;
    success_rate_and_p95_over_an_hour_and_a_day => rates;
    bad_configs_are_refused_naming_the_field_and_change_nothing => bad_configs;
}

async fn harness(postgres: bool) -> Harness {
    Harness::with_config(postgres, |_| {})
        .await
        .expect("a harness")
}

async fn configure(h: &Harness, bot: &str, config: Value) {
    let r = h
        .call(
            "PUT",
            &format!("/api/admin/bots/{bot}/config"),
            Some(&h.token(Role::Admin)),
            Some(config),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn titles(report: &Value, endpoint: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["component"] == format!("endpoint:{endpoint}"))
        .map(|f| f["title"].as_str().unwrap().to_string())
        .collect()
}

async fn assertions(postgres: bool) {
    let site = site::http().await;
    let h = harness(postgres).await;
    configure(
        &h,
        "sentinel-api",
        json!({"endpoints": [{
            "name": "health", "url": format!("{}/json", site.base), "content_type": "application/json",
            "assertions": [
                {"pointer": "/status", "equals": "ok"},
                {"pointer": "/count", "gt": 0},
                {"pointer": "/items", "type": "array"},
                {"pointer": "/version", "exists": true},
            ]
        }]}),
    )
    .await;
    let r = h.trigger("sentinel-api", "").await.expect(200);
    assert_eq!(
        titles(&r.json, "health"),
        vec!["Response assertions failed"],
        "{}",
        r.text
    );
    let f = &r.json["findings"][0];
    assert_eq!(f["severity"], "error");
    let failures = f["metadata"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0], "/status: expected \"ok\", got \"degraded\"");
    assert_eq!(failures[1], "/count: expected > 0, got 0");
    let d = f["description"].as_str().unwrap();
    assert!(
        d.contains("/status") && d.contains("/count") && d.contains("\"degraded\""),
        "{d}"
    );
    assert_eq!(
        r.json["data"]["endpoints"]["health"]["assertions_failed"],
        2
    );
    // The endpoint answered as expected: it is up, its contract is what failed.
    assert_eq!(r.json["data"]["endpoints"]["health"]["up"], true);
}

async fn retries(postgres: bool) {
    let site = site::http().await;
    let h = harness(postgres).await;
    configure(
        &h,
        "sentinel-api",
        json!({"retries": 2, "retry_backoff_ms": 50,
               "endpoints": [{"name": "flaky", "url": format!("{}/flaky", site.base)}]}),
    )
    .await;
    site.controls.flaky_failures_left.store(2, Ordering::SeqCst);
    let r = h.trigger("sentinel-api", "force=true").await.expect(200);
    assert_eq!(site.controls.flaky_calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        titles(&r.json, "flaky"),
        Vec::<String>::new(),
        "recovered: no finding"
    );
    let actions = r.json["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    assert!(actions.iter().all(|a| a["action_type"] == "retry_check"));
    assert_eq!(actions[0]["success"], false);
    assert_eq!(actions[1]["success"], true);
    assert!(actions[0]["description"]
        .as_str()
        .unwrap()
        .contains("answered 503"));
    assert!(r.json["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("recovered after 2 retries")));
    assert_eq!(r.json["data"]["endpoints"]["flaky"]["tries"], 3);

    // Still failing after every retry: the failure counts, and the retries point at it.
    site.controls
        .flaky_failures_left
        .store(10, Ordering::SeqCst);
    let r = h.trigger("sentinel-api", "force=true").await.expect(200);
    assert_eq!(titles(&r.json, "flaky"), vec!["Server error"]);
    let finding_id = r.json["findings"][0]["id"].as_str().unwrap().to_string();
    let retries: Vec<&Value> = r.json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action_type"] == "retry_check")
        .collect();
    assert_eq!(retries.len(), 2);
    assert!(retries
        .iter()
        .all(|a| a["finding_id"] == finding_id.as_str() && a["success"] == false));
    let detail = h.execution_detail(&r).await;
    let recorded: Vec<&Value> = detail["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action_type"] == "retry_check")
        .collect();
    assert_eq!(recorded.len(), 2);
}

async fn contract_checks(postgres: bool) {
    let site = site::http().await;
    let h = harness(postgres).await;
    let b = &site.base;
    configure(
        &h,
        "sentinel-api",
        json!({"retries": 0, "endpoints": [
            {"name": "cors-good", "url": format!("{b}/cors"), "cors_origin": "https://good.example",
             "headers": {"Content-Type": "application/json"}},
            {"name": "cors-bad", "url": format!("{b}/cors"), "cors_origin": "https://evil.example"},
            {"name": "cors-put", "method": "PUT", "url": format!("{b}/cors"), "cors_origin": "https://good.example",
             "body": {"x": 1}, "expected_status": 200},
            {"name": "limited", "url": format!("{b}/limited")},
            {"name": "html", "url": format!("{b}/ok"), "content_type": "application/json"},
            {"name": "budget", "url": format!("{b}/slow/120"), "latency_budget_ms": 20},
        ]}),
    )
    .await;
    let r = h.trigger("sentinel-api", "").await.expect(200);
    assert_eq!(
        titles(&r.json, "cors-good"),
        Vec::<String>::new(),
        "{}",
        r.text
    );
    assert_eq!(titles(&r.json, "cors-bad"), vec!["CORS preflight failed"]);
    let bad = r.json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["component"] == "endpoint:cors-bad")
        .unwrap();
    assert!(
        bad["description"]
            .as_str()
            .unwrap()
            .contains("no Access-Control-Allow-Origin"),
        "{bad}"
    );
    let put = r.json["data"]["endpoints"]["cors-put"]["cors_problems"]
        .as_array()
        .unwrap();
    assert!(
        put[0].as_str().unwrap().contains("does not allow PUT"),
        "{put:?}"
    );
    assert_eq!(
        titles(&r.json, "limited"),
        vec!["Rate limit nearly exhausted"]
    );
    assert_eq!(
        r.json["data"]["endpoints"]["limited"]["rate_limit"],
        json!({"limit": 100, "remaining": 3})
    );
    assert_eq!(titles(&r.json, "html"), vec!["Wrong content type"]);
    assert_eq!(titles(&r.json, "budget"), vec!["Over latency budget"]);
}

async fn rates(postgres: bool) {
    let site = site::http().await;
    let h = harness(postgres).await;
    configure(
        &h,
        "sentinel-api",
        json!({"retries": 0, "endpoints": [{"name": "flip", "url": format!("{}/flip", site.base)}]}),
    )
    .await;
    for _ in 0..3 {
        h.trigger("sentinel-api", "force=true").await.expect(200);
    }
    site.controls.flip_status.store(500, Ordering::SeqCst);
    let r = h.trigger("sentinel-api", "force=true").await.expect(200);
    let e = &r.json["data"]["endpoints"]["flip"];
    assert_eq!(e["last_hour"]["checks"], 4);
    assert_eq!(e["last_hour"]["success_percent"], 75.0);
    assert_eq!(e["last_24_hours"]["success_percent"], 75.0);
    assert_eq!(e["last_24_hours"]["p95_ms_at_most"], 25.0, "{e}");
    let t = h
        .call(
            "GET",
            "/api/admin/targets?bot=sentinel-api",
            Some(&h.token(Role::Viewer)),
            None,
        )
        .await
        .expect(200);
    assert_eq!(
        t.json["targets"][0]["uptime"]["24h"]["success_percent"],
        75.0
    );
}

async fn bad_configs(postgres: bool) {
    let h = harness(postgres).await;
    let admin = h.token(Role::Admin);
    for (bot, config, field) in [
        (
            "sentinel",
            json!({"targets": [{"name": "home", "url": "not a url"}]}),
            "targets[0].url",
        ),
        (
            "sentinel",
            json!({"targets": [], "tresholds": {}}),
            "tresholds",
        ),
        (
            "sentinel",
            json!({"thresholds": {"sla_ms": -2}}),
            "thresholds.sla_ms",
        ),
        (
            "sentinel",
            json!({"purge_hook": {"url": "https://cdn.example/purge", "method": "BREW"}}),
            "purge_hook.method",
        ),
        (
            "sentinel-api",
            json!({"endpoints": [{"name": "x", "url": "ftp://files"}]}),
            "endpoints[0].url",
        ),
        (
            "sentinel-api",
            json!({"endpoints": [{"name": "x", "url": "https://a.example", "asserts": []}]}),
            "endpoints[0].asserts",
        ),
        (
            "sentinel-api",
            json!({"rate_limit_warn_percent": -1}),
            "rate_limit_warn_percent",
        ),
        (
            "sentinel-api",
            json!({"endpoints": [{"name": "x", "url": "https://a.example", "latency_budget_ms": -5}]}),
            "endpoints[0].latency_budget_ms",
        ),
        (
            "sentinel-api",
            json!({"max_redirects": 50}),
            "max_redirects",
        ),
        (
            "sentinel-api",
            json!({"endpoints": [{"name": "x", "url": "https://a.example", "timeout_ms": 0}]}),
            "endpoints[0].timeout_ms",
        ),
    ] {
        let before = h
            .call(
                "GET",
                &format!("/api/admin/bots/{bot}/config"),
                Some(&admin),
                None,
            )
            .await
            .expect(200)
            .json;
        let r = h
            .call(
                "PUT",
                &format!("/api/admin/bots/{bot}/config"),
                Some(&admin),
                Some(config.clone()),
            )
            .await
            .expect(422);
        assert!(
            r.json["fields"][field].is_string(),
            "{bot} {config}: {}",
            r.text
        );
        let after = h
            .call(
                "GET",
                &format!("/api/admin/bots/{bot}/config"),
                Some(&admin),
                None,
            )
            .await
            .expect(200)
            .json;
        assert_eq!(before, after);
    }
}
