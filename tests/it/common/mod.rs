//! The test harness: botfleet assembled in-process on a real database — a fresh SQLite file, or a
//! fresh schema on the PostgreSQL of `TEST_DATABASE_URL` — with a clock tests can jump, the
//! real bots plus a few scripted test bots, and a helper to call the router.

pub mod bots;
pub mod metrics;
pub mod process;
pub mod site;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use botfleet::auth::Role;
use botfleet::bots::Registry;
use botfleet::clock::{Clock, TestClock};
use botfleet::config::Config;
use botfleet::schedule::Schedules;
use botfleet::secrets::Secrets;
use botfleet::state::AppState;
use botfleet::store::Store;
use chrono::{TimeZone, Utc};
use serde_json::Value;
use tower::ServiceExt;

/// Writes a test body once and runs it on both backends:
/// `both_backends! { async fn name(h) { ... } }` gives `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($( $(#[$meta:meta])* async fn $name:ident($h:ident) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                $(#[$meta])*
                async fn body($h: $crate::common::Harness) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    body($crate::common::Harness::sqlite().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(h) = $crate::common::Harness::postgres().await {
                        body(h).await;
                    }
                }
            }
        )*
    };
}

/// For bodies that build their own set-up from a backend choice:
/// `on_both! { test_name => body_fn; }` runs `body_fn(false)` (SQLite) and `body_fn(true)`
/// (PostgreSQL, when `TEST_DATABASE_URL` is set).
#[macro_export]
macro_rules! on_both {
    ($($name:ident => $body:ident;)*) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$body(false).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if $crate::common::postgres_url().is_some() {
                        super::$body(true).await;
                    }
                }
            }
        )*
    };
}

pub const CRON_SECRET: &str = "test-cron-secret-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";

/// The certificate authority every HTTPS test site is signed by; the harness trusts it
/// through `PROBE_CA_FILE`.
pub fn test_ca() -> &'static site::Ca {
    static CA: std::sync::OnceLock<site::Ca> = std::sync::OnceLock::new();
    CA.get_or_init(site::Ca::new)
}

/// Where every test's clock starts: 10 seconds into a */5 slot.
pub fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 10).unwrap()
}

pub struct Harness {
    pub state: AppState,
    pub clock: Arc<TestClock>,
    pub knobs: Arc<bots::AllKnobs>,
    pub url: String,
    app: tower_http::normalize_path::NormalizePath<axum::Router>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
}

/// The PostgreSQL URL tests use, if any. Set but unreachable is a failure, not a skip.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh schema on the test PostgreSQL; returns a URL whose connections use it.
pub async fn fresh_pg_schema(base: &str) -> String {
    use sqlx::Connection;
    let schema = format!("bf_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap_or_else(|e| {
        panic!("TEST_DATABASE_URL is set but PostgreSQL cannot be reached: {e}")
    });
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}

/// A fresh database: a SQLite file in `dir`, or a fresh schema on the test PostgreSQL (`None`
/// when `TEST_DATABASE_URL` is not set).
pub async fn fresh_database(postgres: bool, dir: &std::path::Path) -> Option<String> {
    if postgres {
        Some(fresh_pg_schema(&postgres_url()?).await)
    } else {
        Some(format!("sqlite://{}/botfleet.db", dir.display()))
    }
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/botfleet.db", dir.path().display());
        Self::build(dir, url, |_| {}).await
    }

    pub async fn postgres() -> Option<Harness> {
        let Some(base) = postgres_url() else {
            eprintln!(
                "TEST_DATABASE_URL is not set: the PostgreSQL run of this test is not performed"
            );
            return None;
        };
        let url = fresh_pg_schema(&base).await;
        Some(Self::build(tempfile::tempdir().unwrap(), url, |_| {}).await)
    }

    /// Either backend, with the config adjusted first.
    pub async fn with_config(postgres: bool, adjust: impl FnOnce(&mut Config)) -> Option<Harness> {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(postgres, dir.path()).await?;
        Some(Self::build(dir, url, adjust).await)
    }

    /// On a database URL of the test's choosing.
    pub async fn on_url(url: String, adjust: impl FnOnce(&mut Config)) -> Harness {
        Self::build(tempfile::tempdir().unwrap(), url, adjust).await
    }

    async fn build(
        dir: tempfile::TempDir,
        url: String,
        adjust: impl FnOnce(&mut Config),
    ) -> Harness {
        let mut config = Config::for_tests(dir.path().to_path_buf(), url.clone());
        config.probe_ca_file = Some(test_ca().pem_path.clone());
        adjust(&mut config);
        let store: Arc<dyn Store> = botfleet::store::connect(&url, 10)
            .await
            .expect("the test database opens");
        let clock = Arc::new(TestClock::starting_at(start_time()));
        let knobs = Arc::new(bots::AllKnobs::default());
        let registry: Registry = bots::registry(knobs.clone());
        // The shipped schedules, and the scripted bots' own.
        let shipped_names = botfleet::bots::registry().names();
        let shipped = botfleet::schedule::parse_crons(
            botfleet::schedule::BUILTIN_CRONS,
            "crons.json",
            &shipped_names,
        )
        .unwrap();
        let mut pairs: Vec<(&str, &str)> = shipped
            .entries()
            .map(|(b, s)| (b, s.expr.as_str()))
            .collect();
        pairs.extend([
            ("steady", "*/5 * * * *"),
            ("slow", "*/5 * * * *"),
            ("flaky", "*/5 * * * *"),
            ("shedcheck", "*/5 * * * *"),
        ]);
        let schedules = Schedules::from_pairs(&pairs).unwrap();
        let state = botfleet::assemble(botfleet::Parts {
            config,
            store,
            clock: clock.clone(),
            bots: registry,
            schedules,
            secrets: Secrets {
                cron_secret: CRON_SECRET.into(),
                jwt_secret: JWT_SECRET.into(),
            },
        })
        .await
        .expect("botfleet assembles");
        Harness {
            app: botfleet::app(state.clone()),
            state,
            clock,
            knobs,
            url,
            _dir: dir,
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }

    pub fn token(&self, role: Role) -> String {
        self.state.auth.mint(
            &format!("test-{}", role.as_str()),
            role,
            chrono::Duration::hours(1),
            Utc::now(),
        )
    }

    pub fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }

    /// Calls the app in-process, from 10.0.0.1 unless `from` says otherwise.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_from(method, uri, auth, body, "10.0.0.1").await
    }

    pub async fn call_from(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
        from: &str,
    ) -> Reply {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap(), from).await
    }

    /// Sends a request built by the caller (raw bodies, odd headers).
    pub async fn send(&self, mut req: Request<Body>, from: &str) -> Reply {
        let addr: SocketAddr = format!("{from}:40000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    /// Triggers a pass with the cron secret.
    pub async fn trigger(&self, bot: &str, query: &str) -> Reply {
        let uri = if query.is_empty() {
            format!("/api/bots/{bot}")
        } else {
            format!("/api/bots/{bot}?{query}")
        };
        self.call("POST", &uri, Some(CRON_SECRET), None).await
    }

    /// Executions of a bot, newest first.
    pub async fn executions(&self, bot: &str) -> Vec<botfleet::store::ExecutionRow> {
        self.store()
            .list_executions(&botfleet::store::ExecutionQuery {
                bot: Some(bot.into()),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// The schema a PostgreSQL harness made, from its URL.
    fn pg_schema(&self) -> Option<&str> {
        self.url.split("options[search_path]=").nth(1)
    }

    /// Runs statements on the test's database directly (setting up data).
    pub async fn exec(&self, sql: &str) {
        use sqlx::Executor;
        if self.url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            pool.execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            pool.execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            pool.close().await;
        }
    }

    /// The execution a trigger's report names, with its findings and actions, as a viewer sees it.
    pub async fn execution_detail(&self, report: &Reply) -> Value {
        let id = report.json["execution_id"]
            .as_str()
            .expect("the report names its execution");
        let path = format!("/api/admin/executions/{id}");
        let viewer = self.token(Role::Viewer);
        self.call("GET", &path, Some(&viewer), None)
            .await
            .expect(200)
            .json
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }

    /// The data directory of this harness.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.state.config.data_dir.clone()
    }

    /// Rows in a table (for "nothing was recorded" checks).
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if self.url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            let n = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            let n = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

impl Drop for Harness {
    /// Drops the test's PostgreSQL schema, so runs leave nothing behind.
    fn drop(&mut self) {
        let (Some(schema), Some(base)) = (self.pg_schema().map(str::to_string), postgres_url())
        else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}
