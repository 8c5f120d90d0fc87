//! Two botfleet processes on one database, hammered with triggers for one bot: no two
//! executions ever overlap, and every answer is a report or a skip.

use std::sync::Arc;
use std::time::Duration;

use botfleet::auth::{AuthKeys, Role};
use botfleet::secrets::Secrets;
use serde_json::{json, Value};

use crate::common::process::Server;
use crate::common::{fresh_database, CRON_SECRET, JWT_SECRET};
use crate::on_both;

on_both! {
    two_processes_on_one_database_never_overlap => hammer;
    a_block_reaches_every_process => block_reaches_every_replica;
}

/// Two botfleet processes on one fresh database, and an admin token for them.
struct Pair {
    a: Server,
    b: Server,
    database_url: String,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn two_processes(postgres: bool, extra_env: &[(&str, &str)]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database(postgres, dir.path()).await.unwrap();
    let mut env = vec![
        ("DATABASE_URL", database_url.as_str()),
        ("CRON_SECRET", CRON_SECRET),
        ("JWT_SECRET", JWT_SECRET),
        ("LOG_LEVEL", "warn"),
    ];
    env.extend_from_slice(extra_env);
    let a = Server::start(dir.path(), &env).await;
    let b = Server::start(dir.path(), &env).await;
    let admin = AuthKeys::new(&Secrets {
        cron_secret: CRON_SECRET.into(),
        jwt_secret: JWT_SECRET.into(),
    })
    .mint(
        "test",
        Role::Admin,
        chrono::Duration::hours(1),
        chrono::Utc::now(),
    );
    Pair {
        a,
        b,
        database_url,
        admin,
        _dir: dir,
    }
}

/// A local server that answers `{"active_users": 5}` after 40 ms: each pulse pass waits on it.
async fn slow_json_server() -> String {
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            axum::Json(json!({"active_users": 5}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/stats")
}

async fn hammer(postgres: bool) {
    let Pair {
        a,
        b,
        database_url,
        admin,
        _dir,
    } = two_processes(postgres, &[]).await;
    let http = reqwest::Client::new();
    let probe = slow_json_server().await;
    let put = http
        .put(format!("{}/api/admin/bots/pulse/config", a.base))
        .bearer_auth(&admin)
        .json(&json!({"probes": [{"name": "users", "url": probe, "pointer": "/active_users", "warn_above": 1000}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());

    let bases = Arc::new([a.base.clone(), b.base.clone()]);
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let http = http.clone();
        let bases = bases.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..10 {
                let base = &bases[(worker + i) % 2];
                let r = http
                    .post(format!("{base}/api/bots/pulse?force=true"))
                    .bearer_auth(CRON_SECRET)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                answers.push((status, body));
            }
            answers
        }));
    }
    let mut ran = 0;
    let mut skipped = 0;
    for t in tasks {
        for (status, body) in t.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            match body["status"].as_str() {
                Some("success") => ran += 1,
                Some("skipped") => {
                    assert_eq!(body["reason"], "already_running", "{body}");
                    skipped += 1;
                }
                other => panic!("neither a report nor a skip: {other:?} {body}"),
            }
        }
    }
    assert_eq!(ran + skipped, 160);
    assert!(ran >= 2, "passes ran on both processes");

    let store = botfleet::store::connect(&database_url, 2).await.unwrap();
    let rows = store
        .list_executions(&botfleet::store::ExecutionQuery {
            bot: Some("pulse".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        ran,
        "one execution per pass that ran, none lost"
    );
    let mut spans: Vec<_> = rows
        .iter()
        .map(|r| (r.started_at, r.completed_at.unwrap()))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "overlap: {:?} began before {:?} ended",
            w[1],
            w[0]
        );
    }
    eprintln!("two processes: {ran} passes ran, {skipped} skipped as already running, no overlap");
    store.close().await;
    drop((a, b));
}

/// A block made through one process is enforced by the other within its refresh (5 s).
async fn block_reaches_every_replica(postgres: bool) {
    // Both sit "behind a proxy" on loopback, so X-Forwarded-For names the client.
    let Pair {
        a, b, admin, _dir, ..
    } = two_processes(postgres, &[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let http = reqwest::Client::new();
    let attacker = "203.0.113.50";
    let r = http
        .put(format!("{}/api/admin/bots/oracle/config", a.base))
        .bearer_auth(&admin)
        .json(&json!({"scan_dependencies": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // B has read the (empty) block list, and serves the attacker.
    let before = http
        .get(format!("{}/api/status", b.base))
        .header("x-forwarded-for", attacker)
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), 200);
    for _ in 0..6 {
        let r = http
            .post(format!("{}/api/bots/pulse", a.base))
            .bearer_auth("wrong-secret-wrong-secret")
            .header("x-forwarded-for", attacker)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let pass: Value = http
        .post(format!("{}/api/bots/oracle", a.base))
        .bearer_auth(CRON_SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pass["actions"][0]["action_type"], "block_ip", "{pass}");
    let started = std::time::Instant::now();
    loop {
        let r = http
            .get(format!("{}/api/status", b.base))
            .header("x-forwarded-for", attacker)
            .send()
            .await
            .unwrap();
        if r.status() == 403 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "blocked");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "process B never enforced the block"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "the other process refused {attacker} {} ms after the block",
        started.elapsed().as_millis()
    );
    let other = http
        .get(format!("{}/api/status", b.base))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "other addresses are unaffected");
    drop((a, b));
}
