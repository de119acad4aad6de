//! Retry policies on their own: delays, jitter, `max_age`, validation.

use std::time::Duration;

use proptest::prelude::*;
use webhook_domain::{
    AttemptDetail, Backoff, Decision, Delivery, Jitter, RetryPolicy, RetryPolicyError,
};

use crate::fixtures::{NOW, delivery_id, event_id, secs, webhook_id};

fn exponential(initial: Duration, cap: Duration) -> RetryPolicy {
    RetryPolicy::new(Backoff::Exponential { initial, cap }, 20, None).unwrap()
}

#[test]
fn jitter_new_clamps_into_zero_to_one() {
    for (given, kept) in [
        (-1.0, 0.0),
        (-0.0, 0.0),
        (0.0, 0.0),
        (0.25, 0.25),
        (1.0, 1.0),
        (1.5, 1.0),
        (f64::INFINITY, 1.0),
        (f64::NEG_INFINITY, 0.0),
        (f64::NAN, 1.0),
    ] {
        assert_eq!(Jitter::new(given).value(), kept, "{given}");
    }
    assert_eq!(Jitter::MAX.value(), 1.0);
}

#[test]
fn jitter_from_bits_edges() {
    assert_eq!(Jitter::from_bits(0).value(), 0.0);
    assert_eq!(Jitter::from_bits(1 << 63).value(), 0.5);
    let top = Jitter::from_bits(u64::MAX).value();
    assert!(top < 1.0 && top > 0.999_999_999, "{top}");
}

proptest! {
    #[test]
    fn jitter_from_bits_is_in_zero_to_one(bits in any::<u64>()) {
        let v = Jitter::from_bits(bits).value();
        prop_assert!((0.0..1.0).contains(&v), "{bits} -> {v}");
    }

    /// Full jitter never waits longer than the cap or than `initial * 2^(n-1)`.
    #[test]
    fn exponential_delay_is_bounded(
        initial_ns in 0u64..=60_000_000_000,
        extra_ns in 0u64..=86_400_000_000_000,
        n in 1u32..=100,
        jitter in prop_oneof![any::<u64>().prop_map(Jitter::from_bits), Just(Jitter::MAX)],
    ) {
        let initial = Duration::from_nanos(initial_ns);
        let cap = initial + Duration::from_nanos(extra_ns);
        let p = exponential(initial, cap);
        let delay = p.delay_after(n, jitter);
        prop_assert!(delay <= cap, "{delay:?} > cap {cap:?}");
        let doubled = 2u128
            .checked_pow(n - 1)
            .and_then(|factor| factor.checked_mul(initial.as_nanos()))
            .unwrap_or(u128::MAX);
        prop_assert!(delay.as_nanos() <= doubled, "{delay:?} > initial*2^(n-1)");
        if jitter == Jitter::MAX {
            let ceiling = doubled.min(cap.as_nanos());
            prop_assert_eq!(delay.as_nanos(), ceiling);
        }
    }
}

#[test]
fn exponential_doubles_to_the_cap_then_jitters() {
    let p = exponential(Duration::from_millis(500), Duration::from_secs(30));
    let full: Vec<u128> = (1..=9)
        .map(|n| p.delay_after(n, Jitter::MAX).as_millis())
        .collect();
    assert_eq!(
        full,
        [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    );
    assert_eq!(p.delay_after(0, Jitter::MAX), Duration::from_millis(500));
    assert_eq!(
        p.delay_after(3, Jitter::new(0.25)),
        Duration::from_millis(500)
    );
    assert_eq!(p.delay_after(3, Jitter::new(0.0)), Duration::ZERO);
    assert_eq!(p.delay_after(3, Jitter::new(-0.0)), Duration::ZERO);
    assert_eq!(
        p.delay_after(u32::MAX, Jitter::MAX),
        Duration::from_secs(30)
    );
}

#[test]
fn fixed_and_schedule_ignore_jitter() {
    let fixed = RetryPolicy::new(
        Backoff::Fixed {
            interval: Duration::from_secs(7),
        },
        5,
        None,
    )
    .unwrap();
    let schedule = RetryPolicy::new(
        Backoff::Schedule {
            delays: vec![Duration::from_secs(1), Duration::from_secs(10)],
        },
        5,
        None,
    )
    .unwrap();
    for jitter in [Jitter::new(0.0), Jitter::new(0.3), Jitter::MAX] {
        let waits = |p: &RetryPolicy| -> Vec<u64> {
            (1..=4)
                .map(|n| p.delay_after(n, jitter).as_secs())
                .collect()
        };
        assert_eq!(waits(&fixed), [7, 7, 7, 7]);
        assert_eq!(waits(&schedule), [1, 10, 10, 10], "the last delay repeats");
    }
}

#[test]
fn standard_webhooks_preset() {
    let p = RetryPolicy::standard_webhooks();
    assert_eq!((p.max_attempts(), p.max_age()), (8, None));
    let mut at = NOW;
    let mut times = Vec::new();
    for made in 1..=8 {
        match p.next_attempt(made, NOW, at, None, Jitter::MAX) {
            Some(next) => {
                times.push((next - NOW).whole_seconds());
                at = next;
            }
            None => assert_eq!(made, 8),
        }
    }
    assert_eq!(times, [5, 305, 2105, 9305, 27305, 63305, 99305]);
}

/// A fixed 10 s policy that gives up once 25 s have passed since the first due time: the
/// attempt whose retry would start after `first_due + 25 s` is the last.
#[test]
fn max_age_exhausts_a_delivery_whose_next_attempt_would_be_too_late() {
    let p = RetryPolicy::new(
        Backoff::Fixed {
            interval: Duration::from_secs(10),
        },
        100,
        Some(Duration::from_secs(25)),
    )
    .unwrap();
    let failure = AttemptDetail::Timeout;
    let mut d = Delivery::new(delivery_id(), event_id(), webhook_id(), NOW);
    let mut decisions = Vec::new();
    let mut now = NOW;
    loop {
        d = d.claim(now, now + secs(30)).unwrap();
        let (next, decision) = d
            .on_attempt(&failure.outcome(), &p, now, Jitter::MAX)
            .unwrap();
        d = next;
        decisions.push(decision);
        match decision {
            Decision::RetryAt(at) => now = at,
            _ => break,
        }
    }
    assert_eq!(
        decisions,
        [
            Decision::RetryAt(NOW + secs(10)),
            Decision::RetryAt(NOW + secs(20)),
            Decision::Exhausted
        ]
    );
    assert_eq!(d.attempts(), 3);
    // Exactly at the limit is still allowed; one nanosecond past is not.
    assert!(
        p.next_attempt(1, NOW, NOW + secs(15), None, Jitter::MAX)
            .is_some()
    );
    let past = NOW + secs(15) + time::Duration::nanoseconds(1);
    assert_eq!(p.next_attempt(1, NOW, past, None, Jitter::MAX), None);
    // A Retry-After that pushes past max_age gives up too.
    let (_, decision) = Delivery::new(delivery_id(), event_id(), webhook_id(), NOW)
        .claim(NOW, NOW + secs(30))
        .unwrap()
        .on_attempt(
            &AttemptDetail::Response {
                status: 503,
                retry_after: Some(Duration::from_secs(60)),
            }
            .outcome(),
            &p,
            NOW,
            Jitter::MAX,
        )
        .unwrap();
    assert_eq!(decision, Decision::Exhausted);
}

#[test]
fn invalid_policies_are_refused_with_the_field() {
    let s = Duration::from_secs;
    let week = s(7 * 24 * 3600);
    let fixed = |interval| Backoff::Fixed { interval };
    type Row = (Backoff, u32, Option<Duration>, Result<(), RetryPolicyError>);
    let rows: Vec<Row> = vec![
        (fixed(s(5)), 1, None, Ok(())),
        (fixed(s(5)), 100, None, Ok(())),
        (fixed(s(5)), 0, None, Err(RetryPolicyError::MaxAttempts(0))),
        (
            fixed(s(5)),
            101,
            None,
            Err(RetryPolicyError::MaxAttempts(101)),
        ),
        (fixed(week), 3, None, Ok(())),
        (
            fixed(week + Duration::from_nanos(1)),
            3,
            None,
            Err(RetryPolicyError::IntervalTooLong {
                field: "intervalMs",
            }),
        ),
        (
            Backoff::Exponential {
                initial: s(2),
                cap: s(1),
            },
            3,
            None,
            Err(RetryPolicyError::CapBelowInitial),
        ),
        (
            Backoff::Exponential {
                initial: s(1),
                cap: week + s(1),
            },
            3,
            None,
            Err(RetryPolicyError::IntervalTooLong { field: "capMs" }),
        ),
        (
            Backoff::Schedule { delays: vec![] },
            3,
            None,
            Err(RetryPolicyError::ScheduleLength),
        ),
        (
            Backoff::Schedule {
                delays: vec![s(1); 101],
            },
            3,
            None,
            Err(RetryPolicyError::ScheduleLength),
        ),
        (
            Backoff::Schedule {
                delays: vec![s(1), week + s(1)],
            },
            3,
            None,
            Err(RetryPolicyError::IntervalTooLong { field: "delaysMs" }),
        ),
        (
            fixed(s(5)),
            3,
            Some(Duration::ZERO),
            Err(RetryPolicyError::MaxAge),
        ),
        (fixed(s(5)), 3, Some(s(30 * 24 * 3600)), Ok(())),
        (
            fixed(s(5)),
            3,
            Some(s(30 * 24 * 3600 + 1)),
            Err(RetryPolicyError::MaxAge),
        ),
    ];
    for (backoff, max_attempts, max_age, expected) in rows {
        let got = RetryPolicy::new(backoff.clone(), max_attempts, max_age).map(|_| ());
        assert_eq!(got, expected, "{backoff:?} {max_attempts} {max_age:?}");
    }
}
