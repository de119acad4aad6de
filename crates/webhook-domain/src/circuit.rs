//! A per-target circuit breaker as a pure state machine: after enough consecutive failures the
//! target is left alone for a while, then one probe decides whether it is back. Which attempt
//! outcomes are failures of the target is decided here too.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{AttemptOutcome, add_saturating};

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the circuit (at least 1).
    pub failure_threshold: u32,
    /// How long an open circuit refuses attempts before allowing one probe.
    pub open_for: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts flow; `consecutive_failures` counts towards the threshold.
    Closed { consecutive_failures: u32 },
    /// No attempts until `until`.
    Open { until: OffsetDateTime },
    /// One probe is allowed; `probing` says whether it is under way.
    HalfOpen { probing: bool },
}

/// One target's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    config: CircuitBreakerConfig,
    state: CircuitState,
}

impl CircuitBreaker {
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            state: CircuitState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// Asks whether an attempt may start at `now`. An open circuit whose time is up turns
    /// half-open and lets exactly one probe through.
    pub fn try_acquire(&self, now: OffsetDateTime) -> (CircuitBreaker, bool) {
        match self.state {
            CircuitState::Closed { .. } => (*self, true),
            CircuitState::Open { until } if now < until => (*self, false),
            CircuitState::Open { .. } | CircuitState::HalfOpen { probing: false } => (
                CircuitBreaker {
                    state: CircuitState::HalfOpen { probing: true },
                    ..*self
                },
                true,
            ),
            CircuitState::HalfOpen { probing: true } => (*self, false),
        }
    }

    /// Records the outcome of an attempt that was allowed, at `now`: a failure when it
    /// [counts against the target](AttemptOutcome::counts_against_target), a success
    /// otherwise.
    pub fn on_attempt(&self, outcome: &AttemptOutcome, now: OffsetDateTime) -> CircuitBreaker {
        self.on_result(!outcome.counts_against_target(), now)
    }

    /// Records the result of an attempt that was allowed.
    pub fn on_result(&self, success: bool, now: OffsetDateTime) -> CircuitBreaker {
        let state = match (self.state, success) {
            (_, true) => CircuitState::Closed {
                consecutive_failures: 0,
            },
            (
                CircuitState::Closed {
                    consecutive_failures,
                },
                false,
            ) if consecutive_failures + 1 < self.config.failure_threshold.max(1) => {
                CircuitState::Closed {
                    consecutive_failures: consecutive_failures + 1,
                }
            }
            (_, false) => CircuitState::Open {
                until: add_saturating(now, self.config.open_for),
            },
        };
        CircuitBreaker { state, ..*self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttemptDetail;
    use time::macros::datetime;

    /// The rule as HTTP answers and failures on the way meet it.
    fn counts_against_target(detail: &AttemptDetail) -> bool {
        detail.outcome().counts_against_target()
    }

    fn response(status: u16) -> AttemptDetail {
        AttemptDetail::Response {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn client_errors_do_not_open_the_circuit_but_server_errors_do() {
        assert!(!counts_against_target(&response(404)));
        assert!(counts_against_target(&response(503)));
        assert!(counts_against_target(&response(429)));
        assert!(counts_against_target(&AttemptDetail::Timeout));
    }

    #[test]
    fn which_outcomes_count_against_the_target() {
        fn check(outcome: AttemptDetail, counts: bool) {
            assert_eq!(counts_against_target(&outcome), counts, "{outcome:?}");
        }
        for status in [200, 204, 301, 400, 401, 404, 410, 413, 428, 430, 499] {
            check(response(status), false);
        }
        for status in [429, 500, 502, 503, 504, 599] {
            check(response(status), true);
        }
        // Retry-After does not change the verdict.
        check(
            AttemptDetail::Response {
                status: 429,
                retry_after: Some(Duration::from_secs(5)),
            },
            true,
        );
        check(AttemptDetail::Timeout, true);
        check(AttemptDetail::ConnectionFailed, true);
        check(AttemptDetail::TlsFailed, true);
        check(AttemptDetail::ResponseTooLarge, true);
        check(AttemptDetail::AddressRefused, false);
        check(AttemptDetail::Accepted, false);
        check(AttemptDetail::Declined, false);
    }

    #[test]
    fn on_attempt_counts_failures_at_the_time_given_and_a_healthy_answer_resets_them() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let config = CircuitBreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(10),
        };
        let once = CircuitBreaker::new(config).on_attempt(&response(503).outcome(), t0);
        assert_eq!(
            once.state(),
            CircuitState::Closed {
                consecutive_failures: 1
            }
        );
        for healthy in [response(404), AttemptDetail::AddressRefused] {
            assert_eq!(
                once.on_attempt(&healthy.outcome(), t0).state(),
                CircuitState::Closed {
                    consecutive_failures: 0
                },
                "{healthy:?}"
            );
        }
        let later = t0 + time::Duration::seconds(3);
        assert_eq!(
            once.on_attempt(&AttemptDetail::Timeout.outcome(), later)
                .state(),
            CircuitState::Open {
                until: later + time::Duration::seconds(10)
            }
        );
    }

    #[test]
    fn opens_after_threshold_probes_once_then_closes_on_success() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let config = CircuitBreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        };
        let mut b = CircuitBreaker::new(config);
        for _ in 0..2 {
            b = b.on_result(false, t0);
            assert!(matches!(b.state(), CircuitState::Closed { .. }));
        }
        b = b.on_result(false, t0);
        assert_eq!(
            b.state(),
            CircuitState::Open {
                until: t0 + time::Duration::seconds(10)
            }
        );
        assert!(!b.try_acquire(t0 + time::Duration::seconds(9)).1);
        let (probing, allowed) = b.try_acquire(t0 + time::Duration::seconds(10));
        assert!(allowed);
        assert!(
            !probing.try_acquire(t0 + time::Duration::seconds(10)).1,
            "one probe at a time"
        );
        let closed = probing.on_result(true, t0);
        assert_eq!(
            closed.state(),
            CircuitState::Closed {
                consecutive_failures: 0
            }
        );
        let reopened = probing.on_result(false, t0 + time::Duration::seconds(11));
        assert!(matches!(reopened.state(), CircuitState::Open { .. }));
    }
}
