//! Properties of the adaptive per-target in-flight limit over random bounds and random runs of
//! starts and answers: the limit stays within its bounds, strain never raises it and a healthy
//! answer never lowers it, only an answer to an attempt in flight while the limit was full
//! raises it (by one step of the slow start at most, by one after it), strain halves it at
//! most once per round trip, what says nothing of capacity changes nothing, and a target that
//! keeps answering healthily at its limit reaches the ceiling.

use std::time::Duration;

use proptest::prelude::*;
use time::OffsetDateTime;
use webhook_domain::{AdaptiveLimit, AttemptOutcome, ConcurrencyLimits, SLOW_START_STEP};

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

/// What happens next to one target, some time (ms) after the previous step.
#[derive(Debug, Clone)]
enum Step {
    /// An attempt starts, leaving this share of the limit (in percent) in flight.
    Start { share: u32 },
    /// An attempt ends with this outcome after this latency (ms).
    End {
        outcome: AttemptOutcome,
        latency: u64,
    },
}

fn step() -> impl Strategy<Value = (Step, u64)> {
    let step = prop_oneof![
        (0..=150u32).prop_map(|share| Step::Start { share }),
        (outcome(), 0..=5_000u64).prop_map(|(outcome, latency)| Step::End { outcome, latency }),
    ];
    (step, 0..=3_000u64)
}

proptest! {
    #[test]
    fn the_limit_moves_only_as_the_outcomes_say_and_within_its_bounds(
        limits in limits(),
        steps in prop::collection::vec(step(), 0..300),
    ) {
        let mut l = AdaptiveLimit::new(limits);
        let mut now = NOW;
        // The model's view: when the limit was last full, and whether strain was seen.
        let mut last_full: Option<OffsetDateTime> = None;
        let mut strained = false;
        prop_assert!((limits.floor()..=limits.ceiling()).contains(&l.limit()));
        for (step, gap_ms) in steps {
            now += Duration::from_millis(gap_ms);
            let next = match &step {
                Step::Start { share } => {
                    let in_flight = l.limit() * share / 100;
                    let next = l.on_start(in_flight, now);
                    prop_assert_eq!(next.limit(), l.limit(), "a start moves no limit");
                    if in_flight >= l.limit() {
                        last_full = Some(now);
                    }
                    next
                }
                Step::End { outcome, latency } => {
                    let latency = Duration::from_millis(*latency);
                    let next = l.on_attempt(outcome, latency, now);
                    match outcome {
                        AttemptOutcome::Gone | AttemptOutcome::RefusedByPolicy => {
                            prop_assert_eq!(next, l)
                        }
                        AttemptOutcome::RetryLater { .. } => {
                            strained = true;
                            prop_assert!(next.limit() <= l.limit());
                            // Halved or kept (within the round trip of the last halving).
                            prop_assert!(next.limit() >= (l.limit() / 2).max(limits.floor()));
                        }
                        AttemptOutcome::Delivered | AttemptOutcome::Rejected => {
                            prop_assert!(next.limit() >= l.limit());
                            let step = if strained { 1 } else { SLOW_START_STEP };
                            prop_assert!(next.limit() <= l.limit() + step, "one answer raises by one step at most");
                            if last_full.is_none_or(|at| at + latency < now) {
                                prop_assert_eq!(next.limit(), l.limit(), "the limit was not full during the attempt");
                            }
                        }
                    }
                    next
                }
            };
            prop_assert!(
                (limits.floor()..=limits.ceiling()).contains(&next.limit()),
                "{next:?} outside {limits:?}"
            );
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
            let next = l.on_attempt(&strain, latency, now);
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
            l = l.on_attempt(&AttemptOutcome::RetryLater { not_before: None }, latency, NOW);
        }
        // Out of slow start it takes `limit` answers per step up: the sum up to the ceiling.
        let enough = (limits.ceiling() as u64 + 1).pow(2);
        for _ in 0..enough {
            if l.limit() == limits.ceiling() {
                break;
            }
            l = l.on_start(l.limit(), NOW);
            l = l.on_attempt(&AttemptOutcome::Delivered, latency, NOW + latency);
        }
        prop_assert_eq!(l.limit(), limits.ceiling());
    }
}
