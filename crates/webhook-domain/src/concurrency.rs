//! How many attempts one target may have in flight, adapted to what it sustains: the limit
//! grows while the target answers healthily at its limit and shrinks by half when it shows
//! strain, between a configured floor and ceiling. A slow but healthy receiver is then sent as
//! much as it takes, and a struggling one fewer attempts than a fixed limit would send it.
//!
//! The rule is additive increase, multiplicative decrease, with a slow start:
//! - until the first sign of strain, each healthy answer at the limit raises it by one (the
//!   limit doubles per round trip);
//! - after that, each healthy answer at the limit adds 1/limit (one more per round trip), and
//!   only while the answer's latency holds: one much slower than the target's usual ones
//!   ([`LATENCY_TOLERANCE`]) raises nothing;
//! - an outcome that counts against the target ([`AttemptOutcome::counts_against_target`]:
//!   no answer, a 5xx, a 429) halves the limit, once per round trip: the attempts already in
//!   flight started under the old limit, and their failures say nothing new;
//! - a rejection is a healthy answer; a policy refusal and a gone target say nothing of the
//!   target's capacity and change nothing.
//!
//! No I/O and no clock: the dispatcher passes each attempt's latency and the time it ended.

use std::time::Duration;

use thiserror::Error;
use time::OffsetDateTime;

use crate::AttemptOutcome;

/// How much slower than the target's usual answers an answer may be and still count as
/// holding up: at most this many times its baseline latency.
pub const LATENCY_TOLERANCE: u32 = 2;

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

    /// Learns from an attempt that ended at `now` after `latency`, while `in_flight` attempts
    /// of the target (this one among them) were in flight.
    pub fn on_attempt(
        &self,
        outcome: &AttemptOutcome,
        latency: Duration,
        in_flight: u32,
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
            self.on_healthy(latency, in_flight)
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

    fn on_healthy(&self, latency: Duration, in_flight: u32) -> AdaptiveLimit {
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
        if !holding || in_flight < self.limit || self.limit >= self.limits.ceiling {
            return next;
        }
        if self.slow_start {
            next.limit = self.limit + 1;
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

    #[test]
    fn slow_start_doubles_the_limit_per_round_trip_of_a_target_at_its_limit() {
        let mut l = AdaptiveLimit::new(limits(1, 4, 64));
        // One round trip: each of the 4 in flight answers healthily, at the limit.
        for _ in 0..4 {
            l = l.on_attempt(&OK, 100 * MS, l.limit(), at(100));
        }
        assert_eq!(l.limit(), 8);
        for _ in 0..8 {
            l = l.on_attempt(&OK, 100 * MS, l.limit(), at(200));
        }
        assert_eq!(l.limit(), 16);
    }

    #[test]
    fn a_target_below_its_limit_does_not_raise_it() {
        let l = AdaptiveLimit::new(limits(1, 4, 64));
        let after = l.on_attempt(&OK, 100 * MS, 2, at(100));
        assert_eq!(after.limit(), 4);
    }

    #[test]
    fn strain_halves_the_limit_once_per_round_trip_and_ends_the_slow_start() {
        let l = AdaptiveLimit::new(limits(1, 16, 64));
        let once = l.on_attempt(&STRAIN, 500 * MS, 16, at(1_000));
        assert_eq!(once.limit(), 8);
        // The other attempts in flight fail within the same round trip: no further halving.
        let same_trip = once.on_attempt(&STRAIN, 500 * MS, 8, at(1_200));
        assert_eq!(same_trip.limit(), 8);
        // A round trip later, strain halves again.
        let later = same_trip.on_attempt(&STRAIN, 500 * MS, 8, at(1_600));
        assert_eq!(later.limit(), 4);
        // After the slow start, growth is one per round trip: 4 healthy answers at 4 make 5.
        let mut grow = later;
        for _ in 0..4 {
            grow = grow.on_attempt(&OK, 500 * MS, grow.limit(), at(3_000));
        }
        assert_eq!(grow.limit(), 5);
    }

    #[test]
    fn the_floor_and_ceiling_hold() {
        let mut l = AdaptiveLimit::new(limits(3, 4, 6));
        for i in 0..10 {
            l = l.on_attempt(&STRAIN, MS, l.limit(), at(i * 1_000));
        }
        assert_eq!(l.limit(), 3);
        for _ in 0..100 {
            l = l.on_attempt(&OK, MS, l.limit(), at(20_000));
        }
        assert_eq!(l.limit(), 6);
    }

    #[test]
    fn what_says_nothing_of_capacity_changes_nothing_and_a_rejection_is_healthy() {
        let l = AdaptiveLimit::new(limits(1, 4, 64));
        for quiet in [AttemptOutcome::Gone, AttemptOutcome::RefusedByPolicy] {
            assert_eq!(l.on_attempt(&quiet, MS, 4, at(0)), l, "{quiet:?}");
        }
        let rejected = l.on_attempt(&AttemptOutcome::Rejected, MS, 4, at(0));
        assert_eq!(rejected.limit(), 5);
    }

    #[test]
    fn a_much_slower_answer_raises_nothing_but_a_lasting_slowness_becomes_the_baseline() {
        let mut l = AdaptiveLimit::new(limits(1, 4, 1_000));
        l = l.on_attempt(&STRAIN, 10 * MS, 4, at(0)); // out of slow start, at 2
        l = l.on_attempt(&OK, 10 * MS, l.limit(), at(100));
        let before = l.limit();
        // Ten times the usual latency: healthy, but not holding up.
        let slow = l.on_attempt(&OK, 100 * MS, l.limit(), at(200));
        assert_eq!(slow.limit(), before);
        // A target that stays slow: after a few dozen answers it is its usual speed.
        let mut steady = slow;
        for i in 0..200 {
            steady = steady.on_attempt(&OK, 100 * MS, steady.limit(), at(300 + i));
        }
        assert!(steady.limit() > before, "{steady:?}");
    }

    #[test]
    fn a_limit_back_where_it_started_after_strain_is_not_fresh_but_one_with_only_a_baseline_is() {
        let l = AdaptiveLimit::new(limits(1, 4, 64));
        assert!(l.is_fresh());
        assert!(l.on_attempt(&OK, MS, 1, at(0)).is_fresh());
        let strained = l.on_attempt(&STRAIN, MS, 4, at(0));
        assert!(!strained.is_fresh());
        let mut back = strained;
        for i in 0..100 {
            back = back.on_attempt(&OK, MS, back.limit(), at(10 + i));
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
            l = l.on_attempt(&outcome, MS, 16, at(i * 1_000));
            assert_eq!(l.limit(), 16);
            assert!(l.is_fresh());
        }
    }
}
