//! The dispatcher: claims due deliveries, attempts them through the transport, applies the
//! domain's decisions, and records the outcomes in batches.
//!
//! It is a pipeline, not a sequence of batches: attempts start as soon as they are claimed and
//! their target has a free slot, each outcome joins the next batch to record as soon as it is
//! known, and claiming continues while there is room. A target that hangs or fails holds only
//! its own slots (see [`slots`]); its backlog waits in storage, skipped by the claims.
//!
//! It uses only the ports, so its logic is unit-tested with mocks. It never holds a database
//! connection while HTTP is in flight: the claim returns first, the record comes after.

mod slots;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use webhook_domain::{
    AttemptOutcome, CancelReason, CircuitBreakerConfig, ConcurrencyLimits, Decision, Delivery,
    DeliveryState, Jitter, OutboundMessage, RetryPolicy, WebhookId,
};
use webhook_ports::{
    AttemptLog, AttemptRecord, ClaimRequest, ClaimedDelivery, Clock, DeliveryQueue, Destination,
    LeaseOwner, OutboxError, WebhookRepository,
};

use slots::{Admitted, Slots};

use crate::metrics::Metrics;

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub(crate) struct DispatcherConfig {
    /// Most deliveries claimed at once.
    pub(crate) batch_size: u32,
    pub(crate) lease: Duration,
    pub(crate) attempt_timeout: Duration,
    /// Longest idle sleep; publishes wake the dispatcher at once.
    pub(crate) poll_interval: Duration,
    pub(crate) default_retry_policy: RetryPolicy,
    /// Most attempts in flight (and deliveries held waiting for a slot), all targets together.
    pub(crate) max_in_flight: usize,
    /// The bounds of each target's in-flight limit, which adapts between them.
    pub(crate) per_target: ConcurrencyLimits,
    pub(crate) circuit_breaker: CircuitBreakerConfig,
    /// Outcomes are written once this many are waiting...
    pub(crate) record_batch: usize,
    /// ...or once the oldest has waited this long.
    pub(crate) record_delay: Duration,
    /// At shutdown, how long attempts in flight may take before their leases are given back.
    pub(crate) shutdown_grace: Duration,
}

impl DispatcherConfig {
    /// The most deliveries of one target a claim takes: half a batch, or twice the limit a
    /// target starts at if that is more. Below a whole batch, one claim still spreads over
    /// targets (they are served earliest due first, so a target with a backlog comes first
    /// each time); as much as half of one, a busy target is refilled in few claims. Twice the
    /// initial limit alone (32 by default) held a single busy target to 32 deliveries per
    /// claim: on SQLite, where every claim is a commit, delivery then fell behind publishing.
    /// A target holding its slots and this many waiting is skipped anyway (see `slots`).
    pub(crate) fn claim_per_target(&self) -> u32 {
        (self.batch_size / 2)
            .max(self.per_target.initial().saturating_mul(2))
            .max(1)
    }
}

/// The ports the dispatcher drives, and how it draws jitter.
pub(crate) struct Dispatcher {
    pub(crate) queue: Arc<dyn DeliveryQueue>,
    pub(crate) webhooks: Arc<dyn WebhookRepository>,
    pub(crate) transport: Arc<dyn Destination>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) jitter: fn() -> Jitter,
    pub(crate) owner: LeaseOwner,
    pub(crate) config: DispatcherConfig,
    /// Attempts, finished deliveries and circuit states are counted here as they happen.
    pub(crate) metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("owner", &self.owner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The least time between a claim that came back short and the next one.
const CLAIM_GAP: Duration = Duration::from_millis(5);
/// A claim under way: what it claimed, how many it asked for, and its time.
type ClaimTask = tokio::task::JoinHandle<(
    Result<Vec<ClaimedDelivery>, OutboxError>,
    usize,
    OffsetDateTime,
)>;

/// Outcome writes outstanding at once; outcomes that finish meanwhile gather and are written
/// together once one of them ends.
const MAX_WRITES_IN_FLIGHT: usize = 2;

/// A failed outcome write is tried again after this long, doubling up to [`WRITE_RETRY_MAX`].
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(50);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(1);
/// No write is tried again this close to the end of the earliest lease of its batch: the
/// write itself takes time, and an outcome stored after the lease ran out could race the next
/// claimer of the delivery (the store skips such a record anyway).
const WRITE_LEASE_MARGIN: Duration = Duration::from_secs(1);

/// What an attempt task hands back.
struct Finished {
    target: WebhookId,
    /// The target delivers in order: its next delivery can be claimed only once this outcome
    /// is stored.
    ordered: bool,
    record: AttemptRecord,
    /// What the attempt came to, which the target's circuit breaker counts.
    outcome: AttemptOutcome,
    decision: Decision,
    /// The global webhook, which a 410 never disables: only its configuration changes it.
    global: bool,
    /// The end of the lease the attempt was made under: its outcome can be written until then.
    leased_until: OffsetDateTime,
}

/// The shortest time between two reports of the targets' in-flight limits to the metrics.
const LIMIT_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The shutdown as outcome writes see it: once it is asked for, a failed write is tried again
/// only until the shutdown grace is over, counted from the first time it was seen, so that the
/// drain stays bounded.
#[derive(Debug, Clone)]
struct Stopping {
    shutdown: watch::Receiver<bool>,
    grace: Duration,
    deadline: Arc<OnceLock<Instant>>,
}

impl Stopping {
    fn new(shutdown: watch::Receiver<bool>, grace: Duration) -> Self {
        Self {
            shutdown,
            grace,
            deadline: Arc::new(OnceLock::new()),
        }
    }

    /// The end of the shutdown grace, once a shutdown has been asked for.
    fn deadline(&self) -> Option<Instant> {
        let asked = *self.shutdown.borrow();
        asked.then(|| *self.deadline.get_or_init(|| Instant::now() + self.grace))
    }

    /// Returns once a shutdown is asked for; never when none can be any more.
    async fn asked(&mut self) {
        if self.shutdown.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The running pipeline's state, owned by [`Dispatcher::run`].
struct Pipeline {
    slots: Slots,
    attempts: JoinSet<Option<Finished>>,
    /// The deliveries of running attempts, to give their leases back if a shutdown cuts them off.
    running: HashMap<tokio::task::Id, Delivery>,
    records: Vec<AttemptRecord>,
    first_record_at: Option<Instant>,
    /// The earliest lease end of the deliveries of `records`.
    records_leased_until: Option<OffsetDateTime>,
    gone: Vec<WebhookId>,
    /// What finished attempts let through, started (or given back) at the next step.
    admitted_later: Admitted,
    /// Outcome writes on their way to the database, so the loop never waits for a commit; each
    /// says whether it stored an outcome of an ordered target.
    writes: JoinSet<bool>,
    /// The records waiting to be written hold an outcome of an ordered target.
    ordered_waiting: bool,
    /// The claim under way, if any (one at a time), with the number it asked for: while it
    /// runs, finished attempts keep freeing slots for deliveries that wait here.
    claiming: Option<ClaimTask>,
    /// How long outcome writes may retry once a shutdown is asked for.
    stopping: Stopping,
}

impl Pipeline {
    fn pending_admitted(&mut self, admitted: Admitted) {
        self.admitted_later.start.extend(admitted.start);
        self.admitted_later.release.extend(admitted.release);
    }
}

/// Waits until `retry_at` and says yes, unless the time to give up (`lease_deadline`, or the
/// end of a shutdown's grace) comes first: then says no at once.
async fn wait_to_retry(
    retry_at: Instant,
    lease_deadline: Instant,
    stopping: &mut Stopping,
) -> bool {
    loop {
        let grace_end = stopping.deadline();
        if retry_at >= grace_end.map_or(lease_deadline, |end| end.min(lease_deadline)) {
            return false;
        }
        if grace_end.is_some() {
            tokio::time::sleep_until(retry_at).await;
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep_until(retry_at) => return true,
            // Judge again with the grace's end.
            () = stopping.asked() => {}
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Dispatcher {
    /// Runs until `shutdown` turns true, then stops claiming, gives back the leases of what
    /// waits for a slot, lets attempts in flight finish for up to `shutdown_grace`, gives back
    /// the leases of the rest, and records every outcome it has. (The service runs
    /// [`Self::run_with`]; this is for the tests here.)
    #[cfg(test)]
    pub(crate) async fn run(self: Arc<Self>, wake: Arc<Notify>, shutdown: watch::Receiver<bool>) {
        // No word of deleted or disabled targets: the sender stays here, so the channel never
        // closes.
        let (_none, changes) = mpsc::unbounded_channel();
        self.run_with(wake, changes, shutdown).await;
    }

    /// As [`Self::run`], hearing of deleted or disabled targets on `changes`: what waits here
    /// for a slot of such a target is given back at once and nothing more of it starts
    /// (attempts in flight end as they will).
    pub(crate) async fn run_with(
        self: Arc<Self>,
        wake: Arc<Notify>,
        mut changes: mpsc::UnboundedReceiver<WebhookId>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut p = Pipeline {
            slots: Slots::new(self.config.per_target, self.config.circuit_breaker)
                .waiting_at_most(self.config.claim_per_target() as usize),
            attempts: JoinSet::new(),
            running: HashMap::new(),
            records: Vec::new(),
            first_record_at: None,
            records_leased_until: None,
            gone: Vec::new(),
            admitted_later: Admitted::default(),
            writes: JoinSet::new(),
            ordered_waiting: false,
            claiming: None,
            stopping: Stopping::new(shutdown.clone(), self.config.shutdown_grace),
        };
        // Claim at once; afterwards when woken, polled, after a full claim, or once enough
        // attempts finished to refill their slots from one claim.
        let mut claim_now = true;
        // A publish woke the loop: claim even while every known target is busy.
        let mut woken = false;
        let mut next_poll = Instant::now();
        // After a claim that found less than it asked for, wake-ups (one per publish) and
        // completions wait this long before the next claim, so that they share one round trip.
        let mut next_claim_at = Instant::now();
        let mut finished_since_claim = 0_usize;
        // Limits move on most answers while they grow; their report walks every target, so
        // it is sent at most this often (metrics are scraped at intervals anyway).
        let mut next_limit_report = Instant::now();
        let refill = (self.config.batch_size as usize)
            .min(self.config.per_target.initial() as usize)
            .div_ceil(2)
            .max(1);
        loop {
            if *shutdown.borrow() {
                break;
            }
            let room = self
                .config
                .max_in_flight
                .saturating_sub(p.slots.in_flight() + p.slots.waiting());
            let now = Instant::now();
            let poll_due = now >= next_poll;
            // Completions and full claims ask for a claim to refill slots; while every target
            // with work here is still busy, such a claim would skip them all and walk past
            // their whole backlog in storage to find nothing (at a backlog of a million, 170 ms
            // of database CPU each, which made a drain ten times slower). Wake-ups and polls
            // still claim then: they may bring other targets' work.
            if claim_now && !woken && !poll_due && p.slots.all_busy(self.clock.now()) {
                claim_now = false;
            }
            if (claim_now || woken || poll_due)
                && now >= next_claim_at
                && room > 0
                && p.claiming.is_none()
            {
                claim_now = false;
                woken = false;
                finished_since_claim = 0;
                p.claiming = Some(self.start_claim(&p, room));
            }
            self.hand_back_expiring(&mut p).await;
            // While the most writes are under way, outcomes gather for the next one (the
            // loop goes on claiming and starting attempts) instead of the loop waiting for a
            // write: a burst of answers is then written in a few large statements.
            let can_write = p.writes.len() < MAX_WRITES_IN_FLIGHT;
            let flush_at = p
                .first_record_at
                .filter(|_| can_write)
                .map(|t| t + self.config.record_delay);
            // A rate limit that will let a waiting delivery start.
            let rate_at = p.slots.next_rate_start().map(|at| {
                let wait = Duration::try_from(at - self.clock.now()).unwrap_or(Duration::ZERO);
                Instant::now() + wait
            });
            // While a claim is under way its answer wakes the loop; a timer then (already due,
            // as the claim time or the poll time may be) would spin until it comes.
            // With no room a claim cannot start, so neither time is worth waking for (both may
            // be past: the loop would spin until an attempt ends); wake once a poll interval,
            // for the leases of waiting deliveries.
            // A poll that is due waits for the gap after a short claim too: a past poll time
            // would otherwise spin the loop until the gap ends.
            let timer = p.claiming.is_none().then_some(if room == 0 {
                Instant::now() + self.config.poll_interval
            } else if claim_now || woken {
                next_claim_at
            } else {
                next_poll.max(next_claim_at)
            });
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                Some(joined) = p.attempts.join_next_with_id(), if !p.attempts.is_empty() => {
                    self.on_joined(&mut p, joined);
                    finished_since_claim += 1;
                    claim_now |= finished_since_claim >= refill || p.slots.in_flight() == 0;
                }
                Some(written) = p.writes.join_next(), if !p.writes.is_empty() => {
                    // An ordered target's next delivery became claimable with that commit.
                    claim_now |= written.unwrap_or(false);
                }
                joined = async { p.claiming.as_mut().expect("guarded").await }, if p.claiming.is_some() => {
                    p.claiming = None;
                    match joined {
                        Ok((Ok(claimed), asked, claimed_at)) => {
                            let full = claimed.len() == asked;
                            let admitted = p.slots.admit(claimed, self.clock.now());
                            self.act(&mut p, admitted).await;
                            p.slots.forget_idle(claimed_at);
                            if full {
                                // There may be more at once; the claim stands for a poll.
                                claim_now = true;
                                next_poll = Instant::now() + self.config.poll_interval;
                            } else {
                                next_claim_at = Instant::now() + CLAIM_GAP;
                                // While attempts run, their completions bring the next claim.
                                next_poll = if p.slots.in_flight() > 0 {
                                    Instant::now() + self.config.poll_interval
                                } else {
                                    let skip = p.slots.skip(self.clock.now());
                                    Instant::now() + self.idle_pause(&skip).await
                                };
                            }
                        }
                        Ok((Err(e), _, _)) => {
                            tracing::warn!(error = %e, "dispatcher cannot reach the database; retrying");
                            next_poll = Instant::now() + Duration::from_secs(1);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "a claim task failed");
                            next_poll = Instant::now() + Duration::from_secs(1);
                        }
                    }
                }
                () = wake.notified() => woken = true,
                Some(target) = changes.recv() => self.drop_target(&mut p, target).await,
                () = sleep_until_opt(flush_at), if flush_at.is_some() => {}
                () = sleep_until_opt(rate_at), if rate_at.is_some() => {
                    let admitted = p.slots.pump_all(self.clock.now());
                    p.pending_admitted(admitted);
                }
                () = sleep_until_opt(timer), if timer.is_some() => {}
            }
            if p.writes.len() < MAX_WRITES_IN_FLIGHT
                && (p.records.len() >= self.config.record_batch
                    || flush_at.is_some_and(|at| Instant::now() >= at)
                    || (p.attempts.is_empty() && !p.records.is_empty()))
            {
                claim_now |= self.flush(&mut p).await;
            }
            if let Some(not_closed) = p.slots.circuit_changes() {
                self.metrics.circuits_changed(not_closed);
            }
            if Instant::now() >= next_limit_report
                && let Some(limits) = p.slots.limit_changes()
            {
                self.metrics.limits_changed(limits);
                next_limit_report = Instant::now() + LIMIT_REPORT_INTERVAL;
            }
        }
        self.drain(p).await;
    }

    /// Starts claiming up to `room` deliveries (at most a batch) for targets with free slots,
    /// in a task of its own; the loop admits them when it answers.
    fn start_claim(self: &Arc<Self>, p: &Pipeline, room: usize) -> ClaimTask {
        let limit = u32::try_from(room)
            .unwrap_or(u32::MAX)
            .min(self.config.batch_size);
        let request = ClaimRequest {
            now: self.clock.now(),
            lease: self.config.lease,
            limit,
            per_target: self.config.claim_per_target(),
            skip: p.slots.skip(self.clock.now()),
        };
        let claimer = Arc::clone(self);
        tokio::spawn(async move {
            let claimed = claimer.queue.claim_due(&claimer.owner, &request).await;
            (claimed, limit as usize, request.now)
        })
    }

    /// Starts the admitted attempts and gives back the deliveries of resting targets.
    async fn act(self: &Arc<Self>, p: &mut Pipeline, admitted: Admitted) {
        for claimed in admitted.start {
            let delivery = claimed.delivery.clone();
            let worker = Arc::clone(self);
            let task = p
                .attempts
                .spawn(async move { worker.attempt(claimed).await });
            p.running.insert(task.id(), delivery);
        }
        if !admitted.release.is_empty() {
            let released: Vec<Delivery> = admitted
                .release
                .iter()
                .filter_map(|(delivery, at)| delivery.release(*at).ok())
                .collect();
            if let Err(e) = self.queue.release(&self.owner, &released).await {
                // Their leases run out instead; nothing is lost.
                tracing::warn!(error = %e, count = released.len(), "cannot give deliveries back");
            }
        }
    }

    fn on_joined(
        &self,
        p: &mut Pipeline,
        joined: Result<(tokio::task::Id, Option<Finished>), tokio::task::JoinError>,
    ) {
        let now = self.clock.now();
        match joined {
            Ok((id, finished)) => {
                let delivery = p.running.remove(&id);
                match finished {
                    Some(f) => {
                        if f.decision == Decision::DisableTarget && !f.global {
                            p.gone.push(f.target);
                        }
                        let admitted =
                            p.slots
                                .finished(f.target, &f.outcome, f.record.attempt.duration, now);
                        p.ordered_waiting |= f.ordered;
                        p.first_record_at.get_or_insert_with(Instant::now);
                        p.records_leased_until = Some(
                            p.records_leased_until
                                .map_or(f.leased_until, |at| at.min(f.leased_until)),
                        );
                        p.records.push(f.record);
                        p.pending_admitted(admitted);
                    }
                    None => {
                        // The delivery was not in flight (cannot happen with a correct claim):
                        // free its slot; its lease runs out.
                        if let Some(d) = delivery {
                            // An outcome that says nothing of the target's health.
                            let admitted = p.slots.finished(
                                d.webhook_id(),
                                &AttemptOutcome::RefusedByPolicy,
                                Duration::ZERO,
                                now,
                            );
                            p.pending_admitted(admitted);
                        }
                    }
                }
            }
            Err(e) => {
                // A panicking attempt leaves its lease to expire; the delivery is retried.
                tracing::error!(error = %e, "a delivery attempt task failed");
                if let Some(d) = p.running.remove(&e.id()) {
                    let admitted = p.slots.finished(
                        d.webhook_id(),
                        &AttemptOutcome::RetryLater { not_before: None },
                        Duration::ZERO,
                        now,
                    );
                    p.pending_admitted(admitted);
                }
            }
        }
    }

    /// Writes the waiting outcomes, then disables targets that answered 410.
    /// Returns whether a write it waited for stored an outcome of an ordered target.
    async fn flush(self: &Arc<Self>, p: &mut Pipeline) -> bool {
        self.start_pending(p).await;
        if p.records.is_empty() {
            return false;
        }
        let records = std::mem::take(&mut p.records);
        let gone = std::mem::take(&mut p.gone);
        let ordered = std::mem::take(&mut p.ordered_waiting);
        let leased_until = p
            .records_leased_until
            .take()
            .unwrap_or_else(|| self.clock.now());
        p.first_record_at = None;
        // Bounded: with this many writes outstanding, the loop waits for one.
        let mut ordered_written = false;
        while p.writes.len() >= MAX_WRITES_IN_FLIGHT {
            ordered_written |= matches!(p.writes.join_next().await, Some(Ok(true)));
        }
        let writer = Arc::clone(self);
        let stopping = p.stopping.clone();
        p.writes.spawn(async move {
            writer.write(records, gone, leased_until, stopping).await && ordered
        });
        ordered_written
    }

    /// Stores a batch of outcomes, trying again after a failure while the leases of its
    /// deliveries (the earliest ends at `leased_until`) hold and no shutdown's grace is over,
    /// then disables the targets whose 410 Gone it stored. Returns whether it stored the batch.
    ///
    /// A batch that cannot be stored is counted and logged; its deliveries stay leased and
    /// become due again when their leases run out, so those attempts are made again (and a 410
    /// among them disables its target then).
    async fn write(
        &self,
        records: Vec<AttemptRecord>,
        gone: Vec<WebhookId>,
        leased_until: OffsetDateTime,
        mut stopping: Stopping,
    ) -> bool {
        let lease_left = Duration::try_from(leased_until - self.clock.now())
            .unwrap_or(Duration::ZERO)
            .saturating_sub(WRITE_LEASE_MARGIN);
        let lease_deadline = Instant::now() + lease_left;
        let mut backoff = WRITE_RETRY_FIRST;
        let mut retries = 0_u32;
        let lost = loop {
            match self.queue.record_attempts(&self.owner, &records).await {
                Ok(lost) => break lost,
                Err(e) => {
                    let retry_at = Instant::now() + backoff;
                    if !wait_to_retry(retry_at, lease_deadline, &mut stopping).await {
                        tracing::error!(
                            error = %e,
                            count = records.len(),
                            retries,
                            "cannot record outcomes; their deliveries will be attempted again \
                             when their leases run out"
                        );
                        self.metrics.outcomes_unrecorded(records.len());
                        return false;
                    }
                    if retries == 0 {
                        tracing::warn!(
                            error = %e,
                            count = records.len(),
                            "cannot record outcomes; trying again while their leases hold"
                        );
                    }
                    retries += 1;
                    self.metrics.outcome_write_retried();
                    backoff = (backoff * 2).min(WRITE_RETRY_MAX);
                }
            }
        };
        self.metrics.outcomes_recorded(&records, &lost);
        if !lost.is_empty() {
            tracing::warn!(
                count = lost.len(),
                "leases expired before outcomes were recorded"
            );
        }
        for webhook in gone {
            // Only a stored 410 disables: a lost one is attempted again by the next claimer.
            let stored_gone = records.iter().any(|r| {
                r.delivery.webhook_id() == webhook
                    && !lost.contains(&r.delivery.id())
                    && matches!(
                        r.delivery.state(),
                        DeliveryState::Cancelled {
                            reason: CancelReason::TargetGone,
                            ..
                        }
                    )
            });
            if !stored_gone {
                continue;
            }
            let now = self.clock.now();
            if let Err(e) = self.webhooks.disable_webhook(webhook, now).await {
                tracing::warn!(%webhook, error = %e, "cannot disable a webhook that answered 410");
            } else {
                tracing::info!(%webhook, "webhook disabled: the target answered 410 Gone");
            }
        }
        true
    }

    /// A target was deleted or disabled: gives back what of it waits for a slot or was let
    /// through but not started, and keeps what a claim under way brings of it from starting.
    async fn drop_target(&self, p: &mut Pipeline, target: WebhookId) {
        let now = self.clock.now();
        let until = webhook_domain::add_saturating(now, self.config.lease);
        let mut dropped: Vec<Delivery> = p
            .slots
            .drop_target(target, until, now)
            .into_iter()
            .map(|c| c.delivery)
            .collect();
        let (of_target, others): (Vec<_>, Vec<_>) = std::mem::take(&mut p.admitted_later.start)
            .into_iter()
            .partition(|c| c.webhook.id == target);
        p.admitted_later.start = others;
        dropped.extend(of_target.into_iter().map(|c| c.delivery));
        tracing::debug!(webhook = %target, given_back = dropped.len(), "target deleted or disabled: dropping what waits for it");
        self.give_back(dropped.into_iter(), now).await;
    }

    /// Starts (or gives back) what finished attempts let through.
    async fn start_pending(self: &Arc<Self>, p: &mut Pipeline) {
        let admitted = std::mem::take(&mut p.admitted_later);
        self.act(p, admitted).await;
    }

    /// Gives back waiting deliveries whose lease would end before an attempt could finish.
    async fn hand_back_expiring(self: &Arc<Self>, p: &mut Pipeline) {
        self.start_pending(p).await;
        let margin = self.config.attempt_timeout + Duration::from_secs(1);
        let deadline = webhook_domain::add_saturating(self.clock.now(), margin);
        let expiring = p.slots.take_expiring(deadline);
        if !expiring.is_empty() {
            let now = self.clock.now();
            self.give_back(expiring.into_iter().map(|c| c.delivery), now)
                .await;
        }
    }

    async fn give_back(
        &self,
        deliveries: impl Iterator<Item = Delivery>,
        at: time::OffsetDateTime,
    ) {
        let released: Vec<Delivery> = deliveries.filter_map(|d| d.release(at).ok()).collect();
        if released.is_empty() {
            return;
        }
        if let Err(e) = self.queue.release(&self.owner, &released).await {
            tracing::warn!(error = %e, count = released.len(), "cannot give deliveries back");
        }
    }

    /// The shutdown: give back what waits, let attempts finish within the grace period, give
    /// back the rest, record everything.
    async fn drain(&self, mut p: Pipeline) {
        if let Some(claiming) = p.claiming.take()
            && let Ok((Ok(claimed), _, _)) = claiming.await
        {
            let now = self.clock.now();
            self.give_back(claimed.into_iter().map(|c| c.delivery), now)
                .await;
        }
        let now = self.clock.now();
        let waiting = p.slots.drain_waiting();
        let pending = std::mem::take(&mut p.admitted_later);
        let held = waiting
            .into_iter()
            .chain(pending.start)
            .map(|c| c.delivery)
            .chain(pending.release.into_iter().map(|(d, _)| d));
        self.give_back(held, now).await;
        // The same end of the grace as the outcome writes retrying now see.
        let deadline = p
            .stopping
            .deadline()
            .unwrap_or_else(|| Instant::now() + self.config.shutdown_grace);
        while !p.attempts.is_empty() {
            match tokio::time::timeout_at(deadline, p.attempts.join_next_with_id()).await {
                Ok(Some(joined)) => self.on_joined(&mut p, joined),
                Ok(None) => break,
                Err(_) => break,
            }
        }
        let cut_off: Vec<Delivery> = p.running.drain().map(|(_, d)| d).collect();
        p.attempts.abort_all();
        if !cut_off.is_empty() {
            tracing::info!(
                count = cut_off.len(),
                "giving back deliveries still in flight at shutdown"
            );
        }
        // What finished attempts let through is not started any more: give it back too.
        let late = std::mem::take(&mut p.admitted_later);
        let late = late
            .start
            .into_iter()
            .map(|c| c.delivery)
            .chain(late.release.into_iter().map(|(d, _)| d));
        self.give_back(cut_off.into_iter().chain(late), self.clock.now())
            .await;
        while p.writes.join_next().await.is_some() {}
        if !p.records.is_empty() {
            let leased_until = p
                .records_leased_until
                .take()
                .unwrap_or_else(|| self.clock.now());
            self.write(
                std::mem::take(&mut p.records),
                std::mem::take(&mut p.gone),
                leased_until,
                p.stopping.clone(),
            )
            .await;
        }
    }

    /// One attempt: build the message, send it, apply the state machine.
    async fn attempt(&self, claimed: ClaimedDelivery) -> Option<Finished> {
        let ClaimedDelivery {
            delivery,
            event,
            webhook,
        } = claimed;
        let started_at = self.clock.now();
        let message = OutboundMessage::build(&event, &webhook, started_at);
        let report = self
            .transport
            .send(&webhook.url, &message, self.config.attempt_timeout)
            .await;
        self.metrics
            .attempt_finished(&report.detail, report.duration);
        let policy = webhook.effective_retry_policy(&self.config.default_retry_policy);
        let finished_at = self.clock.now();
        // The lease the outcome is written under (the delivery is in flight, or `on_attempt`
        // refuses it below).
        let leased_until = match delivery.state() {
            DeliveryState::InFlight { leased_until, .. } => leased_until,
            _ => finished_at,
        };
        let (next, decision) = match delivery.on_attempt(
            &report.outcome,
            policy,
            finished_at,
            (self.jitter)(),
        ) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(delivery = %delivery.id(), error = %e, "claimed delivery was not in flight");
                return None;
            }
        };
        tracing::debug!(
            delivery = %delivery.id(),
            event = %event.id(),
            webhook = %webhook.id,
            outcome = ?report.outcome,
            detail = ?report.detail,
            decision = ?decision,
            "attempt finished"
        );
        let record = AttemptRecord {
            attempt: AttemptLog {
                number: next.attempts_made(),
                started_at,
                duration: report.duration,
                detail: report.detail,
                response_excerpt: report.response_excerpt,
                error: report.error,
            },
            delivery: next,
        };
        Some(Finished {
            target: webhook.id,
            ordered: webhook.ordered,
            global: webhook.scope == webhook_domain::WebhookScope::Global,
            record,
            outcome: report.outcome,
            decision,
            leased_until,
        })
    }

    /// How long to wait for the next claim when nothing is in flight: until the earliest time a
    /// claim could lease something, given the targets it would skip (a resting target's backlog,
    /// or an ordered target's deliveries behind one that waits, are no reason to claim again),
    /// and at most a poll interval.
    async fn idle_pause(&self, skip: &[WebhookId]) -> Duration {
        let poll = self.config.poll_interval;
        let now = self.clock.now();
        match self.queue.next_due_at(now, skip).await {
            Ok(Some(at)) => Duration::try_from(at - now)
                .unwrap_or(Duration::ZERO)
                .min(poll),
            _ => poll,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mockall::predicate::always;
    use time::OffsetDateTime;
    use time::macros::datetime;
    use webhook_domain::{
        AttemptDetail, CustomHeaders, Delivery, DeliveryId, DeliveryState, Event, EventId,
        EventType, Timestamp, WalletId, Webhook, WebhookId, WebhookScope, WebhookUrl,
    };
    use webhook_ports::{
        AttemptReport, MockClock, MockDeliveryQueue, MockDestination, MockWebhookRepository,
    };

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn claimed(policy: Option<RetryPolicy>, attempts_before: u32) -> ClaimedDelivery {
        let webhook_id = WebhookId::from_uuid(uuid::Uuid::from_u128(7));
        let mut webhook = Webhook::new(
            webhook_id,
            WebhookScope::Wallet(WalletId::DEFAULT),
            WebhookUrl::parse("http://127.0.0.1:9/hook").unwrap(),
            CustomHeaders::bearer("token").unwrap(),
            NOW,
        );
        webhook.retry_policy = policy;
        let event = Event::new(
            EventId::from_uuid(uuid::Uuid::from_u128(1)),
            Timestamp::from_datetime(NOW),
            EventType::parse("Custom.Test").unwrap(),
            serde_json::json!({"n": 1}),
            WalletId::DEFAULT,
        )
        .unwrap();
        let delivery = Delivery::restore(
            DeliveryId::from_uuid(uuid::Uuid::from_u128(3)),
            event.id(),
            webhook_id,
            NOW,
            attempts_before,
            attempts_before,
            DeliveryState::InFlight {
                attempt: attempts_before + 1,
                leased_until: NOW + time::Duration::minutes(1),
            },
        );
        ClaimedDelivery {
            delivery,
            event,
            webhook,
        }
    }

    fn report(detail: AttemptDetail) -> AttemptReport {
        AttemptReport::of(detail, Duration::from_millis(12))
    }

    fn status(code: u16) -> AttemptDetail {
        AttemptDetail::Response {
            status: code,
            retry_after: None,
        }
    }

    /// A mocked queue that hands out `batch` (honouring `skip` and `limit`) and then nothing,
    /// and sends every recorded batch and every release to the returned receivers.
    fn queue_over(
        batch: Vec<ClaimedDelivery>,
    ) -> (
        MockDeliveryQueue,
        tokio::sync::mpsc::UnboundedReceiver<Vec<AttemptRecord>>,
        tokio::sync::mpsc::UnboundedReceiver<Vec<Delivery>>,
    ) {
        let stored = Arc::new(std::sync::Mutex::new(batch));
        let mut queue = MockDeliveryQueue::new();
        queue.expect_claim_due().returning(move |owner, request| {
            assert_eq!(owner.0, "test-instance");
            assert_eq!((request.now, request.lease), (NOW, Duration::from_secs(60)));
            let (limit, skip) = (request.limit, &request.skip);
            let mut stored = stored.lock().unwrap();
            let mut taken = Vec::new();
            stored.retain(|c| {
                let take = taken.len() < limit as usize && !skip.contains(&c.webhook.id);
                if take {
                    taken.push(c.clone());
                }
                !take
            });
            Ok(taken)
        });
        queue.expect_next_due_at().returning(|_, _| Ok(None));
        let (records_tx, records) = tokio::sync::mpsc::unbounded_channel();
        queue
            .expect_record_attempts()
            .returning(move |owner, batch| {
                assert_eq!(owner.0, "test-instance");
                records_tx.send(batch.to_vec()).unwrap();
                Ok(Vec::new())
            });
        let (released_tx, released) = tokio::sync::mpsc::unbounded_channel();
        queue.expect_release().returning(move |_, deliveries| {
            released_tx.send(deliveries.to_vec()).unwrap();
            Ok(())
        });
        (queue, records, released)
    }

    /// Receives recorded batches until `count` records have arrived (10 s at most).
    async fn records(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<AttemptRecord>>,
        count: usize,
    ) -> Vec<AttemptRecord> {
        let mut got = Vec::new();
        while got.len() < count {
            let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("no outcome recorded in time")
                .unwrap();
            got.extend(batch);
        }
        got
    }

    /// Runs the dispatcher over one delivery whose attempt ends in `outcome` until it is
    /// recorded, then stops it. `expect_disable` says whether the webhook must be disabled.
    async fn one_attempt(
        claimed_delivery: ClaimedDelivery,
        outcome: AttemptDetail,
        expect_disable: bool,
    ) -> Vec<AttemptRecord> {
        let (queue, mut recorded, _released) = queue_over(vec![claimed_delivery]);
        let mut transport = MockDestination::new();
        transport
            .expect_send()
            .times(1)
            .returning(move |url, message, timeout| {
                assert_eq!(url.as_str(), "http://127.0.0.1:9/hook");
                assert_eq!(message.header("authorization"), Some("Bearer token"));
                assert_eq!(
                    message.header("webhook-id"),
                    Some("00000000-0000-0000-0000-000000000001")
                );
                assert_eq!(timeout, Duration::from_secs(5));
                report(outcome)
            });
        let mut webhooks = MockWebhookRepository::new();
        webhooks
            .expect_disable_webhook()
            .with(
                mockall::predicate::eq(WebhookId::from_uuid(uuid::Uuid::from_u128(7))),
                always(),
            )
            .times(usize::from(expect_disable))
            .returning(|_, _| Ok(()));
        let dispatcher = dispatcher(queue, webhooks, Arc::new(transport), 16);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        let got = records(&mut recorded, 1).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        got
    }

    /// A claim takes half a batch of one target, or twice the initial limit when that is more:
    /// below a whole batch while a batch has room for two targets.
    #[test]
    fn a_claim_takes_half_a_batch_of_one_target_or_twice_its_initial_limit() {
        let config = |batch_size: u32, initial: u32| DispatcherConfig {
            batch_size,
            lease: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(50),
            default_retry_policy: RetryPolicy::identus(),
            max_in_flight: 64,
            per_target: ConcurrencyLimits::new(1, initial, 1_024).unwrap(),
            circuit_breaker: webhook_domain::CircuitBreakerConfig::default(),
            record_batch: 8,
            record_delay: Duration::from_millis(5),
            shutdown_grace: Duration::from_millis(200),
        };
        assert_eq!(config(128, 16).claim_per_target(), 64);
        assert_eq!(config(128, 48).claim_per_target(), 96);
        assert_eq!(config(16, 4).claim_per_target(), 8);
        assert_eq!(config(1, 1).claim_per_target(), 2);
    }

    /// A dispatcher over the given mocks, a clock stopped at `NOW`, no jitter, batches of 16,
    /// a 60 s lease, a 5 s attempt timeout, the identus default policy, and
    /// `per_target` attempts in flight per target.
    fn dispatcher(
        queue: MockDeliveryQueue,
        webhooks: MockWebhookRepository,
        transport: Arc<dyn Destination>,
        per_target: usize,
    ) -> Arc<Dispatcher> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        Arc::new(Dispatcher {
            queue: Arc::new(queue),
            webhooks: Arc::new(webhooks),
            transport,
            clock: Arc::new(clock),
            jitter: || Jitter::MAX,
            owner: LeaseOwner("test-instance".into()),
            config: DispatcherConfig {
                batch_size: 16,
                lease: Duration::from_secs(60),
                attempt_timeout: Duration::from_secs(5),
                poll_interval: Duration::from_millis(50),
                default_retry_policy: RetryPolicy::identus(),
                max_in_flight: 64,
                per_target: ConcurrencyLimits::fixed(u32::try_from(per_target).unwrap()),
                circuit_breaker: webhook_domain::CircuitBreakerConfig::default(),
                record_batch: 8,
                record_delay: Duration::from_millis(5),
                shutdown_grace: Duration::from_millis(200),
            },
            metrics: Arc::new(Metrics::new()),
        })
    }

    #[tokio::test]
    async fn a_2xx_is_recorded_as_delivered() {
        let records = one_attempt(claimed(None, 0), status(204), false).await;
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].delivery.state(),
            DeliveryState::Delivered { at: NOW }
        );
        assert_eq!(records[0].attempt.number, 1);
        assert_eq!(records[0].attempt.detail, status(204));
        assert_eq!(records[0].attempt.duration, Duration::from_millis(12));
    }

    #[tokio::test]
    async fn a_500_is_retried_after_the_default_policy_interval() {
        let records = one_attempt(claimed(None, 0), status(500), false).await;
        assert_eq!(
            records[0].delivery.state(),
            DeliveryState::RetryScheduled {
                at: NOW + time::Duration::seconds(5)
            }
        );
    }

    #[tokio::test]
    async fn the_target_policy_wins_over_the_default() {
        let policy = RetryPolicy::new(
            webhook_domain::Backoff::Fixed {
                interval: Duration::from_millis(100),
            },
            5,
            None,
        )
        .unwrap();
        let records = one_attempt(claimed(Some(policy), 0), AttemptDetail::Timeout, false).await;
        assert_eq!(
            records[0].delivery.state(),
            DeliveryState::RetryScheduled {
                at: NOW + time::Duration::milliseconds(100)
            }
        );
    }

    #[tokio::test]
    async fn the_last_allowed_failure_exhausts_the_delivery() {
        let records = one_attempt(claimed(None, 2), AttemptDetail::ConnectionFailed, false).await;
        assert_eq!(
            records[0].delivery.state(),
            DeliveryState::Exhausted { at: NOW }
        );
        assert_eq!(records[0].attempt.number, 3);
    }

    #[tokio::test]
    async fn a_requeued_delivery_numbers_its_next_attempt_after_the_earlier_ones() {
        // Three attempts made before a requeue gave it a fresh budget.
        let mut requeued = claimed(None, 0);
        requeued.delivery = Delivery::restore(
            requeued.delivery.id(),
            requeued.delivery.event_id(),
            requeued.delivery.webhook_id(),
            NOW,
            0,
            3,
            requeued.delivery.state(),
        );
        let records = one_attempt(requeued, status(500), false).await;
        assert_eq!(records[0].delivery.attempts(), 1);
        assert_eq!(records[0].attempt.number, 4);
    }

    #[tokio::test]
    async fn a_410_cancels_the_delivery_and_disables_the_target() {
        let records = one_attempt(claimed(None, 0), status(410), true).await;
        assert!(matches!(
            records[0].delivery.state(),
            DeliveryState::Cancelled {
                reason: webhook_domain::CancelReason::TargetGone,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn attempts_and_recorded_final_states_are_counted() {
        let (queue, mut recorded, _released) = queue_over(vec![claimed(None, 0)]);
        let mut transport = MockDestination::new();
        transport
            .expect_send()
            .times(1)
            .returning(|_, _, _| report(status(200)));
        let dispatcher = dispatcher(queue, MockWebhookRepository::new(), Arc::new(transport), 16);
        let metrics = dispatcher.metrics.clone();
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        records(&mut recorded, 1).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        let text = metrics
            .render(NOW, None, crate::metrics::PoolUsage::default())
            .unwrap();
        for line in [
            "webhookd_attempts_total{outcome=\"success\"} 1",
            "webhookd_attempt_duration_seconds_count 1",
            "webhookd_deliveries_finished_total{state=\"delivered\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[tokio::test]
    async fn an_empty_queue_sends_and_records_nothing() {
        let (queue, mut recorded, _released) = queue_over(Vec::new());
        let mut transport = MockDestination::new();
        transport.expect_send().never();
        let dispatcher = dispatcher(queue, MockWebhookRepository::new(), Arc::new(transport), 16);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        tokio::time::sleep(Duration::from_millis(120)).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        assert!(recorded.try_recv().is_err());
    }

    /// A transport whose target `hang` never answers (until the test ends) while every other
    /// target answers 200 at once; it counts the most attempts in flight to `hang`.
    #[derive(Debug)]
    struct HangingTarget {
        hang: WebhookId,
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Destination for HangingTarget {
        async fn send(
            &self,
            url: &webhook_domain::WebhookUrl,
            _message: &OutboundMessage,
            _timeout: Duration,
        ) -> AttemptReport {
            use std::sync::atomic::Ordering::SeqCst;
            if url.as_str().contains(&self.hang.to_string()) {
                let now = self.in_flight.fetch_add(1, SeqCst) + 1;
                self.most.fetch_max(now, SeqCst);
                std::future::pending::<()>().await;
            }
            report(status(200))
        }
    }

    fn claimed_for(target: WebhookId, n: u128) -> ClaimedDelivery {
        let mut c = claimed(None, 0);
        c.webhook.id = target;
        c.webhook.url =
            webhook_domain::WebhookUrl::parse(&format!("http://127.0.0.1:9/{target}")).unwrap();
        c.delivery = Delivery::restore(
            DeliveryId::from_uuid(uuid::Uuid::from_u128(n)),
            c.event.id(),
            target,
            NOW,
            0,
            0,
            DeliveryState::InFlight {
                attempt: 1,
                leased_until: NOW + time::Duration::minutes(1),
            },
        );
        c
    }

    /// A burst of answers while the outcome writes are slow: the dispatcher does not wait for
    /// a write before gathering the next outcomes, so later writes carry more than a
    /// `record_batch` each, and every outcome is written exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn outcomes_gather_while_writes_are_slow_and_each_is_written_once() {
        const DELIVERIES: u128 = 64;
        let target = WebhookId::from_uuid(uuid::Uuid::from_u128(300));
        let batch: Vec<_> = (0..DELIVERIES).map(|n| claimed_for(target, n)).collect();
        let stored = Arc::new(std::sync::Mutex::new(batch));
        let mut queue = MockDeliveryQueue::new();
        queue.expect_claim_due().returning(move |_, request| {
            let mut stored = stored.lock().unwrap();
            let take = stored.len().min(request.limit as usize);
            Ok(stored.drain(..take).collect())
        });
        queue.expect_next_due_at().returning(|_, _| Ok(None));
        let (records_tx, mut recorded) = tokio::sync::mpsc::unbounded_channel();
        queue.expect_record_attempts().returning(move |_, batch| {
            // A slow database: each write takes 100 ms (a worker thread of its own).
            std::thread::sleep(Duration::from_millis(100));
            records_tx.send(batch.to_vec()).unwrap();
            Ok(Vec::new())
        });
        queue.expect_release().returning(|_, _| Ok(()));
        let mut transport = MockDestination::new();
        transport
            .expect_send()
            .returning(|_, _, _| report(status(200)));
        let dispatcher = dispatcher(
            queue,
            MockWebhookRepository::new(),
            Arc::new(transport),
            usize::try_from(DELIVERIES).unwrap(),
        );
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        let mut sizes = Vec::new();
        let mut ids = std::collections::HashSet::new();
        while ids.len() < DELIVERIES as usize {
            let batch = tokio::time::timeout(Duration::from_secs(10), recorded.recv())
                .await
                .expect("no outcome recorded in time")
                .unwrap();
            sizes.push(batch.len());
            for record in batch {
                assert!(ids.insert(record.delivery.id()), "an outcome written twice");
            }
        }
        stop.send(true).unwrap();
        running.await.unwrap();
        assert!(recorded.try_recv().is_err(), "an outcome written twice");
        // record_batch is 8: 64 outcomes would take 8 writes if each waited for its turn.
        assert!(
            sizes.iter().any(|&n| n > 8),
            "no write gathered more than a record_batch: {sizes:?}"
        );
        assert!(sizes.len() < 8, "writes of {sizes:?}");
    }

    #[tokio::test]
    async fn a_hanging_target_holds_only_its_own_slots_and_is_given_back_at_shutdown() {
        let slow = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let fast = WebhookId::from_uuid(uuid::Uuid::from_u128(200));
        // The hanging target's deliveries come first, so they are claimed first.
        let batch: Vec<_> = (0..6)
            .map(|n| claimed_for(slow, n))
            .chain((10..16).map(|n| claimed_for(fast, n)))
            .collect();
        let (queue, mut recorded, mut released) = queue_over(batch);
        let transport = Arc::new(HangingTarget {
            hang: slow,
            in_flight: Default::default(),
            most: Default::default(),
        });
        let dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport.clone(), 2);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));

        // Every delivery to the fast target is delivered while the slow one hangs.
        let got = records(&mut recorded, 6).await;
        assert!(got.iter().all(|r| r.delivery.webhook_id() == fast));
        assert!(
            got.iter()
                .all(|r| matches!(r.delivery.state(), DeliveryState::Delivered { .. }))
        );
        assert_eq!(
            transport.most.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the hanging target got exactly its two slots"
        );

        // At shutdown the hanging attempts are cut off after the grace period and their
        // leases given back, as are the deliveries that waited for a slot.
        stop.send(true).unwrap();
        running.await.unwrap();
        let mut given_back = Vec::new();
        while let Ok(batch) = released.try_recv() {
            given_back.extend(batch);
        }
        assert!(given_back.iter().all(|d| d.webhook_id() == slow));
        assert!(
            given_back
                .iter()
                .all(|d| matches!(d.state(), DeliveryState::Pending { due } if due == NOW))
        );
        // Two were in flight; the waiting ones (claimed in the first batch) went back too.
        let claimed_slow = given_back.len();
        assert!((2..=6).contains(&claimed_slow), "{claimed_slow}");
        assert!(
            recorded.try_recv().is_err(),
            "no outcome for cut-off attempts"
        );
    }

    #[tokio::test]
    async fn a_full_claim_for_targets_now_busy_is_not_followed_by_a_claim_that_skips_them() {
        // One target that never answers, with far more due deliveries than its slots: the
        // first claim fills it, and a second claim at once could only skip it and find
        // nothing, after scanning its whole backlog in storage.
        let slow = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let due: Vec<_> = (0..40).map(|n| claimed_for(slow, n)).collect();
        let skips = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut queue = MockDeliveryQueue::new();
        let seen = Arc::clone(&skips);
        let stored = Arc::new(std::sync::Mutex::new(due));
        queue.expect_claim_due().returning(move |_, request| {
            let (limit, skip) = (request.limit, &request.skip);
            seen.lock().unwrap().push(skip.to_vec());
            let mut stored = stored.lock().unwrap();
            if skip.contains(&slow) {
                return Ok(Vec::new());
            }
            let take = stored.len().min(limit as usize);
            Ok(stored.drain(..take).collect())
        });
        queue.expect_next_due_at().returning(|_, _| Ok(None));
        queue.expect_release().returning(|_, _| Ok(()));
        let transport = Arc::new(HangingTarget {
            hang: slow,
            in_flight: Default::default(),
            most: Default::default(),
        });
        let mut dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport.clone(), 2);
        // No poll during the test: only a full claim could bring the next one.
        Arc::get_mut(&mut dispatcher).unwrap().config.poll_interval = Duration::from_secs(3600);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        for _ in 0..1000 {
            if transport
                .in_flight
                .load(std::sync::atomic::Ordering::SeqCst)
                == 2
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            transport
                .in_flight
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        // Give the loop time to make the claim it must not make.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        let skips = skips.lock().unwrap();
        assert_eq!(
            skips.as_slice(),
            &[Vec::<WebhookId>::new()],
            "one claim, skipping nothing; then none while the only target is busy"
        );
    }

    #[tokio::test]
    async fn completions_bring_no_claim_while_the_only_target_is_still_busy() {
        // A fast target with a backlog larger than its slots: completions free slots, but
        // while deliveries still wait here for them, a claim could only skip the target.
        let target = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let due: Vec<_> = (0..100).map(|n| claimed_for(target, n)).collect();
        let skips = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&skips);
        let stored = Arc::new(std::sync::Mutex::new(due));
        let mut queue = MockDeliveryQueue::new();
        queue.expect_claim_due().returning(move |_, request| {
            let (limit, skip) = (request.limit, &request.skip);
            seen.lock().unwrap().push(skip.to_vec());
            let mut stored = stored.lock().unwrap();
            if skip.contains(&target) {
                return Ok(Vec::new());
            }
            let take = stored.len().min(limit as usize);
            Ok(stored.drain(..take).collect())
        });
        queue.expect_next_due_at().returning(|_, _| Ok(None));
        queue.expect_release().returning(|_, _| Ok(()));
        let (records_tx, mut recorded) = tokio::sync::mpsc::unbounded_channel();
        queue.expect_record_attempts().returning(move |_, batch| {
            records_tx.send(batch.to_vec()).unwrap();
            Ok(Vec::new())
        });
        let transport = Arc::new(HangingTarget {
            hang: WebhookId::from_uuid(uuid::Uuid::from_u128(999)),
            in_flight: Default::default(),
            most: Default::default(),
        });
        let mut dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport, 2);
        Arc::get_mut(&mut dispatcher).unwrap().config.poll_interval = Duration::from_secs(3600);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        let got = records(&mut recorded, 100).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        assert_eq!(got.len(), 100);
        let skips = skips.lock().unwrap();
        assert!(
            skips.iter().all(Vec::is_empty),
            "a claim skipped the only target: {} of {} claims",
            skips.iter().filter(|s| !s.is_empty()).count(),
            skips.len()
        );
    }

    #[tokio::test]
    async fn a_dispatcher_with_no_room_left_sleeps_instead_of_spinning() {
        // Every slot of the whole dispatcher taken by a target that never answers, and more
        // due work in storage: the loop must wait for a completion, not go round and round.
        let slow = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let stored = Arc::new(std::sync::Mutex::new(
            (0..40).map(|n| claimed_for(slow, n)).collect::<Vec<_>>(),
        ));
        let mut queue = MockDeliveryQueue::new();
        queue.expect_claim_due().returning(move |_, request| {
            let (limit, skip) = (request.limit, &request.skip);
            let mut stored = stored.lock().unwrap();
            if skip.contains(&slow) {
                return Ok(Vec::new());
            }
            let take = stored.len().min(limit as usize);
            Ok(stored.drain(..take).collect())
        });
        queue.expect_next_due_at().returning(|_, _| Ok(None));
        queue.expect_release().returning(|_, _| Ok(()));
        let transport = Arc::new(HangingTarget {
            hang: slow,
            in_flight: Default::default(),
            most: Default::default(),
        });
        let mut dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport.clone(), 4);
        // Each turn of the loop reads the clock: count the reads.
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut clock = MockClock::new();
        let counted = Arc::clone(&reads);
        clock.expect_now().returning(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            NOW
        });
        let only = Arc::get_mut(&mut dispatcher).unwrap();
        only.clock = Arc::new(clock);
        only.config.max_in_flight = 2;
        only.config.poll_interval = Duration::from_secs(3600);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        for _ in 0..1000 {
            if transport
                .in_flight
                .load(std::sync::atomic::Ordering::SeqCst)
                == 2
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = reads.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let during = reads.load(std::sync::atomic::Ordering::SeqCst) - before;
        stop.send(true).unwrap();
        running.await.unwrap();
        assert!(
            during < 100,
            "the loop read the clock {during} times in 300 ms with nothing to do"
        );
    }

    /// A transport that fails every attempt with 500, counting them.
    #[derive(Debug, Default)]
    struct Failing {
        attempts: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Destination for Failing {
        async fn send(
            &self,
            _url: &webhook_domain::WebhookUrl,
            _message: &OutboundMessage,
            _timeout: Duration,
        ) -> AttemptReport {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            report(status(500))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rows_that_cannot_be_claimed_bring_claims_at_the_poll_rate_only() {
        // Storage holds a large backlog due now for a target whose circuit opens (it fails
        // every attempt), and an ordered target whose first delivery waits an hour. Claims
        // that skip the resting target find nothing, and the next due time the store gives
        // for such a claim is an hour away: an idle dispatcher polls, it does not spin.
        let resting = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let claims = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let backlog = Arc::new(std::sync::Mutex::new(
            (0..1000)
                .map(|n| claimed_for(resting, n))
                .collect::<Vec<_>>(),
        ));
        let mut queue = MockDeliveryQueue::new();
        let counted = Arc::clone(&claims);
        queue.expect_claim_due().returning(move |_, request| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if request.skip.contains(&resting) {
                return Ok(Vec::new());
            }
            let mut backlog = backlog.lock().unwrap();
            let take = backlog.len().min(request.limit as usize);
            Ok(backlog.drain(..take).collect())
        });
        queue.expect_next_due_at().returning(move |now, skip| {
            Ok(Some(if skip.contains(&resting) {
                now + time::Duration::hours(1)
            } else {
                now
            }))
        });
        queue
            .expect_record_attempts()
            .returning(|_, _| Ok(Vec::new()));
        queue.expect_release().returning(|_, _| Ok(()));
        let transport = Arc::new(Failing::default());
        let mut dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport.clone(), 2);
        // Each turn of the loop reads the clock: count the reads.
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut clock = MockClock::new();
        let read = Arc::clone(&reads);
        clock.expect_now().returning(move || {
            read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            NOW
        });
        Arc::get_mut(&mut dispatcher).unwrap().clock = Arc::new(clock);
        let poll = dispatcher.config.poll_interval;
        let (stop, stopped) = watch::channel(false);
        let stop = Arc::new(stop);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        // Paused time: the runtime moves the clock on whenever every task waits. A loop that
        // never waits keeps it still, so a watchdog on the real clock stops it, and the count
        // below says what it did.
        let watchdog = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            let _ = watchdog.send(true);
        });
        let window = Duration::from_secs(10);
        tokio::time::sleep(window).await;
        let _ = stop.send(true);
        running.await.unwrap();
        let attempts = transport.attempts.load(std::sync::atomic::Ordering::SeqCst);
        // The fifth failure opens the circuit; with two slots a sixth may be under way then.
        assert!((5..=6).contains(&attempts), "{attempts} attempts");
        let claims = claims.load(std::sync::atomic::Ordering::SeqCst);
        let polls = (window.as_millis() / poll.as_millis()) as usize;
        assert!(
            claims <= polls + 10,
            "{claims} claims in {window:?} with a poll every {poll:?} ({polls} polls)"
        );
        let reads = reads.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            reads <= 20 * polls,
            "the loop read the clock {reads} times in {polls} polls: it spins"
        );
    }

    #[tokio::test]
    async fn a_dropped_target_starts_nothing_more_and_gives_back_what_waits() {
        // A target that never answers, with two slots and six deliveries claimed: two in
        // flight, four waiting. Word that it was deleted gives the four back at once, and
        // what a later claim brings of it is given back too, never started.
        let slow = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let first: Vec<_> = (0..6).map(|n| claimed_for(slow, n)).collect();
        let late = claimed_for(slow, 50);
        let batches = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from([
            first,
            vec![late],
        ])));
        let mut queue = MockDeliveryQueue::new();
        queue
            .expect_claim_due()
            .returning(move |_, _| Ok(batches.lock().unwrap().pop_front().unwrap_or_default()));
        queue.expect_next_due_at().returning(|_, _| Ok(None));
        let (released_tx, mut released) = tokio::sync::mpsc::unbounded_channel();
        queue.expect_release().returning(move |_, deliveries| {
            released_tx.send(deliveries.to_vec()).unwrap();
            Ok(())
        });
        let transport = Arc::new(HangingTarget {
            hang: slow,
            in_flight: Default::default(),
            most: Default::default(),
        });
        let dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport.clone(), 2);
        let (tell, changes) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let running = tokio::spawn(dispatcher.run_with(wake.clone(), changes, stopped));
        for _ in 0..1000 {
            if transport
                .in_flight
                .load(std::sync::atomic::Ordering::SeqCst)
                == 2
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tell.send(slow).unwrap();
        let given_back = tokio::time::timeout(Duration::from_secs(5), released.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(given_back.len(), 4, "the four that waited");
        // A claim under way (here: the next one) brings another: given back, not started.
        wake.notify_one();
        let given_back = tokio::time::timeout(Duration::from_secs(5), released.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(given_back.len(), 1);
        assert_eq!(
            transport.most.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "nothing started after the two in flight"
        );
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    /// A mocked queue that hands out `batch` (honouring `skip` and `limit`) to claims at any
    /// time, then nothing, and takes back whatever is given back; writes are left to the test.
    fn queue_without_writes(batch: Vec<ClaimedDelivery>) -> MockDeliveryQueue {
        let stored = Arc::new(std::sync::Mutex::new(batch));
        let mut queue = MockDeliveryQueue::new();
        queue.expect_claim_due().returning(move |_, request| {
            let mut stored = stored.lock().unwrap();
            let mut taken = Vec::new();
            stored.retain(|c| {
                let take =
                    taken.len() < request.limit as usize && !request.skip.contains(&c.webhook.id);
                if take {
                    taken.push(c.clone());
                }
                !take
            });
            Ok(taken)
        });
        queue.expect_next_due_at().returning(|_, _| Ok(None));
        queue.expect_release().returning(|_, _| Ok(()));
        queue
    }

    /// A transport that answers each target with the status `answers` gives it.
    fn answering(answers: Vec<(WebhookId, u16)>) -> Arc<MockDestination> {
        let mut transport = MockDestination::new();
        transport.expect_send().returning(move |url, _, _| {
            let (_, code) = answers
                .iter()
                .find(|(target, _)| url.as_str().ends_with(&target.to_string()))
                .expect("a target of the test");
            report(status(*code))
        });
        Arc::new(transport)
    }

    fn database_down() -> OutboxError {
        OutboxError::Unavailable("the database is down".into())
    }

    /// The value of the sample `name` (without labels) in the rendered metrics.
    fn sample(metrics: &Metrics, now: OffsetDateTime, name: &str) -> Option<String> {
        let text = metrics
            .render(now, None, crate::metrics::PoolUsage::default())
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_outcome_write_is_retried_and_a_410_disables_its_target_only_once_stored() {
        let fine = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let gone = WebhookId::from_uuid(uuid::Uuid::from_u128(200));
        let mut queue = queue_without_writes(vec![claimed_for(fine, 1), claimed_for(gone, 2)]);
        // What the ports were asked, in order.
        let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (records_tx, mut recorded) = tokio::sync::mpsc::unbounded_channel();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let written = Arc::clone(&log);
        queue.expect_record_attempts().returning(move |_, batch| {
            let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let mut ids: Vec<_> = batch.iter().map(|r| r.delivery.id().to_string()).collect();
            ids.sort();
            if call <= 2 {
                written.lock().unwrap().push(format!("failed {ids:?}"));
                return Err(database_down());
            }
            written.lock().unwrap().push(format!("stored {ids:?}"));
            records_tx.send(batch.to_vec()).unwrap();
            Ok(Vec::new())
        });
        let mut webhooks = MockWebhookRepository::new();
        let disabled = Arc::clone(&log);
        webhooks
            .expect_disable_webhook()
            .returning(move |webhook, _| {
                disabled.lock().unwrap().push(format!("disabled {webhook}"));
                Ok(())
            });
        let transport = answering(vec![(fine, 200), (gone, 410)]);
        let dispatcher = dispatcher(queue, webhooks, transport, 2);
        let metrics = Arc::clone(&dispatcher.metrics);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        let got = records(&mut recorded, 2).await;
        stop.send(true).unwrap();
        running.await.unwrap();

        assert_eq!(got.len(), 2, "each outcome stored once");
        let both = format!(
            "{:?}",
            [
                DeliveryId::from_uuid(uuid::Uuid::from_u128(1)).to_string(),
                DeliveryId::from_uuid(uuid::Uuid::from_u128(2)).to_string(),
            ]
        );
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                format!("failed {both}"),
                format!("failed {both}"),
                format!("stored {both}"),
                format!("disabled {gone}"),
            ],
            "the same batch again until it is stored, then the 410 target disabled"
        );
        assert_eq!(
            sample(&metrics, NOW, "webhookd_outcome_write_retries_total").as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(&metrics, NOW, "webhookd_outcomes_unrecorded_total").as_deref(),
            Some("0")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outcome_write_that_keeps_failing_stops_before_the_leases_end_and_is_counted() {
        let start = Instant::now();
        let fine = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let gone = WebhookId::from_uuid(uuid::Uuid::from_u128(200));
        // Both leases end a minute after the claim (the clock stays at the claim's time).
        let mut queue = queue_without_writes(vec![claimed_for(fine, 1), claimed_for(gone, 2)]);
        let tries = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tried = Arc::clone(&tries);
        queue.expect_record_attempts().returning(move |_, _| {
            tried.lock().unwrap().push(Instant::now());
            Err(database_down())
        });
        let disables = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&disables);
        let mut webhooks = MockWebhookRepository::new();
        webhooks.expect_disable_webhook().returning(move |_, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        let transport = answering(vec![(fine, 200), (gone, 410)]);
        let dispatcher = dispatcher(queue, webhooks, transport, 2);
        let metrics = Arc::clone(&dispatcher.metrics);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        tokio::time::sleep(Duration::from_secs(120)).await;
        stop.send(true).unwrap();
        running.await.unwrap();

        let tries = tries.lock().unwrap();
        let lease_end = start + Duration::from_secs(60);
        let last = *tries.last().expect("a write");
        assert!(tries.len() > 10, "{} tries", tries.len());
        assert!(
            last < lease_end - Duration::from_millis(500),
            "tried {:?} after the claim, with the leases ending at 60 s",
            last - start
        );
        assert!(
            last > lease_end - Duration::from_secs(5),
            "gave up {:?} after the claim, long before the leases end",
            last - start
        );
        assert_eq!(
            disables.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a 410 whose attempt is not stored disables nothing"
        );
        assert_eq!(
            sample(&metrics, NOW, "webhookd_outcomes_unrecorded_total").as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(&metrics, NOW, "webhookd_outcome_write_retries_total"),
            Some((tries.len() - 1).to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_outcome_write_retries_within_its_grace() {
        // Four outcomes written one by one to a database that is down: two writes retry and
        // the loop waits for one of them to write the third.
        let targets: Vec<_> = (1..=4)
            .map(|n| WebhookId::from_uuid(uuid::Uuid::from_u128(100 * n)))
            .collect();
        let mut queue = queue_without_writes(
            targets
                .iter()
                .zip(1..)
                .map(|(target, n)| claimed_for(*target, n))
                .collect(),
        );
        let tries = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tried = Arc::clone(&tries);
        queue.expect_record_attempts().returning(move |_, _| {
            tried.lock().unwrap().push(Instant::now());
            Err(database_down())
        });
        let transport = answering(targets.iter().map(|t| (*t, 200)).collect());
        let mut dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport, 2);
        let grace = Duration::from_secs(3);
        let only = Arc::get_mut(&mut dispatcher).unwrap();
        only.config.record_batch = 1;
        only.config.shutdown_grace = grace;
        let metrics = Arc::clone(&dispatcher.metrics);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stopped_at = Instant::now();
        stop.send(true).unwrap();
        tokio::time::timeout(grace + Duration::from_secs(1), running)
            .await
            .expect("the shutdown ends within its grace")
            .unwrap();

        let tries = tries.lock().unwrap();
        assert!(
            tries.iter().any(|at| *at > stopped_at),
            "writes are retried during the grace"
        );
        assert!(
            tries.iter().all(|at| *at <= stopped_at + grace),
            "no write is tried after the grace"
        );
        assert_eq!(
            sample(&metrics, NOW, "webhookd_outcomes_unrecorded_total").as_deref(),
            Some("4")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_shows_in_the_metrics_until_its_idle_target_is_forgotten() {
        let target = WebhookId::from_uuid(uuid::Uuid::from_u128(100));
        let mut queue = queue_without_writes(vec![claimed_for(target, 1)]);
        queue
            .expect_record_attempts()
            .returning(|_, _| Ok(Vec::new()));
        let transport = answering(vec![(target, 500)]);
        let mut dispatcher = dispatcher(queue, MockWebhookRepository::new(), transport, 2);
        // A clock the test moves on.
        let elapsed = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let read = Arc::clone(&elapsed);
        let mut clock = MockClock::new();
        clock.expect_now().returning(move || {
            NOW + time::Duration::seconds(read.load(std::sync::atomic::Ordering::SeqCst))
        });
        let only = Arc::get_mut(&mut dispatcher).unwrap();
        only.clock = Arc::new(clock);
        only.config.circuit_breaker = webhook_domain::CircuitBreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(30),
        };
        let metrics = Arc::clone(&dispatcher.metrics);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(Arc::new(Notify::new()), stopped));

        // The one attempt fails: the circuit opens for 30 s.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let open = "webhookd_circuit_open_targets";
        assert_eq!(sample(&metrics, NOW, open).as_deref(), Some("1"));
        // Its rest is over and it has no work: the next claims forget it.
        elapsed.store(31, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let later = NOW + time::Duration::seconds(31);
        assert_eq!(sample(&metrics, later, open).as_deref(), Some("0"));
        stop.send(true).unwrap();
        running.await.unwrap();
    }
}
