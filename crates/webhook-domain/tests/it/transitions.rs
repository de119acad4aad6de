//! The delivery state machine as a table: every start state against every action, under the
//! Identus policy (3 attempts, 5 s apart).

use std::time::Duration;

use time::OffsetDateTime;
use webhook_domain::{
    AttemptDetail, CancelReason, Decision, Delivery, DeliveryState, Jitter, RetryPolicy,
    TransitionError, limits::MAX_RETRY_AFTER,
};

use crate::fixtures::{NOW, delivery_id, event_id, secs, webhook_id};

const FIRST_DUE: OffsetDateTime = NOW.saturating_sub(time::Duration::minutes(2));
/// The lease a successful claim asks for.
const LEASE: OffsetDateTime = NOW.saturating_add(time::Duration::seconds(30));

#[derive(Debug, Clone, Copy)]
enum Start {
    /// Never attempted, due a second ago.
    PendingDue,
    /// Never attempted, due exactly now.
    PendingDueNow,
    /// Never attempted, due in 10 s.
    PendingNotDue,
    /// Attempt 1 under a live lease.
    InFlightFirst,
    /// Attempt 2 under a live lease (one failure recorded).
    InFlightLive,
    /// Attempt 2 whose lease ran out a second ago.
    InFlightExpired,
    /// Attempt 2 whose lease runs out exactly now.
    InFlightExpiresNow,
    /// Attempt 3, the Identus policy's last.
    InFlightLast,
    /// One failure recorded, retry due a second ago.
    RetryDue,
    /// One failure recorded, retry due in 10 s.
    RetryNotDue,
    Delivered,
    Exhausted,
    Cancelled,
}

const ALL_STARTS: [Start; 13] = [
    Start::PendingDue,
    Start::PendingDueNow,
    Start::PendingNotDue,
    Start::InFlightFirst,
    Start::InFlightLive,
    Start::InFlightExpired,
    Start::InFlightExpiresNow,
    Start::InFlightLast,
    Start::RetryDue,
    Start::RetryNotDue,
    Start::Delivered,
    Start::Exhausted,
    Start::Cancelled,
];

fn start(s: Start) -> Delivery {
    use DeliveryState as S;
    let in_flight = |attempt, leased_until| S::InFlight {
        attempt,
        leased_until,
    };
    let (attempts, state) = match s {
        Start::PendingDue => (0, S::Pending { due: NOW - secs(1) }),
        Start::PendingDueNow => (0, S::Pending { due: NOW }),
        Start::PendingNotDue => (
            0,
            S::Pending {
                due: NOW + secs(10),
            },
        ),
        Start::InFlightFirst => (0, in_flight(1, NOW + secs(20))),
        Start::InFlightLive => (1, in_flight(2, NOW + secs(20))),
        Start::InFlightExpired => (1, in_flight(2, NOW - secs(1))),
        Start::InFlightExpiresNow => (1, in_flight(2, NOW)),
        Start::InFlightLast => (2, in_flight(3, NOW + secs(20))),
        Start::RetryDue => (1, S::RetryScheduled { at: NOW - secs(1) }),
        Start::RetryNotDue => (1, S::RetryScheduled { at: NOW + secs(10) }),
        Start::Delivered => (1, S::Delivered { at: NOW - secs(60) }),
        Start::Exhausted => (3, S::Exhausted { at: NOW - secs(60) }),
        Start::Cancelled => (
            1,
            S::Cancelled {
                at: NOW - secs(60),
                reason: CancelReason::TargetDisabled,
            },
        ),
    };
    // Every start but the first claim's has been requeued once before, after four attempts:
    // the attempts made run ahead of the budget's count.
    let attempts_made = if matches!(s, Start::PendingDue | Start::PendingDueNow) {
        0
    } else {
        attempts + 4
    };
    Delivery::restore(
        delivery_id(),
        event_id(),
        webhook_id(),
        FIRST_DUE,
        attempts,
        attempts_made,
        state,
    )
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Claim,
    Attempt(AttemptDetail),
    Release,
    Cancel,
    Requeue,
}

/// What a transition should come to: the new state, the attempts count and the decision (only
/// `on_attempt` makes one), or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok(DeliveryState, u32, Option<Decision>),
    NotAllowed,
    NotDue(OffsetDateTime),
}

fn check(from: Start, action: Action, expected: Expect) {
    let before = start(from);
    let policy = RetryPolicy::identus();
    let result = match action {
        Action::Claim => before.claim(NOW, LEASE).map(|d| (d, None)),
        Action::Attempt(outcome) => before
            .on_attempt(&outcome.outcome(), &policy, NOW, Jitter::MAX)
            .map(|(d, decision)| (d, Some(decision))),
        Action::Release => before.release(NOW).map(|d| (d, None)),
        Action::Cancel => before
            .cancel(CancelReason::TargetDeleted, NOW)
            .map(|d| (d, None)),
        Action::Requeue => before.requeue(NOW).map(|d| (d, None)),
    };
    let got = match &result {
        Ok((after, decision)) => Expect::Ok(after.state(), after.attempts(), *decision),
        Err(TransitionError::NotAllowed { id, state, .. }) => {
            assert_eq!((*id, *state), (before.id(), before.state().kind()));
            Expect::NotAllowed
        }
        Err(TransitionError::NotDue { id, due }) => {
            assert_eq!(*id, before.id());
            Expect::NotDue(*due)
        }
    };
    assert_eq!(got, expected, "{from:?} --{action:?}-->");
    if let Ok((after, _)) = result {
        assert_eq!(
            (after.id(), after.event_id(), after.webhook_id()),
            (before.id(), before.event_id(), before.webhook_id()),
            "identity changed: {from:?} --{action:?}-->"
        );
        let first_due = if matches!(action, Action::Requeue) {
            NOW
        } else {
            FIRST_DUE
        };
        assert_eq!(after.first_due(), first_due, "{from:?} --{action:?}-->");
        // Only an outcome counts an attempt made, and nothing, a requeue included, uncounts one.
        let made = before.attempts_made() + u32::from(matches!(action, Action::Attempt(_)));
        assert_eq!(after.attempts_made(), made, "{from:?} --{action:?}-->");
    }
}

fn ok(state: DeliveryState, attempts: u32) -> Expect {
    Expect::Ok(state, attempts, None)
}

fn response(status: u16, retry_after: Option<u64>) -> AttemptDetail {
    AttemptDetail::Response {
        status,
        retry_after: retry_after.map(Duration::from_secs),
    }
}

/// How the Identus policy treats an outcome when attempts remain.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Delivered,
    RetryIn(i64),
    Gone,
    GiveUp,
}

const HOUR: u64 = 3600;

/// Every kind of outcome and what it leads to before the last attempt.
fn outcomes() -> Vec<(AttemptDetail, Verdict)> {
    use Verdict::*;
    vec![
        (response(200, None), Delivered),
        (response(204, None), Delivered),
        (response(299, None), Delivered),
        (response(200, Some(60)), Delivered),
        (response(100, None), RetryIn(5)),
        (response(199, None), RetryIn(5)),
        (response(300, None), RetryIn(5)),
        (response(301, None), RetryIn(5)),
        (response(400, None), RetryIn(5)),
        (response(404, None), RetryIn(5)),
        (response(410, None), Gone),
        (response(410, Some(60)), Gone),
        (response(429, None), RetryIn(5)),
        (response(429, Some(60)), RetryIn(60)),
        // Retry-After never brings an attempt forward.
        (response(429, Some(1)), RetryIn(5)),
        (response(429, Some(0)), RetryIn(5)),
        (response(500, None), RetryIn(5)),
        // Retry-After is only honoured on 429 and 503.
        (response(500, Some(60)), RetryIn(5)),
        (response(502, Some(60)), RetryIn(5)),
        (response(503, None), RetryIn(5)),
        (response(503, Some(120)), RetryIn(120)),
        (response(503, Some(HOUR)), RetryIn(3600)),
        // Beyond MAX_RETRY_AFTER (1 hour) is bounded to it.
        (response(503, Some(2 * HOUR)), RetryIn(3600)),
        (response(429, Some(u64::MAX)), RetryIn(3600)),
        (response(599, None), RetryIn(5)),
        (AttemptDetail::Timeout, RetryIn(5)),
        (AttemptDetail::ConnectionFailed, RetryIn(5)),
        (AttemptDetail::TlsFailed, RetryIn(5)),
        (AttemptDetail::ResponseTooLarge, RetryIn(5)),
        (AttemptDetail::AddressRefused, GiveUp),
    ]
}

/// The expected result of `verdict` on the attempt that brings the count to `attempts`,
/// `last` when the Identus policy has no attempt left after it.
fn after_attempt(verdict: Verdict, attempts: u32, last: bool) -> Expect {
    use DeliveryState as S;
    let (state, decision) = match verdict {
        Verdict::Delivered => (S::Delivered { at: NOW }, Decision::Delivered),
        Verdict::Gone => (
            S::Cancelled {
                at: NOW,
                reason: CancelReason::TargetGone,
            },
            Decision::DisableTarget,
        ),
        Verdict::GiveUp => (S::Exhausted { at: NOW }, Decision::Exhausted),
        Verdict::RetryIn(_) if last => (S::Exhausted { at: NOW }, Decision::Exhausted),
        Verdict::RetryIn(s) => (
            S::RetryScheduled { at: NOW + secs(s) },
            Decision::RetryAt(NOW + secs(s)),
        ),
    };
    Expect::Ok(state, attempts, Some(decision))
}

#[test]
fn max_retry_after_is_one_hour() {
    assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(HOUR));
}

#[test]
fn claim() {
    use DeliveryState as S;
    let leased = |attempt| {
        ok(
            S::InFlight {
                attempt,
                leased_until: LEASE,
            },
            attempt - 1,
        )
    };
    let rows = [
        (Start::PendingDue, leased(1)),
        (Start::PendingDueNow, leased(1)),
        (Start::PendingNotDue, Expect::NotDue(NOW + secs(10))),
        (Start::InFlightFirst, Expect::NotAllowed),
        (Start::InFlightLive, Expect::NotAllowed),
        (Start::InFlightLast, Expect::NotAllowed),
        // An expired lease means the holder is gone; its attempt was never recorded.
        (Start::InFlightExpired, leased(2)),
        (Start::InFlightExpiresNow, leased(2)),
        (Start::RetryDue, leased(2)),
        (Start::RetryNotDue, Expect::NotDue(NOW + secs(10))),
        (Start::Delivered, Expect::NotAllowed),
        (Start::Exhausted, Expect::NotAllowed),
        (Start::Cancelled, Expect::NotAllowed),
    ];
    assert_eq!(rows.len(), ALL_STARTS.len());
    for (from, expected) in rows {
        check(from, Action::Claim, expected);
    }
}

#[test]
fn on_attempt_in_flight_before_the_last_attempt() {
    for (outcome, verdict) in outcomes() {
        check(
            Start::InFlightFirst,
            Action::Attempt(outcome),
            after_attempt(verdict, 1, false),
        );
        for from in [
            Start::InFlightLive,
            Start::InFlightExpired,
            Start::InFlightExpiresNow,
        ] {
            check(
                from,
                Action::Attempt(outcome),
                after_attempt(verdict, 2, false),
            );
        }
    }
}

#[test]
fn on_attempt_at_the_last_attempt_gives_up_on_any_failure() {
    for (outcome, verdict) in outcomes() {
        check(
            Start::InFlightLast,
            Action::Attempt(outcome),
            after_attempt(verdict, 3, true),
        );
    }
}

#[test]
fn on_attempt_is_refused_unless_in_flight() {
    let not_in_flight = [
        Start::PendingDue,
        Start::PendingDueNow,
        Start::PendingNotDue,
        Start::RetryDue,
        Start::RetryNotDue,
        Start::Delivered,
        Start::Exhausted,
        Start::Cancelled,
    ];
    for from in not_in_flight {
        for (outcome, _) in outcomes() {
            check(from, Action::Attempt(outcome), Expect::NotAllowed);
        }
    }
}

#[test]
fn identus_policy_retries_after_five_seconds_and_gives_up_at_the_third_attempt() {
    let e500 = Action::Attempt(response(500, None));
    check(
        Start::InFlightFirst,
        e500,
        Expect::Ok(
            DeliveryState::RetryScheduled { at: NOW + secs(5) },
            1,
            Some(Decision::RetryAt(NOW + secs(5))),
        ),
    );
    check(
        Start::InFlightLast,
        e500,
        Expect::Ok(
            DeliveryState::Exhausted { at: NOW },
            3,
            Some(Decision::Exhausted),
        ),
    );
}

#[test]
fn release() {
    use DeliveryState as S;
    let rows = [
        (Start::PendingDue, Expect::NotAllowed),
        (Start::PendingDueNow, Expect::NotAllowed),
        (Start::PendingNotDue, Expect::NotAllowed),
        // Nothing recorded yet: back to pending. Otherwise: a retry due at once.
        (Start::InFlightFirst, ok(S::Pending { due: NOW }, 0)),
        (Start::InFlightLive, ok(S::RetryScheduled { at: NOW }, 1)),
        (Start::InFlightExpired, ok(S::RetryScheduled { at: NOW }, 1)),
        (
            Start::InFlightExpiresNow,
            ok(S::RetryScheduled { at: NOW }, 1),
        ),
        (Start::InFlightLast, ok(S::RetryScheduled { at: NOW }, 2)),
        (Start::RetryDue, Expect::NotAllowed),
        (Start::RetryNotDue, Expect::NotAllowed),
        (Start::Delivered, Expect::NotAllowed),
        (Start::Exhausted, Expect::NotAllowed),
        (Start::Cancelled, Expect::NotAllowed),
    ];
    assert_eq!(rows.len(), ALL_STARTS.len());
    for (from, expected) in rows {
        check(from, Action::Release, expected);
    }
}

#[test]
fn cancel() {
    let cancelled = |attempts| {
        ok(
            DeliveryState::Cancelled {
                at: NOW,
                reason: CancelReason::TargetDeleted,
            },
            attempts,
        )
    };
    let rows = [
        (Start::PendingDue, cancelled(0)),
        (Start::PendingDueNow, cancelled(0)),
        (Start::PendingNotDue, cancelled(0)),
        (Start::InFlightFirst, cancelled(0)),
        (Start::InFlightLive, cancelled(1)),
        (Start::InFlightExpired, cancelled(1)),
        (Start::InFlightExpiresNow, cancelled(1)),
        (Start::InFlightLast, cancelled(2)),
        (Start::RetryDue, cancelled(1)),
        (Start::RetryNotDue, cancelled(1)),
        (Start::Delivered, Expect::NotAllowed),
        (Start::Exhausted, Expect::NotAllowed),
        (Start::Cancelled, Expect::NotAllowed),
    ];
    assert_eq!(rows.len(), ALL_STARTS.len());
    for (from, expected) in rows {
        check(from, Action::Cancel, expected);
    }
}

#[test]
fn requeue() {
    let fresh = ok(DeliveryState::Pending { due: NOW }, 0);
    for from in ALL_STARTS {
        let expected = match from {
            Start::Exhausted | Start::Cancelled => fresh,
            _ => Expect::NotAllowed,
        };
        check(from, Action::Requeue, expected);
    }
}

#[test]
fn an_identus_delivery_from_first_claim_to_exhaustion_and_back() {
    let policy = RetryPolicy::identus();
    let e500 = response(500, None);
    let mut d = Delivery::new(delivery_id(), event_id(), webhook_id(), NOW);
    assert_eq!(d.state(), DeliveryState::Pending { due: NOW });
    assert_eq!((d.attempts(), d.first_due()), (0, NOW));
    let mut now = NOW;
    let mut decisions = Vec::new();
    for attempt in 1..=3 {
        d = d.claim(now, now + secs(30)).unwrap();
        assert_eq!(
            d.state(),
            DeliveryState::InFlight {
                attempt,
                leased_until: now + secs(30)
            }
        );
        now += secs(1);
        let (next, decision) = d
            .on_attempt(&e500.outcome(), &policy, now, Jitter::MAX)
            .unwrap();
        decisions.push(decision);
        d = next;
        assert_eq!(d.attempts(), attempt);
        if let Decision::RetryAt(at) = decision {
            assert!(matches!(
                d.claim(at - secs(1), at),
                Err(TransitionError::NotDue { .. })
            ));
            now = at;
        }
    }
    assert_eq!(
        decisions,
        [
            Decision::RetryAt(NOW + secs(6)),
            Decision::RetryAt(NOW + secs(12)),
            Decision::Exhausted
        ]
    );
    assert_eq!(d.state(), DeliveryState::Exhausted { at: NOW + secs(13) });
    // A manual redelivery starts over with a fresh budget.
    let later = NOW + secs(3600);
    let again = d.requeue(later).unwrap();
    assert_eq!((again.attempts(), again.first_due()), (0, later));
    let again = again.claim(later, later + secs(30)).unwrap();
    let (again, decision) = again
        .on_attempt(&e500.outcome(), &policy, later, Jitter::MAX)
        .unwrap();
    assert_eq!(
        (again.attempts(), decision),
        (1, Decision::RetryAt(later + secs(5)))
    );
    // The log's numbering does not start over: this was the fourth attempt made.
    assert_eq!(again.attempts_made(), 4);
}
