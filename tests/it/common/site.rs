//! A site for the web bots to probe, served by the test over real HTTP and HTTPS: pages that
//! answer slowly, fail, redirect (and loop), send 2 MiB, hang, serve JSON, answer CORS
//! preflights, announce rate limits — and a purge hook that repairs the failing page.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::json;

#[derive(Default)]
pub struct Controls {
    /// What `/flip` answers (200 until a test says otherwise).
    pub flip_status: AtomicU16,
    /// Calls to `/purge`.
    pub purges: AtomicU32,
    /// `/flaky` fails this many more times before it answers 200.
    pub flaky_failures_left: AtomicU32,
    /// Calls to `/flaky`.
    pub flaky_calls: AtomicU32,
}

pub struct Site {
    pub base: String,
    pub controls: Arc<Controls>,
    pub addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Site {
    /// Stops serving: the port refuses connections.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }

    /// Serves again on the same address.
    pub async fn start_again(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        *self.task.lock().unwrap() = Some(serve(listener, self.tls.clone(), self.controls.clone()));
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    controls: Arc<Controls>,
) -> tokio::task::JoinHandle<()> {
    let app = app(controls);
    match tls {
        None => tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }),
        Some(config) => {
            let tls = TlsListener {
                inner: listener,
                acceptor: tokio_rustls::TlsAcceptor::from(config),
            };
            tokio::spawn(async move {
                let _ = axum::serve(tls, app).await;
            })
        }
    }
}

fn app(controls: Arc<Controls>) -> Router {
    Router::new()
        .route(
            "/ok",
            get(|| async { "<html><h1>Welcome to the site</h1></html>" }),
        )
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                (StatusCode::from_u16(code).unwrap(), "status page")
            }),
        )
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slow but fine"
            }),
        )
        .route(
            "/redirect/{n}",
            get(|Path(n): Path<u32>| async move {
                let to = if n == 0 {
                    "/ok".to_string()
                } else {
                    format!("/redirect/{}", n - 1)
                };
                (StatusCode::FOUND, [("location", to)], "")
            }),
        )
        .route(
            "/loop/a",
            get(|| async { (StatusCode::FOUND, [("location", "/loop/b")], "") }),
        )
        .route(
            "/loop/b",
            get(|| async { (StatusCode::MOVED_PERMANENTLY, [("location", "/loop/a")], "") }),
        )
        .route(
            "/big",
            get(|| async {
                let mut body = "x".repeat(2 << 20);
                body.push_str("NEEDLE");
                body
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }),
        )
        .route(
            "/json",
            get(|| async {
                axum::Json(
                    json!({"status": "degraded", "count": 0, "items": [1, 2], "version": "1.4.2"}),
                )
            }),
        )
        .route(
            "/flip",
            get(|State(c): State<Arc<Controls>>| async move {
                let s = c.flip_status.load(Ordering::SeqCst);
                (
                    StatusCode::from_u16(if s == 0 { 200 } else { s }).unwrap(),
                    "flip",
                )
            }),
        )
        .route(
            "/purge",
            post(
                |State(c): State<Arc<Controls>>, headers: HeaderMap| async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some("Bearer purge-secret")
                    {
                        return (StatusCode::UNAUTHORIZED, "who are you").into_response();
                    }
                    c.purges.fetch_add(1, Ordering::SeqCst);
                    c.flip_status.store(200, Ordering::SeqCst);
                    (StatusCode::OK, "purged").into_response()
                },
            ),
        )
        .route(
            "/flaky",
            get(|State(c): State<Arc<Controls>>| async move {
                c.flaky_calls.fetch_add(1, Ordering::SeqCst);
                let left = c.flaky_failures_left.load(Ordering::SeqCst);
                if left > 0 {
                    c.flaky_failures_left.store(left - 1, Ordering::SeqCst);
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(json!({"error": "busy"})),
                    )
                } else {
                    (StatusCode::OK, axum::Json(json!({"status": "ok"})))
                }
            }),
        )
        .route(
            "/cors",
            any(|method: Method, headers: HeaderMap| async move {
                let origin = headers
                    .get("origin")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let mut r: Response = if method == Method::OPTIONS {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    axum::Json(json!({"status": "ok"})).into_response()
                };
                if origin == "https://good.example" {
                    let h = r.headers_mut();
                    h.insert("access-control-allow-origin", origin.parse().unwrap());
                    h.insert("access-control-allow-methods", "GET, POST".parse().unwrap());
                    h.insert(
                        "access-control-allow-headers",
                        "content-type".parse().unwrap(),
                    );
                }
                r
            }),
        )
        .route(
            "/limited",
            get(|| async {
                (
                    [("x-ratelimit-limit", "100"), ("x-ratelimit-remaining", "3")],
                    axum::Json(json!({"status": "ok"})),
                )
            }),
        )
        .with_state(controls)
}

/// Serves the site over plain HTTP on a free loopback port.
pub async fn http() -> Site {
    let controls = Arc::new(Controls::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = serve(listener, None, controls.clone());
    Site {
        base: format!("http://127.0.0.1:{}", addr.port()),
        controls,
        addr,
        tls: None,
        task: std::sync::Mutex::new(Some(task)),
    }
}

/// A certificate authority made for one test, and where its certificate is written.
pub struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pub pem_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ca {
    pub fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "botfleet test CA");
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, cert.pem()).unwrap();
        Ca {
            cert,
            key,
            pem_path,
            _dir: dir,
        }
    }

    /// Serves the site over HTTPS for `localhost`, with a certificate that expires in
    /// `days_left` days (negative: expired that long ago).
    pub async fn https(&self, days_left: i64) -> Site {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days_left);
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let chain = vec![leaf.der().clone(), self.cert.der().clone()];
        let private = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(config);
        let controls = Arc::new(Controls::default());
        let task = serve(listener, Some(config.clone()), controls.clone());
        Site {
            base: format!("https://localhost:{}", addr.port()),
            controls,
            addr,
            tls: Some(config),
            task: std::sync::Mutex::new(Some(task)),
        }
    }
}

struct TlsListener {
    inner: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                continue;
            };
            // A client that gives up on the certificate is not the server's problem.
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A port with nothing listening on it.
pub fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
