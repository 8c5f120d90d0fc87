//! sentinel against real HTTP and HTTPS servers started by the test.

use std::sync::atomic::Ordering;

use botfleet::auth::Role;
use serde_json::{json, Value};

use crate::common::site::{self, refused_port, Site};
use crate::common::{test_ca, Harness};
use crate::on_both;

on_both! {
    with_site_url_it_reports_real_figures_alerts_when_down_and_clears_when_back => site_up_down_up;
    a_5xx_with_a_purge_hook_calls_it_once_and_records_the_verified_fix => purge_on_5xx;
    every_failure_kind_and_page_check_is_told_apart => failure_kinds;
    certificates_near_or_past_expiry_are_findings => certificates;
    history_folds_into_days_and_forgotten_targets_go => history_fold;
    the_error_rate_over_the_last_hour_warns_then_alerts => error_rate;
}

async fn harness(postgres: bool, site_url: Option<String>, paths: &[&str]) -> Harness {
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    Harness::with_config(postgres, move |c| {
        c.site_url = site_url;
        c.site_critical_paths = paths;
    })
    .await
    .expect("a harness")
}

async fn configure(h: &Harness, config: Value) {
    let admin = h.token(Role::Admin);
    let r = h
        .call(
            "PUT",
            "/api/admin/bots/sentinel/config",
            Some(&admin),
            Some(config),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn finding<'a>(report: &'a Value, component: &str, key: &str) -> Option<&'a Value> {
    report["findings"].as_array().unwrap().iter().find(|f| {
        f["component"] == component
            && f["fingerprint"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{key}"))
    })
}

async fn site_up_down_up(postgres: bool) {
    let site: Site = test_ca().https(90).await;
    let h = harness(postgres, Some(site.base.clone()), &["/ok", "/slow/30"]).await;

    let r = h.trigger("sentinel", "force=true").await.expect(200);
    assert_eq!(r.json["status"], "success", "{}", r.text);
    assert_eq!(r.json["checks_performed"], 2);
    assert_eq!(r.json["issues_found"], 0, "{}", r.text);
    let ok = &r.json["data"]["targets"]["ok"];
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["up"], true);
    for phase in [
        "dns_ms",
        "connect_ms",
        "tls_ms",
        "first_byte_ms",
        "total_ms",
    ] {
        assert!(ok["timings"][phase].as_f64().is_some(), "{phase}: {ok}");
    }
    let days = ok["tls"]["days_left"].as_f64().unwrap();
    assert!((89.0..=90.1).contains(&days), "{days}");
    assert_eq!(ok["tls"]["verified"], true);
    assert_eq!(ok["tls"]["chain_length"], 2);
    let slow = &r.json["data"]["targets"]["slow-30"];
    assert!(slow["timings"]["total_ms"].as_f64().unwrap() >= 30.0);

    // The server stops: a critical finding (SITE_URL targets are critical).
    site.stop();
    let r = h.trigger("sentinel", "force=true").await.expect(200);
    let down = finding(&r.json, "target:ok", "down").unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(down["severity"], "critical");
    assert_eq!(down["title"], "Site unreachable");
    assert!(
        down["description"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{down}"
    );
    assert_eq!(r.json["data"]["targets"]["ok"]["error"]["kind"], "refused");
    let health = h.call("GET", "/api/status", None, None).await.expect(200);
    assert_eq!(health.json["findings_open"]["critical"], 2);

    // It comes back: auto-cleared on the next pass.
    site.start_again().await;
    let r = h.trigger("sentinel", "force=true").await.expect(200);
    assert_eq!(r.json["issues_found"], 0, "{}", r.text);
    let cleared: Vec<&str> = r.json["resolved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fingerprint"].as_str().unwrap())
        .collect();
    assert!(
        cleared.contains(&"availability/target:ok/down"),
        "{cleared:?}"
    );

    // History: state, uptime and series.
    let viewer = h.token(Role::Viewer);
    let t = h
        .call("GET", "/api/admin/targets/sentinel/ok", Some(&viewer), None)
        .await
        .expect(200);
    assert_eq!(t.json["target"]["up"], true);
    assert_eq!(t.json["uptime"]["1h"]["checks"], 3);
    assert_eq!(t.json["uptime"]["1h"]["failures"], 1);
    assert_eq!(t.json["uptime"]["24h"]["success_percent"], 66.67);
    assert_eq!(t.json["series"]["hourly"][0]["checks"], 3);
    assert!(t.json["target"]["cert_expires_at"].is_string());
    h.call(
        "GET",
        "/api/admin/targets/sentinel/nope",
        Some(&viewer),
        None,
    )
    .await
    .expect(404);
    let list = h
        .call(
            "GET",
            "/api/admin/targets?bot=sentinel",
            Some(&viewer),
            None,
        )
        .await
        .expect(200);
    assert_eq!(list.json["targets"].as_array().unwrap().len(), 2);
    let metrics = h
        .call("GET", "/api/metrics", None, None)
        .await
        .expect(200)
        .text;
    assert!(
        metrics.contains("botfleet_target_up{bot=\"sentinel\",target=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics
        .contains("botfleet_target_cert_expiry_timestamp_seconds{bot=\"sentinel\",target=\"ok\"}"));
    assert!(metrics.contains("botfleet_target_response_seconds{bot=\"sentinel\",target=\"ok\"}"));
    crate::common::metrics::promtool(&metrics);
}

async fn purge_on_5xx(postgres: bool) {
    std::env::set_var("BOTFLEET_TEST_PURGE_TOKEN", "purge-secret");
    let site = site::http().await;
    site.controls.flip_status.store(503, Ordering::SeqCst);
    let h = harness(postgres, None, &[]).await;
    configure(
        &h,
        json!({
            "targets": [{"name": "shop", "url": format!("{}/flip", site.base), "critical": true}],
            "purge_hook": {"method": "POST", "url": format!("{}/purge", site.base),
                           "headers": {"Authorization": "Bearer ${BOTFLEET_TEST_PURGE_TOKEN}"}},
        }),
    )
    .await;
    // The secret is not in the database, only its name.
    let stored = h
        .call(
            "GET",
            "/api/admin/bots/sentinel/config",
            Some(&h.token(Role::Viewer)),
            None,
        )
        .await
        .expect(200);
    assert_eq!(
        stored.json["config"]["purge_hook"]["headers"]["Authorization"],
        "Bearer ${BOTFLEET_TEST_PURGE_TOKEN}"
    );

    let r = h.trigger("sentinel", "").await.expect(200);
    let f = finding(&r.json, "target:shop", "down").unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(f["title"], "Server error");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["state"], "auto-fixed", "{}", r.text);
    assert_eq!(
        site.controls.purges.load(Ordering::SeqCst),
        1,
        "the hook is called once"
    );
    let a = &r.json["actions"][0];
    assert_eq!(a["action_type"], "purge_cache");
    assert_eq!(a["success"], true);
    assert_eq!(a["verified"], true);
    assert!(
        a["description"]
            .as_str()
            .unwrap()
            .contains("/purge answered 200"),
        "{a}"
    );
    assert!(!a["description"].as_str().unwrap().contains("purge-secret"));

    let k = h
        .store()
        .get_knowledge("01900000-0000-7000-8000-000000000003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (k.times_applied, k.times_successful, k.success_rate),
        (1, 1, 100.0)
    );
    let detail = h.execution_detail(&r).await;
    assert_eq!(detail["actions"][0]["verified"], true);
    assert_eq!(detail["findings"][0]["resolution_method"], "auto-fixed");

    // Without a hook configured the action fails, and says why.
    site.controls.flip_status.store(500, Ordering::SeqCst);
    configure(
        &h,
        json!({"targets": [{"name": "shop", "url": format!("{}/flip", site.base)}]}),
    )
    .await;
    let r = h.trigger("sentinel", "force=true").await.expect(200);
    let a = &r.json["actions"][0];
    assert_eq!(a["success"], false);
    assert!(
        a["error"].as_str().unwrap().contains("no purge_hook"),
        "{a}"
    );
    assert_eq!(r.json["findings"][0]["state"], "new");
    assert_eq!(site.controls.purges.load(Ordering::SeqCst), 1);
}

async fn failure_kinds(postgres: bool) {
    let site = site::http().await;
    let h = harness(postgres, None, &[]).await;
    let b = &site.base;
    configure(
        &h,
        json!({
            "timeout_ms": 2000,
            "thresholds": {"sla_ms": 150, "slow_ms": 400},
            "targets": [
                {"name": "refused", "url": format!("http://127.0.0.1:{}/", refused_port())},
                {"name": "nowhere", "url": "http://botfleet-test.invalid/"},
                {"name": "hang", "url": format!("{b}/hang"), "timeout_ms": 300},
                {"name": "loop", "url": format!("{b}/loop/a")},
                {"name": "too-many", "url": format!("{b}/redirect/8")},
                {"name": "chain", "url": format!("{b}/redirect/3"), "keyword": "Welcome"},
                {"name": "missing", "url": format!("{b}/status/404")},
                {"name": "over-sla", "url": format!("{b}/slow/200")},
                {"name": "slow", "url": format!("{b}/slow/500")},
                {"name": "no-keyword", "url": format!("{b}/ok"), "keyword": "Goodbye"},
                {"name": "big", "url": format!("{b}/big"), "keyword": "NEEDLE"},
                {"name": "pattern", "url": format!("{b}/ok"), "regex": "Wel+come"},
                {"name": "teapot", "url": format!("{b}/status/418"), "expected_status": 418},
            ],
        }),
    )
    .await;
    let t0 = std::time::Instant::now();
    let r = h.trigger("sentinel", "").await.expect(200);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(5),
        "a hanging target holds nobody up"
    );
    assert_eq!(r.json["checks_performed"], 13, "{}", r.text);
    let data = &r.json["data"]["targets"];
    let kind = |t: &str| data[t]["error"]["kind"].as_str().unwrap_or("").to_string();
    assert_eq!(kind("refused"), "refused");
    assert_eq!(kind("nowhere"), "dns");
    assert_eq!(kind("hang"), "timeout");
    assert!(data["hang"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("waiting for the response"));
    assert_eq!(kind("loop"), "redirect_loop");
    assert_eq!(data["loop"]["redirects"].as_array().unwrap().len(), 2);
    assert_eq!(kind("too-many"), "too_many_redirects");
    assert_eq!(data["chain"]["status"], 200);
    assert_eq!(
        data["chain"]["redirects"].as_array().unwrap().len(),
        4,
        "3, 2, 1, 0, then /ok"
    );
    assert!(data["chain"]["final_url"]
        .as_str()
        .unwrap()
        .ends_with("/ok"));
    assert_eq!(data["big"]["body_truncated"], true);
    assert_eq!(data["big"]["body_bytes"], 1 << 20);

    let title = |t: &str, key: &str| {
        finding(&r.json, &format!("target:{t}"), key)
            .map(|f| f["title"].as_str().unwrap().to_string())
    };
    for t in ["refused", "nowhere", "hang", "loop", "too-many"] {
        assert_eq!(title(t, "down").as_deref(), Some("Site unreachable"), "{t}");
        assert_eq!(
            finding(&r.json, &format!("target:{t}"), "down").unwrap()["severity"],
            "error",
            "not critical"
        );
    }
    assert_eq!(
        title("missing", "status").as_deref(),
        Some("Unexpected status")
    );
    assert_eq!(
        title("over-sla", "latency").as_deref(),
        Some("Response over SLA")
    );
    assert_eq!(title("slow", "latency").as_deref(), Some("Slow response"));
    assert_eq!(
        title("no-keyword", "keyword").as_deref(),
        Some("Content check failed")
    );
    let big = finding(&r.json, "target:big", "keyword").unwrap();
    assert!(big["description"].as_str().unwrap().contains("first MiB"));
    for t in ["chain", "pattern", "teapot"] {
        assert!(
            r.json["findings"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["component"] != format!("target:{t}")),
            "{t}"
        );
    }
}

async fn certificates(postgres: bool) {
    let soon = test_ca().https(20).await;
    let sooner = test_ca().https(3).await;
    let expired = test_ca().https(-2).await;
    let h = harness(postgres, None, &[]).await;
    configure(
        &h,
        json!({"targets": [
            {"name": "soon", "url": format!("{}/ok", soon.base)},
            {"name": "sooner", "url": format!("{}/ok", sooner.base)},
            {"name": "expired", "url": format!("{}/ok", expired.base)},
        ]}),
    )
    .await;
    let r = h.trigger("sentinel", "").await.expect(200);
    let cert = |t: &str| {
        finding(&r.json, &format!("target:{t}"), "cert")
            .unwrap_or_else(|| panic!("{t}: {}", r.text))
            .clone()
    };
    assert_eq!(
        (
            cert("soon")["severity"].as_str(),
            cert("soon")["title"].as_str()
        ),
        (Some("warning"), Some("TLS certificate expiring"))
    );
    assert_eq!(cert("sooner")["severity"], "critical");
    assert_eq!(
        (
            cert("expired")["severity"].as_str(),
            cert("expired")["title"].as_str()
        ),
        (Some("critical"), Some("TLS certificate expired"))
    );
    let days = cert("soon")["metadata"]["days_left"].as_f64().unwrap();
    assert!((19.0..=20.1).contains(&days), "{days}");
    // An expired certificate also makes the site unreachable for browsers.
    let down = finding(&r.json, "target:expired", "down").unwrap();
    assert_eq!(r.json["data"]["targets"]["expired"]["error"]["kind"], "tls");
    assert!(
        down["description"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("expired"),
        "{down}"
    );
    assert_eq!(
        r.json["data"]["targets"]["expired"]["tls"]["verified"],
        false
    );
    assert!(
        r.json["data"]["targets"]["expired"]["tls"]["days_left"]
            .as_f64()
            .unwrap()
            < 0.0
    );
}

async fn history_fold(postgres: bool) {
    let site = site::http().await;
    let h = harness(postgres, None, &[]).await;
    configure(
        &h,
        json!({"targets": [{"name": "home", "url": format!("{}/ok", site.base)}]}),
    )
    .await;
    for _ in 0..3 {
        h.trigger("sentinel", "force=true").await.expect(200);
    }
    h.clock.jump(chrono::Duration::hours(3));
    h.trigger("sentinel", "force=true").await.expect(200);
    let hourly = h
        .store()
        .target_stats(Some("sentinel"), None, h.now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(hourly.iter().map(|s| s.checks).sum::<i64>(), 4);
    assert_eq!(hourly.len(), 2);

    // Three days on, the older hours are folded into a day.
    h.clock.jump(chrono::Duration::days(2));
    h.trigger("sentinel", "force=true").await.expect(200);
    let report = h.state.engine.fold_history().await.unwrap();
    assert_eq!(report.hourly_rows_folded, 2);
    assert_eq!(report.daily_rows_written, 1);
    let stats = h
        .store()
        .target_stats(Some("sentinel"), None, h.now() - chrono::Duration::days(30))
        .await
        .unwrap();
    let days: Vec<_> = stats.iter().filter(|s| s.granularity == "day").collect();
    let hours: Vec<_> = stats.iter().filter(|s| s.granularity == "hour").collect();
    assert_eq!((days.len(), days[0].checks, hours.len()), (1, 4, 1));
    assert_eq!(days[0].latency_buckets.iter().sum::<i64>(), 4);
    let t = h
        .call(
            "GET",
            "/api/admin/targets/sentinel/home",
            Some(&h.token(Role::Viewer)),
            None,
        )
        .await
        .expect(200);
    assert_eq!(t.json["uptime"]["7d"]["checks"], 5);
    assert_eq!(t.json["series"]["daily"][0]["checks"], 4);
    assert_eq!(
        h.state
            .engine
            .fold_history()
            .await
            .unwrap()
            .hourly_rows_folded,
        0,
        "nothing twice"
    );

    // A target nobody has checked for 30 days is forgotten.
    h.clock.jump(chrono::Duration::days(31));
    let report = h.state.engine.fold_history().await.unwrap();
    assert_eq!(report.targets_forgotten, 1);
    assert!(h.store().list_targets().await.unwrap().is_empty());
}

async fn error_rate(postgres: bool) {
    let site = site::http().await;
    let h = harness(postgres, None, &[]).await;
    configure(
        &h,
        json!({"min_checks_for_rate": 20, "thresholds": {"error_rate_warning_percent": 1, "error_rate_alert_percent": 5},
               "targets": [{"name": "shop", "url": format!("{}/flip", site.base)}]}),
    )
    .await;
    for _ in 0..19 {
        h.trigger("sentinel", "force=true").await.expect(200);
    }
    // The 20th check fails: 1 in 20 is 5 %, over the warning, not over the alert.
    site.controls.flip_status.store(502, Ordering::SeqCst);
    let r = h.trigger("sentinel", "force=true").await.expect(200);
    let rate = finding(&r.json, "target:shop", "rate").unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(rate["title"], "High error rate");
    assert_eq!(rate["severity"], "warning");
    assert!(
        rate["description"]
            .as_str()
            .unwrap()
            .contains("1 of 20 checks failed"),
        "{rate}"
    );
    // A second failure: 2 in 21 is over 5 %.
    let r = h.trigger("sentinel", "force=true").await.expect(200);
    let rate = finding(&r.json, "target:shop", "rate").unwrap();
    assert_eq!(rate["severity"], "error");
    assert_eq!(rate["occurrences"], 2);
    // Back up: the site-down finding clears at once; the hour's rate remembers.
    site.controls.flip_status.store(200, Ordering::SeqCst);
    let r = h.trigger("sentinel", "force=true").await.expect(200);
    assert!(finding(&r.json, "target:shop", "down").is_none());
    assert!(finding(&r.json, "target:shop", "rate").is_some());
    assert_eq!(
        r.json["data"]["targets"]["shop"]["last_hour"]["failures"],
        2
    );
}
