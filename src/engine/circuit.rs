//! The circuit breaker, from the architecture document: after `threshold` consecutive failed
//! passes (the bot erred or timed out — not findings) the circuit opens for `open_secs`; then one
//! trial pass (half-open) decides. The state lives in the `bots` row, so replicas agree.

use chrono::{DateTime, Duration, Utc};

use crate::store::{CircuitState, CircuitUpdate, ExecStatus};

pub fn after_pass(
    consecutive_failures: i64,
    trial: bool,
    status: ExecStatus,
    now: DateTime<Utc>,
    threshold: u32,
    open_secs: u64,
) -> CircuitUpdate {
    if status == ExecStatus::Success {
        return CircuitUpdate {
            state: CircuitState::Closed,
            consecutive_failures: 0,
            open_until: None,
        };
    }
    let failures = consecutive_failures + 1;
    if trial || failures >= threshold as i64 {
        CircuitUpdate {
            state: CircuitState::Open,
            consecutive_failures: failures,
            open_until: Some(now + Duration::seconds(open_secs as i64)),
        }
    } else {
        CircuitUpdate {
            state: CircuitState::Closed,
            consecutive_failures: failures,
            open_until: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_the_fifth_failure_and_a_failed_trial_reopens() {
        let now = Utc::now();
        let mut failures = 0;
        for i in 1..=5 {
            let u = after_pass(failures, false, ExecStatus::Failed, now, 5, 60);
            failures = u.consecutive_failures;
            assert_eq!(u.state == CircuitState::Open, i == 5, "after {i}");
        }
        let u = after_pass(failures, true, ExecStatus::Timeout, now, 5, 60);
        assert_eq!(u.state, CircuitState::Open);
        assert_eq!(u.open_until, Some(now + Duration::seconds(60)));
        let u = after_pass(failures, true, ExecStatus::Success, now, 5, 60);
        assert_eq!((u.state, u.consecutive_failures), (CircuitState::Closed, 0));
    }
}
