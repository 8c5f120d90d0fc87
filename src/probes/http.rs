//! One HTTP exchange, the way an uptime prober needs it: its own timeout; each phase timed
//! (DNS, connect, TLS, first byte, total); redirects followed by hand up to a limit, the chain
//! kept, a loop named as one; a body read of at most `body_limit` bytes; and a failure told
//! apart — DNS, refused, TLS, timeout — with the phase it happened in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use serde::Serialize;
use tokio::net::TcpStream;

use super::tls::TlsInfo;
use super::{DnsCache, Prober};

pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
    pub timeout: Duration,
    /// Redirects followed before giving up; 0 reports the redirect itself.
    pub max_redirects: u32,
    pub body_limit: usize,
}

impl Request {
    pub fn get(url: Url, timeout: Duration) -> Request {
        Request {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: None,
            timeout,
            max_redirects: 5,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub dns_ms: Option<f64>,
    pub connect_ms: Option<f64>,
    pub tls_ms: Option<f64>,
    /// From sending the request to the response head (time to first byte).
    pub first_byte_ms: Option<f64>,
    /// The whole exchange, every redirect included.
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub url: String,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub final_url: Url,
    pub redirects: Vec<Hop>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was longer than the limit; `body` holds its start.
    pub body_truncated: bool,
    pub timings: Timings,
    pub tls: Option<TlsInfo>,
}

impl Response {
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    BadUrl,
    Dns,
    Refused,
    Connect,
    Tls,
    Timeout,
    Protocol,
    TooManyRedirects,
    RedirectLoop,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadUrl => "bad_url",
            ErrorKind::Dns => "dns",
            ErrorKind::Refused => "refused",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::TooManyRedirects => "too_many_redirects",
            ErrorKind::RedirectLoop => "redirect_loop",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProbeError {
    pub kind: ErrorKind,
    pub message: String,
    pub timings: Timings,
    pub redirects: Vec<Hop>,
    pub tls: Option<TlsInfo>,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Outcome = Result<Response, ProbeError>;

/// The certificate seen, whether the exchange then succeeded or not.
pub fn outcome_tls(outcome: &Outcome) -> Option<&TlsInfo> {
    match outcome {
        Ok(r) => r.tls.as_ref(),
        Err(e) => e.tls.as_ref(),
    }
}

/// Where an exchange is, so a timeout can say where it struck.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Phase {
    Dns,
    Connect,
    Tls,
    Request,
    Body,
}

fn phase_name(p: u8) -> &'static str {
    match p {
        0 => "resolving the host",
        1 => "connecting",
        2 => "the TLS handshake",
        3 => "waiting for the response",
        _ => "reading the body",
    }
}

/// State an exchange shares with its caller, readable after a timeout dropped it.
#[derive(Default)]
struct Progress {
    phase: AtomicU8,
    timings: Mutex<Timings>,
    redirects: Mutex<Vec<Hop>>,
    tls: Mutex<Option<TlsInfo>>,
}

impl Progress {
    fn at(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    fn fail(&self, kind: ErrorKind, message: String, started: Instant) -> ProbeError {
        let mut timings = self.timings.lock().unwrap().clone();
        timings.total_ms = ms(started.elapsed());
        ProbeError {
            kind,
            message,
            timings,
            redirects: self.redirects.lock().unwrap().clone(),
            tls: self.tls.lock().unwrap().clone(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

impl Prober {
    /// Runs one exchange (following redirects) under `req.timeout`.
    pub async fn fetch(&self, req: &Request, dns: &DnsCache) -> Outcome {
        let started = Instant::now();
        let progress = Arc::new(Progress::default());
        match tokio::time::timeout(req.timeout, self.exchange(req, dns, &progress, started)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let phase = phase_name(progress.phase.load(Ordering::Relaxed));
                Err(progress.fail(
                    ErrorKind::Timeout,
                    format!(
                        "no answer within {} ms (timed out while {phase})",
                        req.timeout.as_millis()
                    ),
                    started,
                ))
            }
        }
    }

    async fn exchange(
        &self,
        req: &Request,
        dns: &DnsCache,
        progress: &Arc<Progress>,
        started: Instant,
    ) -> Outcome {
        let mut url = req.url.clone();
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut visited = vec![url.to_string()];
        loop {
            let hop = self
                .hop(
                    &method,
                    &url,
                    &req.headers,
                    body.clone(),
                    req.body_limit,
                    dns,
                    progress,
                    started,
                )
                .await?;
            let location = hop
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let is_redirect =
                matches!(hop.status, 301 | 302 | 303 | 307 | 308) && location.is_some();
            if !is_redirect || req.max_redirects == 0 {
                let mut timings = progress.timings.lock().unwrap().clone();
                timings.total_ms = ms(started.elapsed());
                return Ok(Response {
                    status: hop.status,
                    final_url: url,
                    redirects: progress.redirects.lock().unwrap().clone(),
                    headers: hop.headers,
                    body: hop.body,
                    body_truncated: hop.truncated,
                    timings,
                    tls: hop.tls,
                });
            }
            progress.redirects.lock().unwrap().push(Hop {
                url: url.to_string(),
                status: hop.status,
            });
            let next = url
                .join(location.as_deref().unwrap_or_default())
                .map_err(|e| {
                    progress.fail(
                        ErrorKind::Protocol,
                        format!("redirect to an invalid location {location:?}: {e}"),
                        started,
                    )
                })?;
            if visited.contains(&next.to_string()) {
                return Err(progress.fail(
                    ErrorKind::RedirectLoop,
                    format!("redirect loop: {} leads back to {next}", url),
                    started,
                ));
            }
            if progress.redirects.lock().unwrap().len() > req.max_redirects as usize {
                return Err(progress.fail(
                    ErrorKind::TooManyRedirects,
                    format!("more than {} redirects, last to {next}", req.max_redirects),
                    started,
                ));
            }
            // Browsers' rules: 303 becomes GET; 301/302 turn a POST into a GET.
            if hop.status == 303 || (matches!(hop.status, 301 | 302) && method == Method::POST) {
                method = Method::GET;
                body = None;
            }
            visited.push(next.to_string());
            url = next;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn hop(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<Bytes>,
        body_limit: usize,
        dns: &DnsCache,
        progress: &Arc<Progress>,
        started: Instant,
    ) -> Result<HopResult, ProbeError> {
        let fail = |kind, message| progress.fail(kind, message, started);
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(fail(
                    ErrorKind::BadUrl,
                    format!("the scheme {other:?} is not http or https"),
                ))
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| fail(ErrorKind::BadUrl, format!("{url} has no host")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });

        progress.at(Phase::Dns);
        let t = Instant::now();
        let addrs = dns
            .resolve(&host, port)
            .await
            .map_err(|e| fail(ErrorKind::Dns, format!("cannot resolve {host}: {e}")))?;
        progress.timings.lock().unwrap().dns_ms = Some(ms(t.elapsed()));

        progress.at(Phase::Connect);
        let t = Instant::now();
        let stream = connect(&addrs).await.map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                ErrorKind::Refused
            } else {
                ErrorKind::Connect
            };
            let what = if kind == ErrorKind::Refused {
                "connection refused"
            } else {
                "cannot connect"
            };
            fail(kind, format!("{what}: {host}:{port} ({e})"))
        })?;
        let _ = stream.set_nodelay(true);
        progress.timings.lock().unwrap().connect_ms = Some(ms(t.elapsed()));

        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(url[url::Position::BeforePath..url::Position::AfterQuery].to_string());
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        request = request
            .header(header::HOST, authority)
            .header(
                header::USER_AGENT,
                concat!("botfleet/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT, "*/*")
            .header(header::CONNECTION, "close");
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| fail(ErrorKind::BadUrl, format!("cannot build the request: {e}")))?;

        let (status, head_headers, incoming, tls) = if https {
            progress.at(Phase::Tls);
            let t = Instant::now();
            let (config, seen) = self.tls.for_connection();
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                fail(
                    ErrorKind::BadUrl,
                    format!("{host} is not a valid TLS server name: {e}"),
                )
            })?;
            let handshake = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await;
            let chain = seen.lock().unwrap().clone();
            let tls = (!chain.is_empty()).then(|| TlsInfo::from_chain(&chain, handshake.is_ok()));
            *progress.tls.lock().unwrap() = tls.clone();
            let stream = handshake.map_err(|e| {
                fail(
                    ErrorKind::Tls,
                    format!("TLS handshake with {host} failed: {e}"),
                )
            })?;
            progress.timings.lock().unwrap().tls_ms = Some(ms(t.elapsed()));
            let (status, h, incoming) =
                send(TokioIo::new(stream), request, progress, started).await?;
            (status, h, incoming, tls)
        } else {
            let (status, h, incoming) =
                send(TokioIo::new(stream), request, progress, started).await?;
            (status, h, incoming, None)
        };

        progress.at(Phase::Body);
        let (body, truncated) = if method == Method::HEAD {
            (Bytes::new(), false)
        } else {
            read_limited(incoming, body_limit)
                .await
                .map_err(|e| fail(ErrorKind::Protocol, format!("reading the body failed: {e}")))?
        };
        Ok(HopResult {
            status,
            headers: head_headers,
            body,
            truncated,
            tls,
        })
    }
}

struct HopResult {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    truncated: bool,
    tls: Option<TlsInfo>,
}

async fn connect(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn send<T>(
    io: TokioIo<T>,
    request: hyper::Request<Full<Bytes>>,
    progress: &Arc<Progress>,
    started: Instant,
) -> Result<(u16, HeaderMap, hyper::body::Incoming), ProbeError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let fail = |message: String| progress.fail(ErrorKind::Protocol, message, started);
    progress.at(Phase::Request);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| fail(format!("HTTP handshake failed: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let t = Instant::now();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(format!("the server did not answer the request: {e}")))?;
    progress.timings.lock().unwrap().first_byte_ms = Some(ms(t.elapsed()));
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    Ok((status, parts.headers, body))
}

/// At most `limit` bytes of the body; the rest is not read.
async fn read_limited(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<(Bytes, bool), hyper::Error> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = limit.saturating_sub(buf.len());
            if data.len() > room {
                buf.extend_from_slice(&data[..room]);
                return Ok((buf.freeze(), true));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((buf.freeze(), false))
}
