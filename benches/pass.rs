//! `cargo bench --bench pass`: what botfleet itself costs.
//!
//! 1. A pass that checks nothing external, through the engine (lease, execution row, finish,
//!    metrics — every write a real pass makes), and through the router with the cron secret:
//!    passes per second, p50 and p99, on SQLite and — with `BENCH_DATABASE_URL` or
//!    `TEST_DATABASE_URL` — on PostgreSQL.
//! 2. `/api/health` requests per second against a bare axum handler, both served by this
//!    process on loopback and loaded by `wrk` the same way, alternately, three times each
//!    (skipped with a note if wrk is absent).
//! 3. The release binary's resident memory when idle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use botfleet::bots::{Bot, Registry};
use botfleet::clock::SystemClock;
use botfleet::config::Config;
use botfleet::engine::{BotError, PassContext, TriggerOutcome, TriggerRequest};
use botfleet::error::FieldError;
use botfleet::schedule::Schedules;
use botfleet::secrets::Secrets;
use botfleet::state::AppState;
use serde_json::{json, Value};
use tower::ServiceExt;

const SECRET: &str = "bench-cron-secret-0123456789";

/// Checks nothing external: one check, no findings.
struct Noop;

#[async_trait]
impl Bot for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn display_name(&self) -> &'static str {
        "No-op"
    }
    fn description(&self) -> &'static str {
        "checks nothing external"
    }
    fn default_config(&self, _env: &Config) -> Value {
        json!({})
    }
    fn validate_config(&self, _c: &Value) -> Vec<FieldError> {
        Vec::new()
    }
    async fn run(&self, ctx: &PassContext) -> Result<(), BotError> {
        ctx.check("self");
        Ok(())
    }
}

async fn assemble(url: &str, dir: &std::path::Path) -> AppState {
    let store = botfleet::store::connect(url, 10)
        .await
        .expect("the bench database opens");
    let mut config = Config::for_tests(dir.to_path_buf(), url.to_string());
    config.log_level = "error".into();
    botfleet::assemble(botfleet::Parts {
        config,
        store,
        clock: Arc::new(SystemClock),
        bots: Registry::new(vec![Arc::new(Noop)]),
        schedules: Schedules::from_pairs(&[]).unwrap(),
        secrets: Secrets {
            cron_secret: SECRET.into(),
            jwt_secret: "bench-jwt-secret-0123456789abcdef0123456789".into(),
        },
    })
    .await
    .expect("botfleet assembles")
}

struct Stats {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>, wall: Duration) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        per_sec: samples.len() as f64 / wall.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn passes(state: &AppState, n: usize) -> Stats {
    let mut samples = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let mut req = TriggerRequest::new("noop", "bench");
        req.force = true;
        let t = Instant::now();
        match state.engine.trigger(req).await.unwrap() {
            TriggerOutcome::Report(r) => assert_eq!(r.status, "success"),
            other => panic!("{other:?}"),
        }
        samples.push(t.elapsed());
    }
    stats(samples, t0.elapsed())
}

async fn http_passes(state: &AppState, n: usize) -> Stats {
    let app = botfleet::app(state.clone());
    let mut samples = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let mut req = Request::post("/api/bots/noop?force=true")
            .header("authorization", format!("Bearer {SECRET}"))
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        let t = Instant::now();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let _ = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        samples.push(t.elapsed());
    }
    stats(samples, t0.elapsed())
}

async fn bench_backend(name: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let state = assemble(url, dir.path()).await;
    passes(&state, 300).await; // warm up: connections, statement caches
    let engine = passes(&state, 3000).await;
    let http = http_passes(&state, 3000).await;
    println!(
        "pass overhead, {name:<10} engine: {:>6.0} passes/s  p50 {}  p99 {}",
        engine.per_sec,
        ms(engine.p50),
        ms(engine.p99)
    );
    println!(
        "pass overhead, {name:<10} HTTP:   {:>6.0} passes/s  p50 {}  p99 {}",
        http.per_sec,
        ms(http.p50),
        ms(http.p99)
    );
    state.store.close().await;
}

/// Runs `wrk` against `url`; returns requests per second.
fn wrk(url: &str) -> Option<f64> {
    let out = std::process::Command::new("wrk")
        .args(["-t1", "-c32", "-d5s", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("Requests/sec:"))?;
    if text.contains("Non-2xx") {
        panic!("{url} answered non-2xx under load:\n{text}");
    }
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Serves a router the way `botfleet serve` does (trailing-slash normalisation, peer address).
async fn serve(app: axum::Router) -> SocketAddr {
    use tower::Layer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash().layer(app);
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
        SocketAddr,
    >(app);
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

async fn bench_health() {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("/api/health: wrk is not installed (apt-get install wrk); skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/health.db", dir.path().display());
    let state = assemble(&url, dir.path()).await;
    let bare = axum::Router::new().route(
        "/api/health",
        axum::routing::get(|| async { axum::Json(json!({"status": "healthy"})) }),
    );
    let bare_addr = serve(bare).await;
    let ours_addr = serve(botfleet::routes::router(state)).await;
    // Alternate the two, so drift in the machine's load falls on both alike; compare medians.
    let mut bare = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..3 {
        bare.push(wrk(&format!("http://{bare_addr}/api/health")).unwrap_or(0.0));
        ours.push(wrk(&format!("http://{ours_addr}/api/health")).unwrap_or(0.0));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (bare_rps, ours_rps) = (median(&mut bare), median(&mut ours));
    println!(
        "/api/health: {ours_rps:>8.0} req/s; bare axum handler: {bare_rps:>8.0} req/s; ratio {:.0} % (medians of 3 alternating wrk runs)",
        ours_rps * 100.0 / bare_rps.max(1.0)
    );
}

fn idle_memory() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_botfleet"))
        .current_dir(dir.path())
        .env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ? kB")
        .to_string();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "idle memory (release binary, SQLite, after start-up): {}",
        rss.trim_start_matches("VmRSS:").trim()
    );
}

fn main() {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!("machine: {cpus} cores, {model}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        bench_backend(
            "SQLite",
            &format!("sqlite://{}/bench.db", dir.path().display()),
        )
        .await;
        let pg = std::env::var("BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("TEST_DATABASE_URL"))
            .ok();
        match pg {
            Some(url) => {
                let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
                let pool = sqlx::PgPool::connect(&url)
                    .await
                    .expect("PostgreSQL for the benchmark");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&pool)
                    .await
                    .unwrap();
                let sep = if url.contains('?') { '&' } else { '?' };
                bench_backend(
                    "PostgreSQL",
                    &format!("{url}{sep}options[search_path]={schema}"),
                )
                .await;
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            None => {
                println!("PostgreSQL: set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to measure it")
            }
        }
        bench_health().await;
    });
    idle_memory();
}
