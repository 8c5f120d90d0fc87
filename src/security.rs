//! What each process keeps for oracle and its fixes: the blocked and rate-limited addresses
//! (read from the database every few seconds, so every replica enforces them), and requests
//! per address per minute (flushed to the database, so oracle sees all replicas' traffic).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};

use crate::store::{BlockRow, Store};

/// How stale the block list may get before a request reads it again.
const REFRESH: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub enum Restriction {
    Blocked {
        until: DateTime<Utc>,
        reason: String,
    },
    RateLimited {
        per_minute: i64,
        until: DateTime<Utc>,
    },
}

/// The block list as this process last read it. The common case — list fresh and empty — costs
/// two atomic loads.
pub struct Blocks {
    entries: RwLock<HashMap<IpAddr, BlockRow>>,
    any: AtomicBool,
    epoch: Instant,
    /// Milliseconds after `epoch` when the list was read, plus one; 0 = never.
    loaded_ms: AtomicU64,
    refreshing: tokio::sync::Mutex<()>,
}

impl Default for Blocks {
    fn default() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            any: AtomicBool::new(false),
            epoch: Instant::now(),
            loaded_ms: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }
}

impl Blocks {
    /// The restriction on `ip` at `now`, reading the list again when it is stale. A database
    /// that cannot be read keeps the last list in force.
    pub async fn check(
        &self,
        store: &dyn Store,
        ip: IpAddr,
        now: DateTime<Utc>,
    ) -> Option<Restriction> {
        let loaded = self.loaded_ms.load(Ordering::Acquire);
        let age = (self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(loaded);
        if loaded == 0 || age >= REFRESH.as_millis() as u64 {
            if let Ok(_guard) = self.refreshing.try_lock() {
                match store.list_blocks(now).await {
                    Ok(rows) => {
                        let map: HashMap<IpAddr, BlockRow> = rows
                            .into_iter()
                            .filter_map(|b| {
                                b.address
                                    .parse::<IpAddr>()
                                    .ok()
                                    .map(|ip| (crate::net::canonical(ip), b))
                            })
                            .collect();
                        self.any.store(!map.is_empty(), Ordering::Release);
                        *self.entries.write().unwrap() = map;
                        self.loaded_ms.store(
                            self.epoch.elapsed().as_millis() as u64 + 1,
                            Ordering::Release,
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the block list could not be read; keeping the last one")
                    }
                }
            }
        }
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().unwrap();
        let b = entries.get(&ip)?;
        if b.expires_at <= now {
            return None;
        }
        Some(match b.kind.as_str() {
            "rate_limit" => Restriction::RateLimited {
                per_minute: b.requests_per_minute.unwrap_or(60),
                until: b.expires_at,
            },
            _ => Restriction::Blocked {
                until: b.expires_at,
                reason: b.reason.clone(),
            },
        })
    }

    /// Read the list again on the next request (after a local change).
    pub fn invalidate(&self) {
        self.loaded_ms.store(0, Ordering::Release);
    }
}

#[derive(Default)]
struct Count {
    requests: u64,
    flushed: u64,
}

/// Requests per address per minute, in this process.
#[derive(Default)]
pub struct AddressCounts {
    minutes: Mutex<HashMap<(IpAddr, i64), Count, crate::process::FastHash>>,
}

pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(t)
}

impl AddressCounts {
    /// Counts a request; returns how many `ip` made this minute, this one included.
    pub fn record(&self, ip: IpAddr, now: DateTime<Utc>) -> u64 {
        let minute = minute_of(now).timestamp();
        let mut m = self.minutes.lock().unwrap();
        let c = m.entry((ip, minute)).or_default();
        c.requests += 1;
        c.requests
    }

    /// What has not been written to the database yet; counts of minutes before the previous
    /// one are then forgotten here.
    pub fn take_unflushed(&self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>, i64)> {
        let current = minute_of(now).timestamp();
        let mut m = self.minutes.lock().unwrap();
        let mut out = Vec::new();
        for ((ip, minute), c) in m.iter_mut() {
            if c.requests > c.flushed {
                let at = DateTime::from_timestamp(*minute, 0).unwrap_or(now);
                out.push((ip.to_string(), at, (c.requests - c.flushed) as i64));
                c.flushed = c.requests;
            }
        }
        m.retain(|(_, minute), _| *minute >= current - 60);
        out
    }

    /// Puts back counts a failed flush could not write.
    pub fn give_back(&self, counts: &[(String, DateTime<Utc>, i64)]) {
        let mut m = self.minutes.lock().unwrap();
        for (ip, at, n) in counts {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                if let Some(c) = m.get_mut(&(ip, at.timestamp())) {
                    c.flushed = c.flushed.saturating_sub(*n as u64);
                }
            }
        }
    }
}

/// Writes this process's request counts to the database.
pub async fn flush_counts(
    counts: &AddressCounts,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<usize, crate::store::StoreError> {
    let batch = counts.take_unflushed(now);
    if let Err(e) = store.add_address_requests(&batch).await {
        counts.give_back(&batch);
        return Err(e);
    }
    Ok(batch.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_flush_once_and_old_minutes_go() {
        let c = AddressCounts::default();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let now = Utc::now();
        for _ in 0..5 {
            c.record(ip, now);
        }
        assert_eq!(c.record(ip, now), 6);
        let first = c.take_unflushed(now);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].2, 6);
        c.record(ip, now);
        assert_eq!(c.take_unflushed(now)[0].2, 1, "only what is new");
        c.give_back(&[(ip.to_string(), minute_of(now), 1)]);
        assert_eq!(c.take_unflushed(now)[0].2, 1, "given back, sent again");
        assert!(c
            .take_unflushed(now + chrono::Duration::minutes(5))
            .is_empty());
        assert_eq!(
            c.record(ip, now + chrono::Duration::minutes(5)),
            1,
            "a new minute"
        );
    }
}
