//! Time, behind a trait so tests can move it (circuit cool-downs, lease expiry, overdue bots).
//! Every timestamp botfleet writes comes from here, truncated to microseconds so SQLite and
//! PostgreSQL hold the same value.

use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate(Utc::now())
    }
}

/// A clock that only moves when told to; for tests.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(truncate(start)))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap() = truncate(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Real time, started at a chosen moment and jumped forward on demand: timestamps move as a
/// test runs (so overlaps can be checked) and a test can skip a minute (circuit cool-downs,
/// lease expiry, overdue bots) without waiting for it.
pub struct TestClock {
    start: DateTime<Utc>,
    anchor: std::time::Instant,
    jumped: Mutex<Duration>,
}

impl TestClock {
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            start,
            anchor: std::time::Instant::now(),
            jumped: Mutex::new(Duration::zero()),
        }
    }

    pub fn jump(&self, by: Duration) {
        *self.jumped.lock().unwrap() += by;
    }

    /// Jumps to `at` (forward only), whatever time the test has already spent.
    pub fn jump_to(&self, at: DateTime<Utc>) {
        let by = at - self.now();
        assert!(by >= Duration::zero(), "the clock is already past {at}");
        self.jump(by);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let real = Duration::from_std(self.anchor.elapsed()).unwrap_or_default();
        truncate(self.start + real + *self.jumped.lock().unwrap())
    }
}

/// Drops sub-microsecond precision (PostgreSQL keeps microseconds).
pub fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}
