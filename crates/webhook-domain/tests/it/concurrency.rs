//! Properties of the adaptive per-target in-flight limit over random bounds and random runs of
//! outcomes, latencies and in-flight counts: the limit stays within its bounds, strain never
//! raises it and a healthy answer never lowers it, strain halves it at most once per round
//! trip, what says nothing of capacity changes nothing, and a target that keeps answering
//! healthily at its limit reaches the ceiling.

use std::time::Duration;

use proptest::prelude::*;
use time::OffsetDateTime;
use webhook_domain::{AdaptiveLimit, AttemptOutcome, ConcurrencyLimits};

use crate::fixtures::NOW;

fn limits() -> impl Strategy<Value = ConcurrencyLimits> {
    (1..=64u32, 0..=64u32, 0..=300u32).prop_map(|(floor, up, initial)| {
        ConcurrencyLimits::new(floor, initial, floor + up).unwrap()
    })
}

fn outcome() -> impl Strategy<Value = AttemptOutcome> {
    prop_oneof![
        Just(AttemptOutcome::Delivered),
        Just(AttemptOutcome::Rejected),
        proptest::option::of(0..=60u64).prop_map(|s| AttemptOutcome::RetryLater {
            not_before: s.map(Duration::from_secs)
        }),
        Just(AttemptOutcome::Gone),
        Just(AttemptOutcome::RefusedByPolicy),
    ]
}

/// One attempt's end: its outcome, its latency, how many were in flight (as a share of the
/// limit, in percent), and how long after the previous end it came.
fn step() -> impl Strategy<Value = (AttemptOutcome, u64, u32, u64)> {
    (outcome(), 0..=5_000u64, 0..=150u32, 0..=3_000u64)
}

proptest! {
    #[test]
    fn the_limit_moves_only_as_the_outcomes_say_and_within_its_bounds(
        limits in limits(),
        steps in prop::collection::vec(step(), 0..300),
    ) {
        let mut l = AdaptiveLimit::new(limits);
        let mut now = NOW;
        prop_assert!((limits.floor()..=limits.ceiling()).contains(&l.limit()));
        for (outcome, latency_ms, share, gap_ms) in steps {
            now += Duration::from_millis(gap_ms);
            let in_flight = l.limit() * share / 100;
            let next = l.on_attempt(&outcome, Duration::from_millis(latency_ms), in_flight, now);
            prop_assert!(
                (limits.floor()..=limits.ceiling()).contains(&next.limit()),
                "{next:?} outside {limits:?}"
            );
            match outcome {
                AttemptOutcome::Gone | AttemptOutcome::RefusedByPolicy => prop_assert_eq!(next, l),
                AttemptOutcome::RetryLater { .. } => {
                    prop_assert!(next.limit() <= l.limit());
                    // Halved or kept (within the round trip of the last halving): never less.
                    prop_assert!(next.limit() >= (l.limit() / 2).max(limits.floor()));
                }
                AttemptOutcome::Delivered | AttemptOutcome::Rejected => {
                    prop_assert!(next.limit() >= l.limit());
                    prop_assert!(next.limit() <= l.limit() + 1, "one answer raises by one at most");
                    if in_flight < l.limit() {
                        prop_assert_eq!(next.limit(), l.limit(), "a target below its limit");
                    }
                }
            }
            l = next;
        }
    }

    #[test]
    fn strain_halves_at_most_once_per_round_trip(
        limits in limits(),
        latency_ms in 1..=5_000u64,
        failures in prop::collection::vec(0..=10_000u64, 1..50),
    ) {
        let latency = Duration::from_millis(latency_ms);
        let strain = AttemptOutcome::RetryLater { not_before: None };
        let mut l = AdaptiveLimit::new(limits);
        let mut halvings: Vec<OffsetDateTime> = Vec::new();
        let mut now = NOW;
        for gap in failures {
            now += Duration::from_millis(gap);
            let next = l.on_attempt(&strain, latency, l.limit(), now);
            if next.limit() < l.limit() {
                halvings.push(now);
            }
            l = next;
        }
        for pair in halvings.windows(2) {
            prop_assert!(pair[1] - pair[0] >= latency, "{pair:?} closer than {latency:?}");
        }
    }

    #[test]
    fn a_target_that_keeps_up_at_its_limit_reaches_the_ceiling(
        limits in limits(),
        latency_ms in 1..=5_000u64,
        strain_first in any::<bool>(),
    ) {
        let latency = Duration::from_millis(latency_ms);
        let mut l = AdaptiveLimit::new(limits);
        if strain_first {
            l = l.on_attempt(&AttemptOutcome::RetryLater { not_before: None }, latency, l.limit(), NOW);
        }
        // Out of slow start it takes `limit` answers per step up: the sum up to the ceiling.
        let enough = (limits.ceiling() as u64 + 1).pow(2);
        for _ in 0..enough {
            if l.limit() == limits.ceiling() {
                break;
            }
            l = l.on_attempt(&AttemptOutcome::Delivered, latency, l.limit(), NOW);
        }
        prop_assert_eq!(l.limit(), limits.ceiling());
    }
}
