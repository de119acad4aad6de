//! How many attempts one target may have in flight, adapted to what it sustains: the limit
//! grows while the target answers healthily at its limit and shrinks by half when it shows
//! strain, between a configured floor and ceiling. A slow but healthy receiver is then sent as
//! much as it takes, and a struggling one fewer attempts than a fixed limit would send it.
//!
//! The rule is additive increase, multiplicative decrease, with a slow start:
//! - until the first sign of strain, each healthy answer to an attempt that was in flight while
//!   the target used its whole limit raises the limit by [`SLOW_START_STEP`]: the limit grows
//!   [`SLOW_START_STEP`]` + 1` times per round trip, so a receiver that takes seconds per
//!   request still reaches a high limit within a few of them;
//! - after that, each such answer adds 1/limit (one more per round trip), and only while the
//!   answer's latency holds: one much slower than the target's usual ones
//!   ([`LATENCY_TOLERANCE`]) raises nothing;
//! - an outcome that counts against the target ([`AttemptOutcome::counts_against_target`]:
//!   no answer, a 5xx, a 429) halves the limit, once per round trip: the attempts already in
//!   flight started under the old limit, and their failures say nothing new;
//! - a rejection is a healthy answer; a policy refusal and a gone target say nothing of the
//!   target's capacity and change nothing.
//!
//! "Used its whole limit" is remembered as the last time the target's attempts in flight
//! reached the limit ([`AdaptiveLimit::on_start`]): answers that come back together, as those
//! of one round trip do, all count, although each frees a slot before the next arrives. A
//! target that never fills its limit never raises it, so the limit cannot run far ahead of
//! what the target was shown to take.
//!
//! No I/O and no clock: the dispatcher passes each attempt's latency and the time it ended.

use std::time::Duration;

use thiserror::Error;
use time::OffsetDateTime;

use crate::AttemptOutcome;

/// How much slower than the target's usual answers an answer may be and still count as
/// holding up: at most this many times its baseline latency.
pub const LATENCY_TOLERANCE: u32 = 2;

/// How much each healthy answer at the limit raises it during the slow start: the limit is
/// multiplied by this plus one per round trip.
pub const SLOW_START_STEP: u32 = 7;

/// The share of the way (1/this) the baseline latency moves toward a slower answer: it follows
/// a target that became slow for good within a few dozen answers, not at a single slow one.
const BASELINE_DRIFT: u32 = 16;

/// The bounds of a target's in-flight limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLimits {
    floor: u32,
    initial: u32,
    ceiling: u32,
}

/// Bounds that make no limit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConcurrencyLimitsError {
    #[error("the floor of the in-flight limit must be at least 1, got 0")]
    ZeroFloor,
    #[error("the in-flight limit's floor ({floor}) is above its ceiling ({ceiling})")]
    FloorAboveCeiling { floor: u32, ceiling: u32 },
}

impl ConcurrencyLimits {
    /// A limit that starts at `initial` (brought within the bounds) and moves between `floor`
    /// and `ceiling`. `floor == ceiling` makes a fixed limit.
    ///
    /// # Errors
    /// When `floor` is 0 or above `ceiling`.
    pub fn new(floor: u32, initial: u32, ceiling: u32) -> Result<Self, ConcurrencyLimitsError> {
        if floor == 0 {
            return Err(ConcurrencyLimitsError::ZeroFloor);
        }
        if floor > ceiling {
            return Err(ConcurrencyLimitsError::FloorAboveCeiling { floor, ceiling });
        }
        Ok(Self {
            floor,
            initial: initial.clamp(floor, ceiling),
            ceiling,
        })
    }

    /// A fixed limit of `limit` (at least 1).
    pub fn fixed(limit: u32) -> Self {
        let limit = limit.max(1);
        Self {
            floor: limit,
            initial: limit,
            ceiling: limit,
        }
    }

    pub fn floor(&self) -> u32 {
        self.floor
    }

    pub fn initial(&self) -> u32 {
        self.initial
    }

    pub fn ceiling(&self) -> u32 {
        self.ceiling
    }
}

/// One target's in-flight limit and what it has learnt of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveLimit {
    limits: ConcurrencyLimits,
    limit: u32,
    /// Healthy answers counted toward the next +1 after the slow start.
    credit: u32,
    /// Growing by one per healthy answer, until the first sign of strain.
    slow_start: bool,
    /// When the limit was last halved: the next halving waits one round trip.
    last_decrease: Option<OffsetDateTime>,
    /// When the target last had as many attempts in flight as its limit.
    last_full: Option<OffsetDateTime>,
    /// The target's usual latency: the fastest healthy answer, drifting toward slower ones.
    baseline: Option<Duration>,
}

impl AdaptiveLimit {
    /// A target not heard from yet: at the initial limit, in slow start.
    pub fn new(limits: ConcurrencyLimits) -> Self {
        Self {
            limits,
            limit: limits.initial,
            credit: 0,
            slow_start: true,
            last_decrease: None,
            last_full: None,
            baseline: None,
        }
    }

    /// How many attempts the target may have in flight now.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn limits(&self) -> ConcurrencyLimits {
        self.limits
    }

    /// Whether it behaves as a target not heard from does: at the initial limit, still in
    /// slow start. (The latency baseline alone is no reason to remember a target: a fresh one
    /// learns it from its first answer.)
    pub fn is_fresh(&self) -> bool {
        self.limit == self.limits.initial && self.slow_start && self.last_decrease.is_none()
    }

    /// Notes that an attempt started at `now`, leaving `in_flight` attempts of the target in
    /// flight (this one among them).
    pub fn on_start(&self, in_flight: u32, now: OffsetDateTime) -> AdaptiveLimit {
        if in_flight < self.limit || self.limits.floor == self.limits.ceiling {
            return *self;
        }
        AdaptiveLimit {
            last_full: Some(now),
            ..*self
        }
    }

    /// Learns from an attempt that ended at `now` after `latency`.
    pub fn on_attempt(
        &self,
        outcome: &AttemptOutcome,
        latency: Duration,
        now: OffsetDateTime,
    ) -> AdaptiveLimit {
        if self.limits.floor == self.limits.ceiling {
            // A fixed limit: nothing to learn.
            return *self;
        }
        if outcome.counts_against_target() {
            self.on_strain(latency, now)
        } else if matches!(
            outcome,
            AttemptOutcome::Delivered | AttemptOutcome::Rejected
        ) {
            let started = started_at(now, latency);
            self.on_healthy(latency, self.last_full.is_some_and(|at| at >= started))
        } else {
            *self
        }
    }

    fn on_strain(&self, latency: Duration, now: OffsetDateTime) -> AdaptiveLimit {
        let within_round_trip = self
            .last_decrease
            .is_some_and(|at| now < crate::add_saturating(at, latency));
        if within_round_trip {
            return AdaptiveLimit {
                slow_start: false,
                ..*self
            };
        }
        AdaptiveLimit {
            limit: (self.limit / 2).max(self.limits.floor),
            credit: 0,
            slow_start: false,
            last_decrease: Some(now),
            ..*self
        }
    }

    /// `at_limit`: the target used its whole limit while the attempt was in flight.
    fn on_healthy(&self, latency: Duration, at_limit: bool) -> AdaptiveLimit {
        let baseline = match self.baseline {
            None => latency,
            Some(b) if latency <= b => latency,
            Some(b) => b + (latency - b) / BASELINE_DRIFT,
        };
        let holding = self
            .baseline
            .is_none_or(|b| latency <= b.saturating_mul(LATENCY_TOLERANCE));
        let mut next = AdaptiveLimit {
            baseline: Some(baseline),
            ..*self
        };
        // Only a target that used its whole limit showed that it takes that much.
        if !holding || !at_limit || self.limit >= self.limits.ceiling {
            return next;
        }
        if self.slow_start {
            next.limit = self.limit.saturating_add(SLOW_START_STEP);
        } else {
            next.credit = self.credit + 1;
            if next.credit >= self.limit {
                next.credit = 0;
                next.limit = self.limit + 1;
            }
        }
        next.limit = next.limit.min(self.limits.ceiling);
        next
    }
}

/// When an attempt that ended at `now` after `latency` started (the earliest time there is,
/// for a latency no clock could have measured).
fn started_at(now: OffsetDateTime, latency: Duration) -> OffsetDateTime {
    time::Duration::try_from(latency)
        .ok()
        .and_then(|d| now.checked_sub(d))
        .unwrap_or(time::PrimitiveDateTime::MIN.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);
    const MS: Duration = Duration::from_millis(1);

    fn limits(floor: u32, initial: u32, ceiling: u32) -> ConcurrencyLimits {
        ConcurrencyLimits::new(floor, initial, ceiling).unwrap()
    }

    fn at(ms: i64) -> OffsetDateTime {
        T0 + time::Duration::milliseconds(ms)
    }

    const OK: AttemptOutcome = AttemptOutcome::Delivered;
    const STRAIN: AttemptOutcome = AttemptOutcome::RetryLater { not_before: None };

    #[test]
    fn bounds_are_checked_and_the_start_kept_within_them() {
        assert_eq!(
            ConcurrencyLimits::new(0, 4, 8),
            Err(ConcurrencyLimitsError::ZeroFloor)
        );
        assert_eq!(
            ConcurrencyLimits::new(9, 4, 8),
            Err(ConcurrencyLimitsError::FloorAboveCeiling {
                floor: 9,
                ceiling: 8
            })
        );
        assert_eq!(limits(2, 100, 8).initial(), 8);
        assert_eq!(limits(2, 1, 8).initial(), 2);
        assert_eq!(AdaptiveLimit::new(limits(1, 16, 256)).limit(), 16);
        let fixed = ConcurrencyLimits::fixed(0);
        assert_eq!((fixed.floor(), fixed.ceiling()), (1, 1));
    }

    /// `n` attempts started together at `start` (the last one filling the limit when `n` is
    /// the limit), then answered with `outcome` after `latency` each.
    fn round_trip(
        mut l: AdaptiveLimit,
        n: u32,
        outcome: &AttemptOutcome,
        latency: Duration,
        start: i64,
    ) -> AdaptiveLimit {
        for i in 1..=n {
            l = l.on_start(i, at(start));
        }
        let end = at(start) + latency;
        for _ in 0..n {
            l = l.on_attempt(outcome, latency, end);
        }
        l
    }

    #[test]
    fn slow_start_multiplies_the_limit_per_round_trip_of_a_target_at_its_limit() {
        let grown = 1 + SLOW_START_STEP;
        let l = AdaptiveLimit::new(limits(1, 4, 10_000));
        // One round trip: each of the 4 in flight answers healthily; the answers come back
        // together, each freeing its slot, and all count.
        let l = round_trip(l, 4, &OK, 2_000 * MS, 0);
        assert_eq!(l.limit(), 4 * grown);
        let l = round_trip(l, l.limit(), &OK, 2_000 * MS, 2_000);
        assert_eq!(l.limit(), 4 * grown * grown);
    }

    #[test]
    fn a_target_that_never_fills_its_limit_does_not_raise_it() {
        let l = AdaptiveLimit::new(limits(1, 4, 64));
        let after = round_trip(l, 3, &OK, 100 * MS, 0);
        assert_eq!(after.limit(), 4);
        // Filled once, but before this attempt started: it says nothing of this round trip.
        let filled_earlier = l.on_start(4, at(0));
        let after = filled_earlier.on_attempt(&OK, 100 * MS, at(1_000));
        assert_eq!(after.limit(), 4);
    }

    #[test]
    fn strain_halves_the_limit_once_per_round_trip_and_ends_the_slow_start() {
        let l = AdaptiveLimit::new(limits(1, 16, 64));
        let once = l.on_attempt(&STRAIN, 500 * MS, at(1_000));
        assert_eq!(once.limit(), 8);
        // The other attempts in flight fail within the same round trip: no further halving.
        let same_trip = once.on_attempt(&STRAIN, 500 * MS, at(1_200));
        assert_eq!(same_trip.limit(), 8);
        // A round trip later, strain halves again.
        let later = same_trip.on_attempt(&STRAIN, 500 * MS, at(1_600));
        assert_eq!(later.limit(), 4);
        // After the slow start, growth is one per round trip: 4 healthy answers at 4 make 5.
        let grow = round_trip(later, 4, &OK, 500 * MS, 3_000);
        assert_eq!(grow.limit(), 5);
    }

    #[test]
    fn the_floor_and_ceiling_hold() {
        let mut l = AdaptiveLimit::new(limits(3, 4, 6));
        for i in 0..10 {
            l = l.on_attempt(&STRAIN, MS, at(i * 1_000));
        }
        assert_eq!(l.limit(), 3);
        for i in 0..100 {
            l = round_trip(l, l.limit(), &OK, MS, 20_000 + i);
        }
        assert_eq!(l.limit(), 6);
    }

    #[test]
    fn what_says_nothing_of_capacity_changes_nothing_and_a_rejection_is_healthy() {
        let l = AdaptiveLimit::new(limits(1, 4, 64));
        for quiet in [AttemptOutcome::Gone, AttemptOutcome::RefusedByPolicy] {
            assert_eq!(l.on_attempt(&quiet, MS, at(0)), l, "{quiet:?}");
        }
        let full = l.on_start(4, at(0));
        let rejected = full.on_attempt(&AttemptOutcome::Rejected, MS, at(1));
        assert_eq!(rejected.limit(), 4 + SLOW_START_STEP);
    }

    #[test]
    fn a_much_slower_answer_raises_nothing_but_a_lasting_slowness_becomes_the_baseline() {
        let mut l = AdaptiveLimit::new(limits(1, 4, 1_000));
        l = l.on_attempt(&STRAIN, 10 * MS, at(0)); // out of slow start, at 2
        l = round_trip(l, l.limit(), &OK, 10 * MS, 100);
        let before = l.limit();
        // Ten times the usual latency: healthy, but not holding up.
        let slow = round_trip(l, l.limit(), &OK, 100 * MS, 200);
        assert_eq!(slow.limit(), before);
        // A target that stays slow: after a few dozen answers it is its usual speed.
        let mut steady = slow;
        for i in 0..200 {
            steady = round_trip(steady, steady.limit(), &OK, 100 * MS, 400 + 100 * i);
        }
        assert!(steady.limit() > before, "{steady:?}");
    }

    #[test]
    fn a_limit_back_where_it_started_after_strain_is_not_fresh_but_one_with_only_a_baseline_is() {
        let l = AdaptiveLimit::new(limits(1, 4, 64));
        assert!(l.is_fresh());
        assert!(l.on_attempt(&OK, MS, at(0)).is_fresh());
        let strained = l.on_attempt(&STRAIN, MS, at(0));
        assert!(!strained.is_fresh());
        let mut back = strained;
        for i in 0..100 {
            back = round_trip(back, back.limit(), &OK, MS, 10 + i);
            if back.limit() == 4 {
                break;
            }
        }
        assert_eq!(back.limit(), 4);
        assert!(!back.is_fresh(), "out of slow start for good");
    }

    #[test]
    fn a_fixed_limit_never_moves() {
        let mut l = AdaptiveLimit::new(ConcurrencyLimits::fixed(16));
        for i in 0..50 {
            let outcome = if i % 3 == 0 { STRAIN } else { OK };
            l = l.on_start(16, at(i * 1_000));
            l = l.on_attempt(&outcome, MS, at(i * 1_000 + 1));
            assert_eq!(l.limit(), 16);
            assert!(l.is_fresh());
        }
    }
}
