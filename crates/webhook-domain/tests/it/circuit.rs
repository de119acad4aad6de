//! The circuit breaker: closed counts failures, open refuses until its time is up, half-open
//! lets exactly one probe through, and a success closes it.

use std::time::Duration;

use proptest::prelude::*;
use time::OffsetDateTime;
use webhook_domain::{CircuitBreaker, CircuitBreakerConfig, CircuitState};

use crate::fixtures::{NOW, secs};

const CONFIG: CircuitBreakerConfig = CircuitBreakerConfig {
    failure_threshold: 3,
    open_for: Duration::from_secs(10),
};

fn closed(failures: u32) -> CircuitBreaker {
    (0..failures).fold(CircuitBreaker::new(CONFIG), |b, _| b.on_result(false, NOW))
}

/// Open from `NOW` until `NOW + 10 s`.
fn open() -> CircuitBreaker {
    closed(3)
}

/// Half-open with its one probe under way.
fn probing() -> CircuitBreaker {
    let (b, allowed) = open().try_acquire(NOW + secs(10));
    assert!(allowed);
    b
}

#[test]
fn default_config() {
    let config = CircuitBreakerConfig::default();
    assert_eq!(config.failure_threshold, 5);
    assert_eq!(config.open_for, Duration::from_secs(30));
}

#[test]
fn try_acquire() {
    let until = NOW + secs(10);
    let open_state = CircuitState::Open { until };
    let half_open = CircuitState::HalfOpen { probing: true };
    let closed_state = |n| CircuitState::Closed {
        consecutive_failures: n,
    };
    let rows: Vec<(&str, CircuitBreaker, OffsetDateTime, bool, CircuitState)> = vec![
        ("closed", closed(0), NOW, true, closed_state(0)),
        (
            "closed after 2 failures",
            closed(2),
            NOW,
            true,
            closed_state(2),
        ),
        ("open, at the start", open(), NOW, false, open_state),
        (
            "open, 1 s before until",
            open(),
            until - secs(1),
            false,
            open_state,
        ),
        (
            "open, 1 ns before until",
            open(),
            until - time::Duration::nanoseconds(1),
            false,
            open_state,
        ),
        (
            "open, before it opened",
            open(),
            NOW - secs(60),
            false,
            open_state,
        ),
        ("open, at until", open(), until, true, half_open),
        (
            "open, long after until",
            open(),
            until + secs(3600),
            true,
            half_open,
        ),
        ("probing", probing(), until, false, half_open),
        (
            "probing, much later",
            probing(),
            until + secs(86_400),
            false,
            half_open,
        ),
    ];
    for (name, breaker, now, allowed, state) in rows {
        let (after, got) = breaker.try_acquire(now);
        assert_eq!((got, after.state()), (allowed, state), "{name}");
    }
}

#[test]
fn on_result() {
    let later = NOW + secs(100);
    let reopened = CircuitState::Open {
        until: later + secs(10),
    };
    let closed_state = |n| CircuitState::Closed {
        consecutive_failures: n,
    };
    let rows: Vec<(&str, CircuitBreaker, bool, CircuitState)> = vec![
        ("closed, success", closed(2), true, closed_state(0)),
        ("closed, 1st failure", closed(0), false, closed_state(1)),
        ("closed, 2nd failure", closed(1), false, closed_state(2)),
        ("closed, 3rd failure opens", closed(2), false, reopened),
        ("probe succeeds: closed", probing(), true, closed_state(0)),
        ("probe fails: open again", probing(), false, reopened),
        // Results of attempts that started before the circuit opened.
        ("open, late success closes", open(), true, closed_state(0)),
        (
            "open, late failure restarts the wait",
            open(),
            false,
            reopened,
        ),
    ];
    for (name, breaker, success, state) in rows {
        assert_eq!(breaker.on_result(success, later).state(), state, "{name}");
    }
}

#[test]
fn a_threshold_of_zero_acts_as_one() {
    let b = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 0,
        open_for: Duration::from_secs(1),
    });
    assert_eq!(
        b.on_result(false, NOW).state(),
        CircuitState::Open {
            until: NOW + secs(1)
        }
    );
}

#[derive(Debug, Clone)]
enum Op {
    /// After `after_ms`, ask to start an attempt.
    Acquire { after_ms: u32 },
    /// After `after_ms`, the oldest attempt still running ends.
    Finish { after_ms: u32, success: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..=20_000u32).prop_map(|after_ms| Op::Acquire { after_ms }),
        (0..=20_000u32, any::<bool>())
            .prop_map(|(after_ms, success)| Op::Finish { after_ms, success }),
    ]
}

proptest! {
    #[test]
    fn breaker_invariants(
        threshold in 1..=5u32,
        open_secs in 1..=30u64,
        ops in prop::collection::vec(op(), 1..=80),
    ) {
        let config = CircuitBreakerConfig {
            failure_threshold: threshold,
            open_for: Duration::from_secs(open_secs),
        };
        let mut b = CircuitBreaker::new(config);
        let mut now = NOW;
        let mut running = 0u32;
        let mut probes_since_open = 0u32;
        for op in ops {
            match op {
                Op::Acquire { after_ms } => {
                    now += Duration::from_millis(after_ms.into());
                    let before = b.state();
                    let (after, allowed) = b.try_acquire(now);
                    match before {
                        CircuitState::Open { until } if now < until => {
                            prop_assert!(!allowed, "allowed while open until {until} at {now}");
                            prop_assert_eq!(after, b);
                        }
                        CircuitState::Open { .. } | CircuitState::HalfOpen { .. } => {
                            if allowed {
                                probes_since_open += 1;
                                prop_assert_eq!(after.state(), CircuitState::HalfOpen { probing: true });
                            }
                            prop_assert!(probes_since_open <= 1, "a second probe while half-open");
                            prop_assert_eq!(allowed, matches!(before, CircuitState::Open { .. }));
                        }
                        CircuitState::Closed { .. } => {
                            prop_assert!(allowed);
                            prop_assert_eq!(after, b);
                        }
                    }
                    if allowed {
                        running += 1;
                    }
                    b = after;
                }
                Op::Finish { after_ms, success } => {
                    if running == 0 {
                        continue;
                    }
                    running -= 1;
                    now += Duration::from_millis(after_ms.into());
                    let before = b.state();
                    b = b.on_result(success, now);
                    let expected = match (before, success) {
                        (_, true) => CircuitState::Closed { consecutive_failures: 0 },
                        (CircuitState::Closed { consecutive_failures: n }, false) if n + 1 < threshold => {
                            CircuitState::Closed { consecutive_failures: n + 1 }
                        }
                        (_, false) => CircuitState::Open { until: now + config.open_for },
                    };
                    prop_assert_eq!(b.state(), expected);
                    if !matches!(b.state(), CircuitState::HalfOpen { .. }) {
                        probes_since_open = 0;
                    }
                }
            }
        }
    }
}
