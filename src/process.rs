//! State that belongs to this process rather than the database: botfleet's own request
//! counters (which pulse reads), the load-shedding switch, droppable caches, and a generation
//! counter that tells cached views (health) that something changed.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Cumulative counts since the process started; readers take differences.
#[derive(Default)]
pub struct RequestStats {
    total: AtomicU64,
    server_errors: AtomicU64,
    shed: AtomicU64,
    /// Requests counted in the latency mean (long-running trigger and event routes are not).
    timed: AtomicU64,
    timed_latency_us: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestSnapshot {
    pub total: u64,
    pub server_errors: u64,
    pub shed: u64,
    pub timed: u64,
    pub timed_latency_us: u64,
}

impl RequestSnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestSnapshot) -> RequestSnapshot {
        RequestSnapshot {
            total: self.total.saturating_sub(earlier.total),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            shed: self.shed.saturating_sub(earlier.shed),
            timed: self.timed.saturating_sub(earlier.timed),
            timed_latency_us: self
                .timed_latency_us
                .saturating_sub(earlier.timed_latency_us),
        }
    }
}

impl RequestStats {
    /// `shed` responses are deliberate 503s: counted apart, not as errors.
    pub fn record(&self, status: u16, latency: Duration, timed: bool, shed: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if shed {
            self.shed.fetch_add(1, Ordering::Relaxed);
        } else if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        if timed {
            self.timed.fetch_add(1, Ordering::Relaxed);
            self.timed_latency_us
                .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> RequestSnapshot {
        RequestSnapshot {
            total: self.total.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            timed: self.timed.load(Ordering::Relaxed),
            timed_latency_us: self.timed_latency_us.load(Ordering::Relaxed),
        }
    }
}

/// The load-shedding switch: while on, non-essential routes answer 503 + `Retry-After`.
#[derive(Default)]
pub struct Shed {
    /// Unix microseconds until which load is shed; 0 when off.
    until_us: AtomicI64,
    reason: Mutex<Option<String>>,
}

impl Shed {
    pub fn activate(&self, until: DateTime<Utc>, reason: &str) {
        self.until_us
            .store(until.timestamp_micros(), Ordering::Relaxed);
        *self.reason.lock().unwrap() = Some(reason.to_string());
        tracing::warn!(until = %until, reason, "shedding load");
    }

    pub fn lift(&self) {
        self.until_us.store(0, Ordering::Relaxed);
        *self.reason.lock().unwrap() = None;
    }

    /// Seconds of shedding left at `now`, if any.
    pub fn remaining(&self, now: DateTime<Utc>) -> Option<u64> {
        let until = self.until_us.load(Ordering::Relaxed);
        let left = until - now.timestamp_micros();
        (until > 0 && left > 0).then(|| (left as u64).div_ceil(1_000_000))
    }

    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap().clone()
    }
}

/// FNV-1a: a fast hash for the small maps on the request path. Their keys are route templates
/// and addresses that completed a TCP handshake, which a caller cannot cheaply choose to collide.
#[derive(Default, Clone, Copy)]
pub struct FastHash;

pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl std::hash::BuildHasher for FastHash {
    type Hasher = Fnv;

    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

/// A cache that can be emptied to give memory back.
pub trait DropCache: Send + Sync {
    fn name(&self) -> &'static str;
    fn drop_cache(&self);
}

#[derive(Default)]
pub struct Process {
    pub requests: RequestStats,
    pub shed: Shed,
    /// Blocked and rate-limited addresses, as last read from the database.
    pub blocks: crate::security::Blocks,
    /// Requests per address per minute, until flushed to the database.
    pub addresses: crate::security::AddressCounts,
    caches: Mutex<Vec<Arc<dyn DropCache>>>,
    generation: AtomicU64,
}

impl Process {
    pub fn register_cache(&self, cache: Arc<dyn DropCache>) {
        self.caches.lock().unwrap().push(cache);
    }

    /// Empties every registered cache; returns their names.
    pub fn drop_caches(&self) -> Vec<&'static str> {
        let caches = self.caches.lock().unwrap().clone();
        caches
            .iter()
            .map(|c| {
                c.drop_cache();
                c.name()
            })
            .collect()
    }

    /// Something that views derive from changed (a pass finished, an admin edit).
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_counts_down_in_whole_seconds() {
        let shed = Shed::default();
        let now = Utc::now();
        assert_eq!(shed.remaining(now), None);
        shed.activate(
            now + chrono::Duration::milliseconds(1500),
            "load: High CPU usage",
        );
        assert_eq!(shed.remaining(now), Some(2));
        assert_eq!(shed.remaining(now + chrono::Duration::seconds(2)), None);
        shed.activate(now + chrono::Duration::seconds(60), "x");
        shed.lift();
        assert_eq!(shed.remaining(now), None);
    }

    #[test]
    fn shed_responses_are_not_errors() {
        let stats = RequestStats::default();
        stats.record(200, Duration::from_millis(10), true, false);
        stats.record(503, Duration::from_millis(1), true, true);
        stats.record(500, Duration::from_millis(30), true, false);
        let s = stats.snapshot();
        assert_eq!((s.total, s.server_errors, s.shed, s.timed), (3, 1, 1, 3));
        assert_eq!(s.timed_latency_us, 41_000);
    }
}
