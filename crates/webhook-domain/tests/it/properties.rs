//! Properties of the delivery state machine over random policies, outcomes, jitter and action
//! sequences: attempts never exceed the policy's maximum, next attempt times never go back, a
//! delivered delivery never changes again, and exhaustion happens exactly when the policy says.

use std::time::Duration;

use proptest::prelude::*;
use time::OffsetDateTime;
use webhook_domain::{
    AttemptDetail, Backoff, CancelReason, Decision, Delivery, DeliveryState, Jitter, RetryPolicy,
    TransitionError, limits::MAX_RETRY_AFTER,
};

use crate::fixtures::{NOW, delivery_id, event_id, webhook_id};

const DAY_MS: u64 = 24 * 3600 * 1000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        (0..=3_600_000u64).prop_map(|i| Backoff::Fixed { interval: ms(i) }),
        (0..=60_000u64, 0..=DAY_MS).prop_map(|(initial, extra)| Backoff::Exponential {
            initial: ms(initial),
            cap: ms(initial + extra),
        }),
        prop::collection::vec(0..=DAY_MS, 1..=10).prop_map(|delays| Backoff::Schedule {
            delays: delays.into_iter().map(ms).collect(),
        }),
    ]
}

fn policy_with(
    max_age: impl Strategy<Value = Option<Duration>>,
) -> impl Strategy<Value = RetryPolicy> {
    (backoff(), 1..=20u32, max_age)
        .prop_map(|(b, max_attempts, age)| RetryPolicy::new(b, max_attempts, age).unwrap())
}

fn some_max_age() -> impl Strategy<Value = Duration> {
    (1..=2 * DAY_MS).prop_map(ms)
}

fn any_policy() -> impl Strategy<Value = RetryPolicy> {
    policy_with(prop::option::of(some_max_age()))
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        any::<u64>().prop_map(Jitter::from_bits),
        Just(Jitter::MAX),
        Just(Jitter::new(0.0)),
    ]
}

fn retry_after() -> impl Strategy<Value = Option<Duration>> {
    prop::option::of((0..=3 * 3600u64).prop_map(Duration::from_secs))
}

fn response(status: u16, retry_after: Option<Duration>) -> AttemptDetail {
    AttemptDetail::Response {
        status,
        retry_after,
    }
}

/// Every kind of outcome, successes and 410 included.
fn any_outcome() -> impl Strategy<Value = AttemptDetail> {
    prop_oneof![
        3 => (prop_oneof![Just(200u16), Just(204), Just(410), 100..=599u16], retry_after())
            .prop_map(|(s, r)| response(s, r)),
        1 => Just(AttemptDetail::Timeout),
        1 => Just(AttemptDetail::ConnectionFailed),
        1 => Just(AttemptDetail::TlsFailed),
        1 => Just(AttemptDetail::ResponseTooLarge),
        1 => Just(AttemptDetail::AddressRefused),
    ]
}

/// Failures that the policy retries: no 2xx, no 410, no refused address.
fn retryable_failure() -> impl Strategy<Value = AttemptDetail> {
    prop_oneof![
        4 => (
            prop_oneof![100..=199u16, 300..=409u16, 411..=599u16, Just(429), Just(503)],
            retry_after()
        )
            .prop_map(|(s, r)| response(s, r)),
        1 => Just(AttemptDetail::Timeout),
        1 => Just(AttemptDetail::ConnectionFailed),
        1 => Just(AttemptDetail::TlsFailed),
        1 => Just(AttemptDetail::ResponseTooLarge),
    ]
}

fn reason() -> impl Strategy<Value = CancelReason> {
    prop_oneof![
        Just(CancelReason::TargetDeleted),
        Just(CancelReason::TargetDisabled),
        Just(CancelReason::TargetGone),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    /// Time passes.
    Wait {
        secs: u32,
    },
    /// Waits until the delivery is claimable (if it ever is), then claims it.
    Claim {
        lease_secs: u32,
    },
    /// The attempt in flight ends with `outcome` after `took_ms`.
    Attempt {
        outcome: AttemptDetail,
        jitter: Jitter,
        took_ms: u32,
    },
    Release,
    Cancel(CancelReason),
    Requeue,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..=7200u32).prop_map(|secs| Step::Wait { secs }),
        4 => (1..=300u32).prop_map(|lease_secs| Step::Claim { lease_secs }),
        5 => (any_outcome(), jitter(), 0..=30_000u32)
            .prop_map(|(outcome, jitter, took_ms)| Step::Attempt { outcome, jitter, took_ms }),
        1 => Just(Step::Release),
        1 => reason().prop_map(Step::Cancel),
        1 => Just(Step::Requeue),
    ]
}

type StepResult = Result<(Delivery, Option<Decision>), TransitionError>;

/// Applies `step` to `d` at `*now`, moving `*now` forward as the step says.
fn apply(d: &Delivery, step: &Step, policy: &RetryPolicy, now: &mut OffsetDateTime) -> StepResult {
    match *step {
        Step::Wait { secs } => {
            *now += Duration::from_secs(secs.into());
            Ok((d.clone(), None))
        }
        Step::Claim { lease_secs } => {
            if let Some(at) = d.state().claimable_at() {
                *now = (*now).max(at);
            }
            d.claim(*now, *now + Duration::from_secs(lease_secs.into()))
                .map(|d| (d, None))
        }
        Step::Attempt {
            outcome,
            jitter,
            took_ms,
        } => {
            *now += Duration::from_millis(took_ms.into());
            d.on_attempt(&outcome.outcome(), policy, *now, jitter)
                .map(|(d, decision)| (d, Some(decision)))
        }
        Step::Release => d.release(*now).map(|d| (d, None)),
        Step::Cancel(reason) => d.cancel(reason, *now).map(|d| (d, None)),
        Step::Requeue => d.requeue(*now).map(|d| (d, None)),
    }
}

/// One applied step: the delivery before, the time the step ended at, and what came of it.
struct Record {
    before: Delivery,
    step: Step,
    now: OffsetDateTime,
    result: StepResult,
}

/// Runs `steps` from a new delivery, keeping each successful result.
fn run(policy: &RetryPolicy, steps: &[Step]) -> (Delivery, Vec<Record>) {
    let mut now = NOW;
    let mut d = Delivery::new(delivery_id(), event_id(), webhook_id(), now);
    let mut trace = Vec::new();
    for step in steps {
        let result = apply(&d, step, policy, &mut now);
        let before = d.clone();
        if let Ok((next, _)) = &result {
            d = next.clone();
        }
        trace.push(Record {
            before,
            step: step.clone(),
            now,
            result,
        });
    }
    (d, trace)
}

fn new_delivery() -> Delivery {
    Delivery::new(delivery_id(), event_id(), webhook_id(), NOW)
}

/// Claims as soon as possible and applies `outcome`; returns the new delivery, its decision and
/// the time the attempt ended.
fn attempt(
    d: &Delivery,
    outcome: &AttemptDetail,
    policy: &RetryPolicy,
    jitter: Jitter,
    took: Duration,
) -> (Delivery, Decision, OffsetDateTime) {
    let due = d.state().claimable_at().unwrap();
    let claimed = d.claim(due, due + Duration::from_secs(60)).unwrap();
    let now = due + took;
    let (next, decision) = claimed
        .on_attempt(&outcome.outcome(), policy, now, jitter)
        .unwrap();
    (next, decision, now)
}

proptest! {
    /// (a) The recorded attempts never exceed `max_attempts`; only an outcome adds one and only
    /// a requeue resets them.
    #[test]
    fn attempts_never_exceed_max_attempts(
        policy in any_policy(),
        steps in prop::collection::vec(step(), 1..=60),
    ) {
        let (_, trace) = run(&policy, &steps);
        for r in &trace {
            let Ok((after, _)) = &r.result else { continue };
            prop_assert!(after.attempts() <= policy.max_attempts(), "{:?}", r.step);
            let expected = match r.step {
                Step::Attempt { .. } => r.before.attempts() + 1,
                Step::Requeue => 0,
                _ => r.before.attempts(),
            };
            prop_assert_eq!(after.attempts(), expected, "{:?}", r.step);
        }
    }

    /// (a) An attempt's number in the log (the attempts made once it has an outcome) counts on
    /// across exhaustions and requeues: the outcomes of one delivery are numbered 1..=n without
    /// a repeat, and nothing else changes the count.
    #[test]
    fn attempt_numbers_never_restart(
        policy in any_policy(),
        steps in prop::collection::vec(step(), 1..=60),
    ) {
        let (last, trace) = run(&policy, &steps);
        let mut numbers = Vec::new();
        for r in &trace {
            let Ok((after, _)) = &r.result else { continue };
            let expected = match r.step {
                Step::Attempt { .. } => r.before.attempts_made() + 1,
                _ => r.before.attempts_made(),
            };
            prop_assert_eq!(after.attempts_made(), expected, "{:?}", r.step);
            if matches!(r.step, Step::Attempt { .. }) {
                numbers.push(after.attempts_made());
            }
        }
        let n = u32::try_from(numbers.len()).unwrap();
        prop_assert_eq!(numbers, (1..=n).collect::<Vec<_>>());
        prop_assert_eq!(last.attempts_made(), n);
    }

    /// (a) Reached for sure: rounds of retryable failures until the policy gives up, each
    /// followed by a requeue, then a 2xx. The numbers run 1..=n over all rounds, while the
    /// budget's count starts again at every requeue.
    #[test]
    fn attempt_numbers_continue_after_requeues(
        policy in policy_with(Just(None)),
        rounds in 1..=4usize,
        failure in retryable_failure(),
    ) {
        let mut d = new_delivery();
        let mut numbers = Vec::new();
        for _ in 0..rounds {
            loop {
                let (next, decision, now) =
                    attempt(&d, &failure, &policy, Jitter::MAX, Duration::ZERO);
                d = next;
                numbers.push(d.attempts_made());
                if decision == Decision::Exhausted {
                    d = d.requeue(now).unwrap();
                    prop_assert_eq!(d.attempts(), 0);
                    break;
                }
            }
        }
        let (d, decision, _) =
            attempt(&d, &response(200, None), &policy, Jitter::MAX, Duration::ZERO);
        prop_assert_eq!(decision, Decision::Delivered);
        numbers.push(d.attempts_made());
        let n = u32::try_from(rounds).unwrap() * policy.max_attempts() + 1;
        prop_assert_eq!(numbers, (1..=n).collect::<Vec<_>>());
        prop_assert_eq!(d.attempts(), 1);
    }

    /// (b) Each `RetryAt` is no earlier than the attempt that asked for it, and no earlier than
    /// the previous one since the last requeue; the state agrees with the decision, and claiming
    /// before it is refused.
    #[test]
    fn next_attempt_times_never_go_back(
        policy in any_policy(),
        steps in prop::collection::vec(step(), 1..=60),
    ) {
        let (_, trace) = run(&policy, &steps);
        let mut previous: Option<OffsetDateTime> = None;
        for r in &trace {
            // A manual requeue starts a new schedule, due at once.
            if matches!((&r.step, &r.result), (Step::Requeue, Ok(_))) {
                previous = None;
            }
            let Ok((after, Some(decision))) = &r.result else { continue };
            let expected_state = match *decision {
                Decision::RetryAt(at) => {
                    prop_assert!(at >= r.now, "{at} before the attempt at {}", r.now);
                    if let Some(prev) = previous {
                        prop_assert!(at >= prev, "{at} before the previous retry {prev}");
                    }
                    previous = Some(at);
                    if at > r.now {
                        let early = after.claim(r.now, at);
                        prop_assert_eq!(
                            early,
                            Err(TransitionError::NotDue { id: after.id(), due: at })
                        );
                    }
                    DeliveryState::RetryScheduled { at }
                }
                Decision::Delivered => DeliveryState::Delivered { at: r.now },
                Decision::Exhausted => DeliveryState::Exhausted { at: r.now },
                Decision::DisableTarget => DeliveryState::Cancelled {
                    at: r.now,
                    reason: CancelReason::TargetGone,
                },
            };
            prop_assert_eq!(after.state(), expected_state);
        }
    }

    /// (c) In a random sequence, a delivered delivery refuses every later step and stays
    /// exactly as it was.
    #[test]
    fn delivered_is_final_in_random_sequences(
        policy in any_policy(),
        steps in prop::collection::vec(step(), 1..=60),
    ) {
        let (last, trace) = run(&policy, &steps);
        let mut delivered: Option<&Delivery> = None;
        for r in &trace {
            if let Some(d) = delivered {
                prop_assert_eq!(&r.before, d);
                if !matches!(r.step, Step::Wait { .. }) {
                    let refused = matches!(r.result, Err(TransitionError::NotAllowed { .. }));
                    prop_assert!(refused, "{:?} allowed on a delivered delivery", r.step);
                }
            }
            if let Ok((after, _)) = &r.result
                && matches!(after.state(), DeliveryState::Delivered { .. })
            {
                delivered.get_or_insert(after);
            }
        }
        if let Some(d) = delivered {
            prop_assert_eq!(&last, d);
        }
    }

    /// (c) Reached for sure: some failures, then a 2xx; then every transition at any later time,
    /// with any argument, is refused and changes nothing.
    #[test]
    fn delivered_refuses_every_transition(
        policy in any_policy(),
        failures in prop::collection::vec(retryable_failure(), 0..=3),
        status in 200..=299u16,
        later in prop::collection::vec((0..=30 * 24 * 3600u32, any_outcome(), jitter(), reason()), 1..=10),
    ) {
        let mut d = new_delivery();
        for failure in &failures {
            let (next, decision, _) = attempt(&d, failure, &policy, Jitter::MAX, Duration::ZERO);
            d = next;
            if !matches!(decision, Decision::RetryAt(_)) {
                return Ok(());
            }
        }
        let (d, decision, at) =
            attempt(&d, &response(status, None), &policy, Jitter::MAX, Duration::ZERO);
        prop_assert_eq!(decision, Decision::Delivered);
        prop_assert_eq!(d.state(), DeliveryState::Delivered { at });
        let snapshot = d.clone();
        for (secs, outcome, jitter, reason) in later {
            let now = at + Duration::from_secs(secs.into());
            let refused = |r: Result<(), TransitionError>| {
                matches!(r, Err(TransitionError::NotAllowed { .. }))
            };
            prop_assert!(refused(d.claim(now, now + Duration::from_secs(60)).map(|_| ())));
            prop_assert!(refused(d.on_attempt(&outcome.outcome(), &policy, now, jitter).map(|_| ())));
            prop_assert!(refused(d.release(now).map(|_| ())));
            prop_assert!(refused(d.cancel(reason, now).map(|_| ())));
            prop_assert!(refused(d.requeue(now).map(|_| ())));
            prop_assert_eq!(&d, &snapshot);
        }
    }

    /// (d) Without `max_age`, retryable failures exhaust a delivery exactly at attempt number
    /// `max_attempts`, never before.
    #[test]
    fn failures_exhaust_exactly_at_max_attempts(
        policy in policy_with(Just(None)),
        failures in prop::collection::vec((retryable_failure(), jitter(), 0..=30_000u64), 20),
    ) {
        let mut d = new_delivery();
        for (n, (failure, jitter, took_ms)) in (1u32..).zip(&failures) {
            let (next, decision, _) = attempt(&d, failure, &policy, *jitter, ms(*took_ms));
            d = next;
            prop_assert_eq!(d.attempts(), n);
            if n < policy.max_attempts() {
                prop_assert!(matches!(decision, Decision::RetryAt(_)), "gave up at {n}: {decision:?}");
            } else {
                prop_assert_eq!(decision, Decision::Exhausted);
                prop_assert!(
                    matches!(d.state(), DeliveryState::Exhausted { .. }),
                    "state {:?}",
                    d.state()
                );
                return Ok(());
            }
        }
        prop_assert!(false, "never exhausted");
    }

    /// (d) With `max_age`, a delivery is exhausted exactly when its attempts are used up or its
    /// next attempt would start after `first_due + max_age`; otherwise the next attempt is at
    /// `now + max(delay, bounded Retry-After on 429/503)`.
    #[test]
    fn max_age_exhausts_exactly_when_the_next_attempt_would_be_too_late(
        policy in policy_with(some_max_age().prop_map(Some)),
        failures in prop::collection::vec((retryable_failure(), jitter(), 0..=3_600_000u64), 20),
    ) {
        let max_age = policy.max_age().unwrap();
        let mut d = new_delivery();
        let deadline = d.first_due() + max_age;
        for (n, (failure, jitter, took_ms)) in (1u32..).zip(&failures) {
            let (next, decision, now) = attempt(&d, failure, &policy, *jitter, ms(*took_ms));
            d = next;
            let retry_after = match *failure {
                AttemptDetail::Response { status: 429 | 503, retry_after } => {
                    retry_after.unwrap_or_default().min(MAX_RETRY_AFTER)
                }
                _ => Duration::ZERO,
            };
            let wanted = now + policy.delay_after(n, *jitter).max(retry_after);
            if n >= policy.max_attempts() || wanted > deadline {
                prop_assert_eq!(decision, Decision::Exhausted, "attempt {}", n);
                return Ok(());
            }
            prop_assert_eq!(decision, Decision::RetryAt(wanted), "attempt {}", n);
        }
        prop_assert!(false, "never exhausted");
    }
}
