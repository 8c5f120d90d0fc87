//! Shared checks for the bots that probe things over HTTP: one request with its own timeout,
//! timings, redirects, TLS certificate dates (`http.rs`, `tls.rs`); what to assert about the
//! answer (`checks.rs`); and running many probes at once under a global and a per-host limit.

pub mod checks;
pub mod http;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

pub use http::{outcome_tls, ErrorKind, Hop, Outcome, ProbeError, Request, Response, Timings};
pub use tls::TlsInfo;

/// Makes probe requests; built once, shared by every pass.
pub struct Prober {
    tls: tls::Tls,
}

impl Prober {
    /// `extra_ca`: more trusted roots (`PROBE_CA_FILE`), for sites behind a private CA.
    pub fn new(extra_ca: Option<&std::path::Path>) -> Result<Prober, String> {
        Ok(Prober {
            tls: tls::Tls::new(extra_ca)?,
        })
    }
}

/// One name's lookup, done once and shared by everyone who asks.
type Lookup = Arc<tokio::sync::OnceCell<Result<Vec<SocketAddr>, String>>>;

/// Host lookups for one pass: each name is resolved once, failures included.
#[derive(Default)]
pub struct DnsCache {
    entries: Mutex<HashMap<(String, u16), Lookup>>,
}

impl DnsCache {
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let cell = self
            .entries
            .lock()
            .unwrap()
            .entry((host.to_string(), port))
            .or_default()
            .clone();
        cell.get_or_init(|| async move {
            match tokio::net::lookup_host((host, port)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if addrs.is_empty() {
                        Err("the name has no addresses".to_string())
                    } else {
                        Ok(addrs)
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .clone()
    }
}

/// How many probes run at once, overall and against one host.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub concurrency: usize,
    pub per_host: usize,
}

/// Runs `work` for every item, at most `limits.concurrency` at a time and at most
/// `limits.per_host` against one host (`host_of`). Results come back in item order. A slow
/// item holds its places only as long as its own timeout.
pub async fn run_all<'a, T, R, F, Fut>(
    items: &'a [T],
    limits: Limits,
    host_of: impl Fn(&T) -> String,
    work: F,
) -> Vec<R>
where
    F: Fn(&'a T) -> Fut,
    Fut: Future<Output = R>,
{
    let global = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let mut hosts: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let work = &work;
    let jobs = items.iter().map(|item| {
        let host = hosts
            .entry(host_of(item))
            .or_insert_with(|| Arc::new(Semaphore::new(limits.per_host.max(1))))
            .clone();
        let global = global.clone();
        async move {
            let _h = host.acquire_owned().await.expect("never closed");
            let _g = global.acquire_owned().await.expect("never closed");
            // Made (and boxed) only once it may run: a thousand waiting items stay small.
            Box::pin(work(item)).await
        }
    });
    let jobs: Vec<_> = jobs.collect();
    futures_util::future::join_all(jobs).await
}

/// `scheme://host:port` of a URL, the key for per-host limits.
pub fn host_key(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "{}://{}:{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(0)
            )
        })
        .unwrap_or_else(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn limits_hold_overall_and_per_host() {
        let items: Vec<usize> = (0..40).collect();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let per_host = Arc::new(Mutex::new(HashMap::<usize, usize>::new()));
        let peak_host = Arc::new(AtomicUsize::new(0));
        let out = run_all(
            &items,
            Limits {
                concurrency: 8,
                per_host: 3,
            },
            |i| format!("host{}", i % 4),
            |i| {
                let (running, peak, per_host, peak_host) = (
                    running.clone(),
                    peak.clone(),
                    per_host.clone(),
                    peak_host.clone(),
                );
                let i = *i;
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let h = {
                        let mut m = per_host.lock().unwrap();
                        let e = m.entry(i % 4).or_default();
                        *e += 1;
                        *e
                    };
                    peak_host.fetch_max(h, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    *per_host.lock().unwrap().get_mut(&(i % 4)).unwrap() -= 1;
                    running.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                }
            },
        )
        .await;
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 8);
        assert!(peak_host.load(Ordering::SeqCst) <= 3);
        assert!(
            peak.load(Ordering::SeqCst) >= 4,
            "it did run things at once"
        );
    }
}
