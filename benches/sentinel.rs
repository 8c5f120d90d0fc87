//! `cargo bench --bench sentinel`: a sentinel pass over 1,000 local targets that each answer
//! after 100 ms, 100 at a time. The floor is 1.0 s (1,000 / 100 × 100 ms). Reported: wall time,
//! this process's CPU time per 1,000 checks (probing and recording: the pass's writes to the
//! database included), and peak memory. The targets are served by a second process, so their
//! CPU is not counted. SQLite always; PostgreSQL too with `BENCH_DATABASE_URL` (or
//! `TEST_DATABASE_URL`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use botfleet::clock::SystemClock;
use botfleet::config::Config;
use botfleet::engine::{TriggerOutcome, TriggerRequest};
use botfleet::schedule::Schedules;
use botfleet::secrets::Secrets;
use serde_json::json;

const TARGETS: usize = 1000;
const PORTS: usize = 20;
const PASSES: usize = 5;

/// The second process: 20 ports, every path answering after 100 ms.
fn serve_targets() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/t/{i}",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                "ok"
            }),
        );
        let mut ports = Vec::new();
        for _ in 0..PORTS {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push(listener.local_addr().unwrap().port());
            let app = app.clone();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        }
        let line = ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        println!("{line}");
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
    });
}

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Peak resident memory of this process (`VmHWM`; unlike `ru_maxrss`, it does not carry
/// over the peak of the process that exec'd us, such as cargo).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn bench(name: &str, url: &str, ports: &[u16]) {
    let dir = tempfile::tempdir().unwrap();
    let store = botfleet::store::connect(url, 10).await.unwrap();
    let mut config = Config::for_tests(dir.path().to_path_buf(), url.to_string());
    config.bot_timeout_ms = 60_000;
    let state = botfleet::assemble(botfleet::Parts {
        config,
        store,
        clock: Arc::new(SystemClock),
        bots: botfleet::bots::registry(),
        schedules: Schedules::from_pairs(&[("sentinel", "*/2 * * * *")]).unwrap(),
        secrets: Secrets {
            cron_secret: "bench-cron-secret-0123456789".into(),
            jwt_secret: "bench-jwt-secret-0123456789abcdef0123456789".into(),
        },
    })
    .await
    .unwrap();
    println!(
        "  {name}: peak RSS after assembling {:.1} MB",
        peak_rss_mb()
    );
    let targets: Vec<_> = (0..TARGETS)
        .map(|i| json!({"name": format!("t{i:04}"), "url": format!("http://127.0.0.1:{}/t/{i}", ports[i % ports.len()])}))
        .collect();
    let config =
        json!({"targets": targets, "concurrency": 100, "per_host_limit": 10, "timeout_ms": 5000});
    let sentinel = state.bots.get("sentinel").unwrap();
    assert!(state
        .engine
        .validate_config(sentinel.as_ref(), &config)
        .is_empty());
    state
        .store
        .set_bot_config("sentinel", &config, chrono::Utc::now())
        .await
        .unwrap();

    println!(
        "  {name}: peak RSS before the passes {:.1} MB",
        peak_rss_mb()
    );
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for pass in 0..=PASSES {
        let mut req = TriggerRequest::new("sentinel", "bench");
        req.force = true;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let outcome = state.engine.trigger(req).await.unwrap();
        let wall = t0.elapsed();
        let cpu = cpu_seconds() - cpu0;
        let TriggerOutcome::Report(r) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(r.status, "success");
        assert_eq!(r.checks_performed as usize, TARGETS, "every target checked");
        assert_eq!(r.issues_found, 0, "{:?}", r.findings.first());
        if std::env::var("BENCH_VERBOSE").is_ok() {
            println!(
                "    pass {pass}: wall {:.3} s, of which the pass itself {} ms",
                wall.as_secs_f64(),
                r.execution_time_ms
            );
        }
        if pass > 0 {
            // The first pass creates the target rows; the rest are the steady state.
            walls.push(wall.as_secs_f64());
            cpus.push(cpu);
        }
    }
    walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    cpus.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = |v: &[f64]| v[v.len() / 2];
    println!(
        "sentinel, {name:<10} {TARGETS} targets: wall {:.3} s (floor 1.000 s; best {:.3}, worst {:.3}); CPU {:.3} s per 1,000 checks; peak RSS {:.1} MB",
        median(&walls),
        walls[0],
        walls[walls.len() - 1],
        median(&cpus) * 1000.0 / TARGETS as f64,
        peak_rss_mb()
    );
    state.store.close().await;
}

fn main() {
    if std::env::var("BOTFLEET_BENCH_ROLE").as_deref() == Ok("targets") {
        serve_targets();
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("BOTFLEET_BENCH_ROLE", "targets")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports: Vec<u16> = line.trim().split(',').map(|p| p.parse().unwrap()).collect();

    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "machine: {cpus} cores; targets served by a second process on {} loopback ports",
        ports.len()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        bench(
            "SQLite",
            &format!("sqlite://{}/bench.db", dir.path().display()),
            &ports,
        )
        .await;
        if let Ok(url) =
            std::env::var("BENCH_DATABASE_URL").or_else(|_| std::env::var("TEST_DATABASE_URL"))
        {
            let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&pool)
                .await
                .unwrap();
            let sep = if url.contains('?') { '&' } else { '?' };
            bench(
                "PostgreSQL",
                &format!("{url}{sep}options[search_path]={schema}"),
                &ports,
            )
            .await;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
        }
    });
    drop(child.stdin.take());
    let _ = child.wait();
}
