//! Per-target admission: which claimed deliveries may start now, which wait for a slot of
//! their target, and which go back to storage because their target's circuit is open. No I/O
//! and no clock reads: the dispatcher passes `now` and acts on the answers.
//!
//! A target holds at most its in-flight limit of attempts, which adapts to what it sustains
//! ([`AdaptiveLimit`]: it grows while the target answers healthily at its limit, halves on
//! strain, between the configured floor and ceiling), and a target with a rate limit of *r*
//! per second starts at most one attempt every 1/*r* seconds. Deliveries claimed beyond
//! that wait here (a busy target is skipped by claims once it holds twice its slots, so at most
//! that plus one claim's worth); the rest of its backlog stays in storage.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use time::OffsetDateTime;
use webhook_domain::{
    AdaptiveLimit, AttemptOutcome, CircuitBreaker, CircuitBreakerConfig, CircuitState,
    ConcurrencyLimits, Delivery, RateLimit, WebhookId,
};
use webhook_ports::ClaimedDelivery;

/// What to do with claimed deliveries.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    /// Attempt these now; each holds one slot until [`Slots::finished`].
    pub(crate) start: Vec<ClaimedDelivery>,
    /// Give these back to storage, due again at the given time (their target rests).
    pub(crate) release: Vec<(Delivery, OffsetDateTime)>,
}

#[derive(Debug)]
struct Target {
    in_flight: usize,
    /// How many may be in flight, as learnt from the target's answers.
    concurrency: AdaptiveLimit,
    breaker: CircuitBreaker,
    waiting: VecDeque<ClaimedDelivery>,
    /// The spacing of attempts under the target's rate limit, as last seen in a claim.
    spacing: Option<Duration>,
    /// When the rate limit lets the next attempt start.
    next_start: Option<OffsetDateTime>,
    /// When the last attempt finished.
    last_outcome_at: Option<OffsetDateTime>,
}

impl Target {
    fn limit(&self) -> usize {
        self.concurrency.limit() as usize
    }

    fn rate_limited_at(&self, now: OffsetDateTime) -> bool {
        self.next_start.is_some_and(|at| now < at)
    }

    /// Nothing in flight or waiting, a breaker with no failures counted, and no rate limit
    /// holding the next start back: a fresh entry would behave the same.
    fn is_idle(&self, now: OffsetDateTime) -> bool {
        self.in_flight == 0
            && self.waiting.is_empty()
            && !self.rate_limited_at(now)
            && self.concurrency.is_fresh()
            && self.breaker.state()
                == CircuitState::Closed {
                    consecutive_failures: 0,
                }
    }

    /// Nothing in flight or waiting, no rate limit holding the next start back, and a breaker
    /// that would treat the next attempt as a fresh one does, or that nothing else would
    /// settle:
    /// - a closed one with no failure counted;
    /// - an open breaker whose rest is over (it refuses nothing any more);
    /// - a half-open one with no probe in flight (it would refuse every attempt for ever);
    /// - a closed one whose last outcome is `rest` (the breaker's open period) old. Failures
    ///   further apart than that are no burst the breaker could spare the target: opened by
    ///   the last of them, it would have let the next through as a probe anyway. Failures that
    ///   come back within it (retries of a slowly failing target) still reach the threshold.
    ///
    /// A learnt in-flight limit is kept as long: a target busy again within it starts where
    /// it left off.
    fn forgettable(&self, now: OffsetDateTime, rest: Duration) -> bool {
        if self.in_flight > 0 || !self.waiting.is_empty() || self.rate_limited_at(now) {
            return false;
        }
        let quiet_for_rest = self
            .last_outcome_at
            .is_none_or(|at| now >= webhook_domain::add_saturating(at, rest));
        if !self.concurrency.is_fresh() && !quiet_for_rest {
            return false;
        }
        match self.breaker.state() {
            CircuitState::Closed {
                consecutive_failures: 0,
            } => true,
            CircuitState::Closed { .. } => quiet_for_rest,
            CircuitState::Open { until } => now >= until,
            CircuitState::HalfOpen { .. } => true,
        }
    }
}

/// The dispatcher's view of every target it has seen.
#[derive(Debug)]
pub(crate) struct Slots {
    concurrency: ConcurrencyLimits,
    breaker: CircuitBreakerConfig,
    targets: HashMap<WebhookId, Target>,
    /// Targets deleted or disabled, until when: what a claim under way brings of them is given
    /// back, never started.
    dropped: HashMap<WebhookId, OffsetDateTime>,
    /// A breaker changed in a way the metrics show since [`Slots::circuit_changes`].
    circuits_changed: bool,
    /// An in-flight limit changed since [`Slots::limit_changes`].
    limits_changed: bool,
    /// The most deliveries of one target that wait here for a slot beyond a slot-full: as
    /// many as one claim brings of a target.
    waiting_cap: usize,
}

/// Whether a breaker's change shows in the metrics: any change except a closed breaker's count
/// of failures (an open one's end counts, as a late failure moves it).
fn visible_change(before: CircuitState, after: CircuitState) -> bool {
    match (before, after) {
        (CircuitState::Closed { .. }, CircuitState::Closed { .. }) => false,
        _ => before != after,
    }
}

impl Slots {
    pub(crate) fn new(concurrency: ConcurrencyLimits, breaker: CircuitBreakerConfig) -> Self {
        Self {
            concurrency,
            breaker,
            targets: HashMap::new(),
            dropped: HashMap::new(),
            circuits_changed: false,
            limits_changed: false,
            waiting_cap: 2 * concurrency.initial() as usize,
        }
    }

    /// At most `cap` (at least 1) deliveries of one target wait beyond a slot-full; twice the
    /// initial limit unless set.
    pub(crate) fn waiting_at_most(self, cap: usize) -> Self {
        Self {
            waiting_cap: cap.max(1),
            ..self
        }
    }

    fn target(&mut self, id: WebhookId) -> &mut Target {
        let breaker = self.breaker;
        let concurrency = self.concurrency;
        self.targets.entry(id).or_insert_with(|| Target {
            in_flight: 0,
            concurrency: AdaptiveLimit::new(concurrency),
            breaker: CircuitBreaker::new(breaker),
            waiting: VecDeque::new(),
            spacing: None,
            next_start: None,
            last_outcome_at: None,
        })
    }

    /// Targets the next claim must skip: those with every slot taken and as many deliveries
    /// waiting,
    /// and those whose circuit refuses attempts at `now`.
    pub(crate) fn skip(&self, now: OffsetDateTime) -> Vec<WebhookId> {
        self.targets
            .iter()
            .filter(|(_, t)| self.skipped(t, now))
            .map(|(id, _)| *id)
            .collect()
    }

    fn skipped(&self, t: &Target, now: OffsetDateTime) -> bool {
        // Up to one slot-full (at most as much as one claim brings of a target) waits in
        // memory, so finished attempts are replaced without a round trip to storage, and a
        // target with a high limit does not hold in memory what other targets' claims need
        // room for.
        t.in_flight + t.waiting.len() >= t.limit() + t.limit().min(self.waiting_cap)
            || !t.breaker.try_acquire(now).1
            || (t.rate_limited_at(now) && !t.waiting.is_empty())
    }

    /// Whether every target holding deliveries here is skipped at `now` (and there is one): a
    /// claim then could only find other targets' work, after walking past the whole backlog of
    /// these in storage, so it is worth making on a wake-up or a poll, not on a completion.
    pub(crate) fn all_busy(&self, now: OffsetDateTime) -> bool {
        let mut holding = self
            .targets
            .values()
            .filter(|t| t.in_flight > 0 || !t.waiting.is_empty())
            .peekable();
        holding.peek().is_some() && holding.all(|t| self.skipped(t, now))
    }

    /// Attempts in flight, across targets.
    pub(crate) fn in_flight(&self) -> usize {
        self.targets.values().map(|t| t.in_flight).sum()
    }

    /// Deliveries held here waiting for a slot, across targets.
    pub(crate) fn waiting(&self) -> usize {
        self.targets.values().map(|t| t.waiting.len()).sum()
    }

    /// A target was deleted or disabled: nothing of it may start any more. Returns what waited
    /// here for a slot, to give back; attempts in flight end as they will. Until `until` (when
    /// every lease taken before the change has ended), deliveries of the target that a claim
    /// under way brings are given back too.
    pub(crate) fn drop_target(
        &mut self,
        target: WebhookId,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Vec<ClaimedDelivery> {
        self.dropped.retain(|_, end| *end > now);
        self.dropped.insert(target, until);
        let Some(entry) = self.targets.get_mut(&target) else {
            return Vec::new();
        };
        let waiting: Vec<ClaimedDelivery> = entry.waiting.drain(..).collect();
        if entry.is_idle(now) {
            self.targets.remove(&target);
        }
        waiting
    }

    fn is_dropped(&self, target: WebhookId, now: OffsetDateTime) -> bool {
        self.dropped.get(&target).is_some_and(|until| *until > now)
    }

    /// Sorts freshly claimed deliveries into start, wait and release.
    pub(crate) fn admit(&mut self, claimed: Vec<ClaimedDelivery>, now: OffsetDateTime) -> Admitted {
        let mut admitted = Admitted::default();
        for delivery in claimed {
            let id = delivery.webhook.id;
            if self.is_dropped(id, now) {
                admitted.release.push((delivery.delivery, now));
                continue;
            }
            let spacing = delivery.webhook.rate_limit.map(RateLimit::spacing);
            let target = self.target(id);
            target.spacing = spacing;
            if spacing.is_none() {
                target.next_start = None;
            }
            target.waiting.push_back(delivery);
            self.pump(id, now, &mut admitted);
        }
        admitted
    }

    /// Starts what rate limits now allow, for every target.
    pub(crate) fn pump_all(&mut self, now: OffsetDateTime) -> Admitted {
        let mut admitted = Admitted::default();
        let ids: Vec<WebhookId> = self.targets.keys().copied().collect();
        for id in ids {
            self.pump(id, now, &mut admitted);
        }
        admitted
    }

    /// The earliest time a rate limit lets a waiting delivery start, if one is held back.
    pub(crate) fn next_rate_start(&self) -> Option<OffsetDateTime> {
        self.targets
            .values()
            .filter(|t| !t.waiting.is_empty() && t.in_flight < t.limit())
            .filter_map(|t| t.next_start)
            .min()
    }

    /// Frees the slot of a finished attempt that took `latency`, feeds its outcome to the
    /// target's breaker and in-flight limit, and says what may start (or must go back) as a
    /// result.
    pub(crate) fn finished(
        &mut self,
        target: WebhookId,
        outcome: &AttemptOutcome,
        latency: Duration,
        now: OffsetDateTime,
    ) -> Admitted {
        let entry = self.target(target);
        let limit = entry.concurrency.limit();
        entry.concurrency = entry.concurrency.on_attempt(outcome, latency, now);
        let limit_changed = entry.concurrency.limit() != limit;
        entry.in_flight = entry.in_flight.saturating_sub(1);
        entry.last_outcome_at = Some(now);
        let before = entry.breaker.state();
        entry.breaker = entry.breaker.on_attempt(outcome, now);
        let changed = visible_change(before, entry.breaker.state());
        self.circuits_changed |= changed;
        self.limits_changed |= limit_changed;
        let mut admitted = Admitted::default();
        self.pump(target, now, &mut admitted);
        // A target with nothing to remember is forgotten, so the map holds only the targets
        // in use, not every target ever seen.
        if self.targets.get(&target).is_some_and(|t| t.is_idle(now)) {
            self.targets.remove(&target);
        }
        admitted
    }

    /// Starts waiting deliveries while the target has slots and its circuit allows; releases
    /// them all when the circuit is open.
    fn pump(&mut self, id: WebhookId, now: OffsetDateTime, admitted: &mut Admitted) {
        let target = self.target(id);
        let before = target.breaker.state();
        while target.in_flight < target.limit() && !target.waiting.is_empty() {
            if target.rate_limited_at(now) {
                break;
            }
            let (breaker, allowed) = target.breaker.try_acquire(now);
            if !allowed {
                let resume = match breaker.state() {
                    CircuitState::Open { until } => until,
                    // A probe is under way: look again shortly.
                    _ => now + time::Duration::seconds(1),
                };
                for waiting in target.waiting.drain(..) {
                    admitted.release.push((waiting.delivery, resume));
                }
                break;
            }
            target.breaker = breaker;
            if let Some(next) = target.waiting.pop_front() {
                target.in_flight += 1;
                target.concurrency = target
                    .concurrency
                    .on_start(u32::try_from(target.in_flight).unwrap_or(u32::MAX), now);
                target.next_start = target
                    .spacing
                    .map(|spacing| webhook_domain::add_saturating(now, spacing));
                admitted.start.push(next);
            }
        }
        let changed = visible_change(before, target.breaker.state());
        self.circuits_changed |= changed;
    }

    /// Forgets the targets that hold no work and whose breaker says nothing that a fresh one
    /// would not (see [`Target::forgettable`]), telling [`Slots::circuit_changes`] when one of
    /// them was not closed. It walks every target: call it once per claim, as [`Slots::skip`]
    /// is, with the time the claim was made, once its deliveries are admitted. A target that
    /// claim did not skip and that got nothing from it has no due work in storage, so its
    /// rested breaker is forgotten without losing a probe.
    pub(crate) fn forget_idle(&mut self, now: OffsetDateTime) {
        let rest = self.breaker.open_for;
        let mut visible = false;
        let mut learnt = false;
        self.targets.retain(|_, t| {
            let forget = t.forgettable(now, rest);
            visible |= forget && !matches!(t.breaker.state(), CircuitState::Closed { .. });
            learnt |= forget && !t.concurrency.is_fresh();
            !forget
        });
        self.circuits_changed |= visible;
        self.limits_changed |= learnt;
    }

    /// The breakers that are not closed, if one changed visibly since the last call: what the
    /// metrics show, sent only when it changed.
    pub(crate) fn circuit_changes(&mut self) -> Option<Vec<(WebhookId, CircuitState)>> {
        if !std::mem::take(&mut self.circuits_changed) {
            return None;
        }
        Some(
            self.targets
                .iter()
                .map(|(id, t)| (*id, t.breaker.state()))
                .filter(|(_, state)| !matches!(state, CircuitState::Closed { .. }))
                .collect(),
        )
    }

    /// The in-flight limit of each target whose limit is not the initial one, if one changed
    /// since the last call: what the metrics show, sent only when it changed.
    pub(crate) fn limit_changes(&mut self) -> Option<Vec<(WebhookId, u32)>> {
        if !std::mem::take(&mut self.limits_changed) {
            return None;
        }
        let initial = self.concurrency.initial();
        Some(
            self.targets
                .iter()
                .map(|(id, t)| (*id, t.concurrency.limit()))
                .filter(|(_, limit)| *limit != initial)
                .collect(),
        )
    }

    /// Everything still waiting (for a shutdown that gives it back).
    pub(crate) fn drain_waiting(&mut self) -> Vec<ClaimedDelivery> {
        self.targets
            .values_mut()
            .flat_map(|t| t.waiting.drain(..))
            .collect()
    }

    /// Waiting deliveries whose lease ends before `deadline`: they could not finish an attempt
    /// in time, so they go back to storage instead.
    pub(crate) fn take_expiring(&mut self, deadline: OffsetDateTime) -> Vec<ClaimedDelivery> {
        let mut expiring = Vec::new();
        let expires = |c: &ClaimedDelivery| match c.delivery.state() {
            webhook_domain::DeliveryState::InFlight { leased_until, .. } => {
                leased_until <= deadline
            }
            _ => true,
        };
        for target in self.targets.values_mut() {
            // Called on every turn of the dispatcher: rebuild a queue only when it must change.
            if !target.waiting.iter().any(expires) {
                continue;
            }
            let (expire, keep): (VecDeque<_>, VecDeque<_>) =
                target.waiting.drain(..).partition(|c| expires(c));
            target.waiting = keep;
            expiring.extend(expire);
        }
        expiring
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;
    use webhook_domain::{
        CustomHeaders, DeliveryId, DeliveryState, Event, EventId, EventType, Timestamp, WalletId,
        Webhook, WebhookScope, WebhookUrl,
    };

    use super::*;
    use webhook_domain::AttemptDetail;

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn claimed(target: u128, n: u128) -> ClaimedDelivery {
        let webhook = Webhook::new(
            WebhookId::from_uuid(uuid::Uuid::from_u128(target)),
            WebhookScope::Wallet(WalletId::DEFAULT),
            WebhookUrl::parse("http://127.0.0.1:9/hook").unwrap(),
            CustomHeaders::default(),
            NOW,
        );
        let event = Event::new(
            EventId::from_uuid(uuid::Uuid::from_u128(1000 + n)),
            Timestamp::from_datetime(NOW),
            EventType::parse("Custom.Test").unwrap(),
            serde_json::json!({}),
            WalletId::DEFAULT,
        )
        .unwrap();
        ClaimedDelivery {
            delivery: Delivery::restore(
                DeliveryId::from_uuid(uuid::Uuid::from_u128(n)),
                event.id(),
                webhook.id,
                NOW,
                0,
                0,
                DeliveryState::InFlight {
                    attempt: 1,
                    leased_until: NOW + time::Duration::minutes(1),
                },
            ),
            event,
            webhook,
        }
    }

    fn id(target: u128) -> WebhookId {
        WebhookId::from_uuid(uuid::Uuid::from_u128(target))
    }

    fn breaker(threshold: u32) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: threshold,
            open_for: Duration::from_secs(30),
        }
    }

    /// A target answering healthily at its limit gets more attempts at once; strain halves
    /// what it gets; a learnt limit outlives a quiet moment and is reported to the metrics.
    #[test]
    fn a_targets_in_flight_limit_follows_its_answers() {
        let limits = ConcurrencyLimits::new(1, 2, 8).unwrap();
        let mut slots = Slots::new(limits, breaker(100));
        let claimed: Vec<_> = (1..=20).map(|n| claimed(1, n)).collect();
        let mut started = slots.admit(claimed[..4].to_vec(), NOW).start.len();
        assert_eq!(started, 2, "the initial limit");
        assert_eq!(slots.limit_changes(), None);
        // A healthy answer at the limit: the slow start raises it (here to the ceiling), and
        // what waited starts.
        let healthy = OK.outcome();
        let latency = Duration::from_millis(10);
        let after = slots.finished(id(1), &healthy, latency, NOW);
        assert_eq!(after.start.len(), 2);
        started += after.start.len() - 1;
        assert_eq!(slots.in_flight(), started);
        assert_eq!(slots.limit_changes(), Some(vec![(id(1), 8)]));
        slots.admit(claimed[4..].to_vec(), NOW);
        assert_eq!(slots.in_flight(), 8);
        // Strain halves the limit once per round trip: nothing new starts until fewer than
        // four are in flight.
        let strain = AttemptDetail::Timeout.outcome();
        let later = NOW + time::Duration::seconds(1);
        for in_flight in [7, 6] {
            let after = slots.finished(id(1), &strain, latency, later);
            assert!(after.start.is_empty());
            assert_eq!(slots.in_flight(), in_flight);
        }
        assert_eq!(slots.limit_changes(), Some(vec![(id(1), 4)]));
        slots.drain_waiting();
        for _ in 0..6 {
            slots.finished(id(1), &healthy, latency, later);
        }
        assert_eq!(slots.in_flight(), 0);
        // Drained and quiet for less than the breaker's rest: the learnt limit is kept.
        slots.forget_idle(later + time::Duration::seconds(1));
        assert!(slots.targets.contains_key(&id(1)));
        // Quiet for the rest: forgotten, and the metrics told.
        slots.forget_idle(later + time::Duration::seconds(31));
        assert!(!slots.targets.contains_key(&id(1)));
        assert_eq!(slots.limit_changes(), Some(Vec::new()));
    }

    /// Claims skip a target once it holds its slots and the waiting cap beside them.
    #[test]
    fn a_target_is_skipped_once_its_slots_and_the_waiting_cap_are_full() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(4), breaker(5)).waiting_at_most(2);
        let claimed: Vec<_> = (1..=6).map(|n| claimed(1, n)).collect();
        assert_eq!(slots.admit(claimed[..5].to_vec(), NOW).start.len(), 4);
        assert!(slots.skip(NOW).is_empty(), "4 in flight and 1 waiting");
        slots.admit(claimed[5..].to_vec(), NOW);
        assert_eq!(slots.skip(NOW), vec![id(1)], "4 in flight and 2 waiting");
    }

    const OK: AttemptDetail = AttemptDetail::Response {
        status: 200,
        retry_after: None,
    };

    #[test]
    fn a_target_holds_at_most_its_slots_and_the_rest_wait() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(2), breaker(5));
        let batch = (0..5)
            .map(|n| claimed(1, n))
            .chain([claimed(2, 9)])
            .collect();
        let admitted = slots.admit(batch, NOW);
        let started: Vec<_> = admitted.start.iter().map(|c| c.delivery.id()).collect();
        assert_eq!(started.len(), 3, "two of target 1, one of target 2");
        assert_eq!(slots.in_flight(), 3);
        assert_eq!(slots.waiting(), 3);
        assert!(admitted.release.is_empty());
        // Target 1 is skipped by the next claim; target 2 is not.
        assert_eq!(slots.skip(NOW), vec![id(1)]);

        // Each finished attempt of target 1 starts its next waiting delivery, in claim order.
        let next = slots.finished(id(1), &OK.outcome(), Duration::ZERO, NOW);
        assert_eq!(next.start.len(), 1);
        assert_eq!(
            next.start[0].delivery.id(),
            DeliveryId::from_uuid(uuid::Uuid::from_u128(2))
        );
        assert_eq!(slots.in_flight(), 3);
        // Target 2 finishing frees a slot nobody waits for.
        assert!(
            slots
                .finished(id(2), &OK.outcome(), Duration::ZERO, NOW)
                .start
                .is_empty()
        );
        assert_eq!(slots.in_flight(), 2);
    }

    #[test]
    fn an_open_circuit_sends_the_target_waiting_deliveries_back_until_it_may_probe() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(1), breaker(2));
        let admitted = slots.admit((0..3).map(|n| claimed(1, n)).collect(), NOW);
        assert_eq!(admitted.start.len(), 1);
        // First failure: still closed, the next one starts.
        let after_first = slots.finished(
            id(1),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        assert_eq!(after_first.start.len(), 1);
        // Second failure opens the circuit: the last waiting delivery goes back until it ends.
        let after_second = slots.finished(
            id(1),
            &AttemptDetail::ConnectionFailed.outcome(),
            Duration::ZERO,
            NOW,
        );
        assert!(after_second.start.is_empty());
        assert_eq!(after_second.release.len(), 1);
        assert_eq!(after_second.release[0].1, NOW + time::Duration::seconds(30));
        assert_eq!(slots.skip(NOW), vec![id(1)]);
        // Once the open time is over, one probe may start.
        let later = NOW + time::Duration::seconds(30);
        assert!(slots.skip(later).is_empty());
        let probe = slots.admit(vec![claimed(1, 7), claimed(1, 8)], later);
        assert_eq!(probe.start.len(), 1, "one probe at a time");
        assert_eq!(slots.waiting(), 1);
        // A healthy probe closes the circuit and lets the next one start.
        let after_probe = slots.finished(id(1), &OK.outcome(), Duration::ZERO, later);
        assert_eq!(after_probe.start.len(), 1);
        assert!(after_probe.release.is_empty());
        assert_eq!(slots.in_flight(), 1);

        // With more slots, a probe under way sends the others back for a moment.
        let mut wide = Slots::new(ConcurrencyLimits::fixed(4), breaker(1));
        wide.admit(vec![claimed(2, 20)], NOW);
        wide.finished(
            id(2),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        let reopened = NOW + time::Duration::seconds(30);
        let admitted = wide.admit(vec![claimed(2, 21), claimed(2, 22)], reopened);
        assert_eq!(admitted.start.len(), 1);
        assert_eq!(admitted.release.len(), 1);
        assert_eq!(admitted.release[0].1, reopened + time::Duration::seconds(1));
    }

    #[test]
    fn circuit_changes_are_reported_once_each_and_not_for_failures_below_the_threshold() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(1), breaker(2));
        assert_eq!(slots.circuit_changes(), None);
        slots.admit((0..3).map(|n| claimed(1, n)).collect(), NOW);
        // One failure: still closed, nothing to report.
        slots.finished(
            id(1),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        assert_eq!(slots.circuit_changes(), None);
        // The second opens the circuit.
        slots.finished(
            id(1),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        let until = NOW + time::Duration::seconds(30);
        assert_eq!(
            slots.circuit_changes(),
            Some(vec![(id(1), CircuitState::Open { until })])
        );
        assert_eq!(slots.circuit_changes(), None, "reported once");
        // A probe turns it half-open; a healthy answer closes it, and it is no longer listed.
        slots.admit(vec![claimed(1, 7)], until);
        assert_eq!(
            slots.circuit_changes(),
            Some(vec![(id(1), CircuitState::HalfOpen { probing: true })])
        );
        slots.finished(id(1), &OK.outcome(), Duration::ZERO, until);
        assert_eq!(slots.circuit_changes(), Some(Vec::new()));
        assert_eq!(slots.circuit_changes(), None);
    }

    #[test]
    fn a_rate_limited_target_starts_one_attempt_per_interval() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(10), breaker(5));
        let limited = |n| {
            let mut c = claimed(1, n);
            c.webhook.rate_limit = Some(webhook_domain::RateLimit::per_second(4).unwrap());
            c
        };
        let admitted = slots.admit((0..3).map(limited).collect(), NOW);
        assert_eq!(
            admitted.start.len(),
            1,
            "one now, the rest a quarter second apart"
        );
        assert_eq!(slots.waiting(), 2);
        assert_eq!(slots.skip(NOW), vec![id(1)]);
        let quarter = NOW + time::Duration::milliseconds(250);
        assert_eq!(slots.next_rate_start(), Some(quarter));
        assert!(
            slots
                .pump_all(quarter - time::Duration::milliseconds(1))
                .start
                .is_empty()
        );
        assert_eq!(slots.pump_all(quarter).start.len(), 1);
        assert_eq!(
            slots.next_rate_start(),
            Some(quarter + time::Duration::milliseconds(250))
        );
        // An unlimited target beside it is not held back.
        assert_eq!(slots.admit(vec![claimed(2, 9)], NOW).start.len(), 1);
    }

    #[test]
    fn an_idle_target_is_forgotten_but_one_with_failures_is_kept() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(2), breaker(5));
        slots.admit(vec![claimed(1, 0), claimed(2, 1)], NOW);
        slots.finished(id(1), &OK.outcome(), Duration::ZERO, NOW);
        slots.finished(
            id(2),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        assert!(!slots.targets.contains_key(&id(1)));
        assert!(
            slots.targets.contains_key(&id(2)),
            "its failure still counts"
        );
    }

    #[test]
    fn an_open_circuit_without_work_is_forgotten_once_its_rest_is_over() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(1), breaker(1));
        slots.admit(vec![claimed(1, 0)], NOW);
        slots.finished(
            id(1),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        let until = NOW + time::Duration::seconds(30);
        assert_eq!(
            slots.circuit_changes(),
            Some(vec![(id(1), CircuitState::Open { until })])
        );
        // Still resting: kept, so that its next attempt is a single probe.
        slots.forget_idle(until - time::Duration::milliseconds(1));
        assert!(slots.targets.contains_key(&id(1)));
        assert_eq!(slots.circuit_changes(), None);
        // The rest is over and it holds nothing: forgotten, and no longer shown as not closed.
        slots.forget_idle(until);
        assert!(!slots.targets.contains_key(&id(1)));
        assert_eq!(slots.circuit_changes(), Some(Vec::new()));
        assert_eq!(slots.circuit_changes(), None);
    }

    #[test]
    fn a_failure_count_without_work_is_forgotten_after_an_open_period_without_outcomes() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(1), breaker(5));
        slots.admit(vec![claimed(1, 0)], NOW);
        slots.finished(
            id(1),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        let later = NOW + time::Duration::seconds(20);
        slots.admit(vec![claimed(1, 1)], later);
        slots.finished(
            id(1),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            later,
        );
        // A retry within the open period still adds to the count.
        slots.forget_idle(later + time::Duration::seconds(29));
        assert_eq!(
            slots.targets.get(&id(1)).map(|t| t.breaker.state()),
            Some(CircuitState::Closed {
                consecutive_failures: 2
            })
        );
        slots.forget_idle(later + time::Duration::seconds(30));
        assert!(!slots.targets.contains_key(&id(1)));
        assert_eq!(
            slots.circuit_changes(),
            None,
            "a closed breaker is not shown"
        );
    }

    #[test]
    fn a_target_with_work_or_a_rate_limit_holding_a_start_is_not_forgotten() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(2), breaker(1));
        // One attempt fails and opens the circuit while another is still in flight.
        slots.admit(vec![claimed(1, 0), claimed(1, 1)], NOW);
        slots.finished(
            id(1),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        slots.forget_idle(NOW + time::Duration::minutes(5));
        assert!(
            slots.targets.contains_key(&id(1)),
            "an attempt is in flight"
        );

        // A rate limit of one a second holds the next start of an idle, healthy target.
        let mut slots = Slots::new(ConcurrencyLimits::fixed(2), breaker(5));
        let mut limited = claimed(2, 2);
        limited.webhook.rate_limit = Some(webhook_domain::RateLimit::per_second(1).unwrap());
        slots.admit(vec![limited], NOW);
        slots.finished(id(2), &OK.outcome(), Duration::ZERO, NOW);
        slots.forget_idle(NOW + time::Duration::milliseconds(999));
        assert!(slots.targets.contains_key(&id(2)), "its rate limit holds");
        slots.forget_idle(NOW + time::Duration::seconds(1));
        assert!(!slots.targets.contains_key(&id(2)));
    }

    #[test]
    fn a_half_open_circuit_with_no_probe_in_flight_is_forgotten() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(1), breaker(1));
        slots.admit(vec![claimed(1, 0)], NOW);
        slots.finished(
            id(1),
            &AttemptDetail::Timeout.outcome(),
            Duration::ZERO,
            NOW,
        );
        let later = NOW + time::Duration::seconds(30);
        slots.admit(vec![claimed(1, 1)], later);
        assert_eq!(
            slots.circuit_changes(),
            Some(vec![(id(1), CircuitState::HalfOpen { probing: true })])
        );
        slots.forget_idle(later);
        assert!(slots.targets.contains_key(&id(1)), "its probe is in flight");
        // The probe's slot freed without an outcome (its attempt given up): nothing would
        // ever settle the breaker, which refuses every attempt while half-open.
        slots.targets.get_mut(&id(1)).unwrap().in_flight = 0;
        slots.forget_idle(later);
        assert!(!slots.targets.contains_key(&id(1)));
        assert_eq!(slots.circuit_changes(), Some(Vec::new()));
    }

    #[test]
    fn waiting_deliveries_near_their_lease_end_are_handed_back() {
        let mut slots = Slots::new(ConcurrencyLimits::fixed(1), breaker(5));
        slots.admit((0..3).map(|n| claimed(1, n)).collect(), NOW);
        assert!(slots.take_expiring(NOW).is_empty());
        let expiring = slots.take_expiring(NOW + time::Duration::minutes(2));
        assert_eq!(expiring.len(), 2);
        assert_eq!(slots.waiting(), 0);
        assert_eq!(slots.in_flight(), 1);
        assert!(slots.drain_waiting().is_empty());
    }
}
