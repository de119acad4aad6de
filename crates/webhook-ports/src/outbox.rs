//! The transactional outbox: events, their deliveries, and the attempts made.
//!
//! [`EventOutbox`] is what producers and the API use; [`DeliveryQueue`] is what dispatchers
//! use. One adapter usually implements both over the same tables.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use time::OffsetDateTime;
use webhook_domain::{
    AttemptDetail, Delivery, DeliveryId, DeliveryStateKind, Event, EventId, EventType,
    RedeliveryJob, RedeliveryJobId, WalletId, Webhook, WebhookId,
};

use crate::{BoxError, Page};

#[derive(Debug, Error)]
pub enum OutboxError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the storage backend failed")]
    Backend(#[source] BoxError),
}

/// A producer's idempotency key with a fingerprint of the request it came with, so a reused
/// key with a different request can be told from a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub event_id: EventId,
    /// Deliveries created by the first publish.
    pub deliveries: u32,
    /// True when this publish repeated an earlier one and stored nothing.
    pub replayed: bool,
}

/// One event of a batch publish.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishItem {
    pub event: Event,
    pub idempotency: Option<Idempotency>,
}

/// Which dispatcher holds a lease: an id unique per running instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(pub String);

/// What a claim asks for: see [`DeliveryQueue::claim_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The claim's time: what is due by then may be leased.
    pub now: OffsetDateTime,
    /// How long the leases last from `now`.
    pub lease: Duration,
    /// The most deliveries in all.
    pub limit: u32,
    /// The most deliveries of one target.
    pub per_target: u32,
    /// Targets to leave alone: busy or resting in the claimer.
    pub skip: Vec<WebhookId>,
}

/// A leased delivery with everything needed to attempt it, read in the claim itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    /// In the `InFlight` state, leased to the claimer.
    pub delivery: Delivery,
    pub event: Event,
    pub webhook: Webhook,
}

/// One finished attempt and the delivery's state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The delivery after [`Delivery::on_attempt`].
    pub delivery: Delivery,
    pub attempt: AttemptLog,
}

/// What is kept of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptLog {
    pub number: u32,
    pub started_at: OffsetDateTime,
    pub duration: Duration,
    pub detail: AttemptDetail,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

/// The most recent attempts of one delivery, as [`EventOutbox::list_attempts_of`] returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentAttempts {
    /// The attempts logged for the delivery in all.
    pub total: u64,
    /// The most recent of them, at most as many as asked for, in the order they were made.
    pub attempts: Vec<AttemptLog>,
}

/// The deliveries waiting to be claimed at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Unfinished deliveries claimable at that moment.
    pub due: u64,
    /// The earliest due time among them (a due time or an expired lease's end); `None` when
    /// `due` is 0.
    pub oldest_due_at: Option<OffsetDateTime>,
}

/// Filters for listing deliveries; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub event_id: Option<EventId>,
    pub webhook_id: Option<WebhookId>,
    pub state: Option<DeliveryStateKind>,
}

/// A search of a wallet's deliveries, newest first: by creation time, then by id, both
/// descending. `None` filters match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySearch {
    pub state: Option<DeliveryStateKind>,
    /// The type of the delivery's event.
    pub event_type: Option<EventType>,
    /// Deleted webhooks too: their deliveries stay searchable.
    pub webhook_id: Option<WebhookId>,
    /// Created at or after.
    pub since: Option<OffsetDateTime>,
    /// Created before.
    pub until: Option<OffsetDateTime>,
    /// Keyset pagination: only deliveries after this one in the search's order (the last row
    /// of the previous page).
    pub after: Option<SearchPosition>,
    /// The most deliveries answered.
    pub limit: u32,
}

/// A delivery's place in the search order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchPosition {
    pub created_at: OffsetDateTime,
    pub id: DeliveryId,
}

/// A delivery found by [`EventOutbox::search_deliveries`], with what the search shows of it
/// beside its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDelivery {
    pub delivery: Delivery,
    pub event_type: EventType,
    pub created_at: OffsetDateTime,
}

impl FoundDelivery {
    /// The delivery's place in the search order.
    pub fn position(&self) -> SearchPosition {
        SearchPosition {
            created_at: self.created_at,
            id: self.delivery.id(),
        }
    }
}

/// The time window of [`EventOutbox::webhook_stats`]: `buckets` consecutive buckets of
/// `bucket`, the first starting at `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsWindow {
    pub since: OffsetDateTime,
    pub bucket: Duration,
    pub buckets: u32,
}

impl StatsWindow {
    /// The end of the last bucket (excluded).
    pub fn until(&self) -> OffsetDateTime {
        self.since + self.bucket * self.buckets
    }
}

/// What the attempts of a time span came to. An attempt succeeded when its outcome is a
/// response with a status from 200 to 299, or `accepted`; every other attempt failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptStats {
    pub attempts: u64,
    pub succeeded: u64,
    /// The attempts' durations added up.
    pub total_duration: Duration,
    /// The longest; `None` when there was no attempt.
    pub max_duration: Option<Duration>,
}

impl AttemptStats {
    pub fn failed(&self) -> u64 {
        self.attempts - self.succeeded
    }

    /// Both spans together.
    #[must_use]
    pub fn merge(self, other: AttemptStats) -> AttemptStats {
        AttemptStats {
            attempts: self.attempts + other.attempts,
            succeeded: self.succeeded + other.succeeded,
            total_duration: self.total_duration + other.total_duration,
            max_duration: self.max_duration.max(other.max_duration),
        }
    }
}

/// A webhook's attempts per bucket of a [`StatsWindow`], and its backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookStats {
    /// One per bucket of the window, oldest first, empty ones included.
    pub buckets: Vec<AttemptStats>,
    /// The webhook's unfinished deliveries (pending, in flight or retry-scheduled), due or not.
    pub backlog: u64,
}

/// Counts over every wallet, for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub wallets: u64,
    /// Webhooks not deleted, the global one included.
    pub webhooks: u64,
    /// Attempts of every wallet started at or after the time asked for.
    pub recent_attempts: u64,
    /// The global webhook, unless there is none (or it is deleted).
    pub global_webhook: Option<Webhook>,
}

/// Events in, delivery history out.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait EventOutbox: Send + Sync {
    /// Stores `event` and, in the same transaction, one pending delivery (due at `now`) for
    /// every target that [`Webhook::wants`] it: the enabled webhooks of its wallet whose filter
    /// matches, and the global webhook.
    ///
    /// # Errors
    /// - MUST store everything or nothing: after any error, neither the event nor a delivery
    ///   exists.
    /// - MUST NOT store a duplicate when the event id, or the idempotency key, was published
    ///   before in the same wallet: it returns the first result with `replayed: true`.
    /// - MUST return `Conflict` when the idempotency key was used before in the wallet with
    ///   another fingerprint.
    /// - Event ids and idempotency keys are unique per wallet: another wallet's event with the
    ///   same id MUST be stored as a different event, without `Conflict`.
    async fn publish(
        &self,
        event: &Event,
        idempotency: Option<Idempotency>,
        now: OffsetDateTime,
    ) -> Result<Published, OutboxError>;

    /// Publishes several events in one transaction, each as [`Self::publish`] would, and
    /// returns their results in order. An item that repeats an earlier publish, or an earlier
    /// item of the same batch, is `replayed`.
    ///
    /// # Errors
    /// MUST store everything or nothing: when any item is a `Conflict`, the call returns it and
    /// no item is stored.
    async fn publish_batch(
        &self,
        items: &[PublishItem],
        now: OffsetDateTime,
    ) -> Result<Vec<Published>, OutboxError>;

    /// # Errors
    /// MUST return `NotFound` when the id is unknown or the event belongs to another wallet.
    async fn get_event(&self, wallet: WalletId, id: EventId) -> Result<Event, OutboxError>;

    /// The wallet's deliveries matching `filter`, oldest first. Another wallet's deliveries
    /// MUST never appear.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn list_deliveries(
        &self,
        wallet: WalletId,
        filter: DeliveryFilter,
        page: Page,
    ) -> Result<Vec<Delivery>, OutboxError>;

    /// # Errors
    /// MUST return `NotFound` when the delivery is unknown or belongs to another wallet.
    async fn get_delivery(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
    ) -> Result<Delivery, OutboxError>;

    /// The attempts of one delivery, in order.
    ///
    /// # Errors
    /// MUST return `NotFound` when the delivery is unknown or belongs to another wallet.
    async fn list_attempts(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
    ) -> Result<Vec<AttemptLog>, OutboxError>;

    /// The attempts of several deliveries of `wallet` at once, read in one query (not one per
    /// delivery, as [`Self::list_attempts`] would): for each delivery, its `per_delivery` most
    /// recent attempts and how many it has in all. For the delivery listings.
    ///
    /// MUST NOT return the attempts of another wallet's delivery: its id, like an unknown one
    /// or one of a delivery without attempts, is absent from the map. MUST return each
    /// delivery's attempts in the order they were made, as [`Self::list_attempts`] does. MUST
    /// return at most `per_delivery` attempts of a delivery, the most recent ones (the oldest
    /// are left out), and count all of them in `total`.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn list_attempts_of(
        &self,
        wallet: WalletId,
        deliveries: &[DeliveryId],
        per_delivery: u32,
    ) -> Result<HashMap<DeliveryId, RecentAttempts>, OutboxError>;

    /// At most `search.limit` of the wallet's deliveries matching every filter of `search`,
    /// newest first: by creation time, then by id, both descending, starting after
    /// `search.after` when given.
    ///
    /// MUST NOT return another wallet's delivery. MUST return them in that order, each
    /// matching every filter (`since` included, `until` excluded); walking pages, each starting
    /// after the last row of the one before, MUST return every matching delivery exactly once,
    /// even when many share a creation time. Each page MUST cost a bounded number of index
    /// range reads, never a read or sort of all the wallet's deliveries.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn search_deliveries(
        &self,
        wallet: WalletId,
        search: DeliverySearch,
    ) -> Result<Vec<FoundDelivery>, OutboxError>;

    /// The attempts to the wallet's webhook `webhook` in each bucket of `window`, an attempt
    /// counting in the bucket of its start, and the webhook's backlog.
    ///
    /// MUST answer exactly `window.buckets` buckets; MUST count an attempt started at a
    /// bucket's start in that bucket, and one started at the window's end in none; MUST count
    /// as succeeded the attempts whose outcome is a response with a status from 200 to 299, or
    /// `accepted`.
    ///
    /// # Errors
    /// MUST return `NotFound` when the webhook is unknown, deleted, global or another wallet's.
    async fn webhook_stats(
        &self,
        wallet: WalletId,
        webhook: WebhookId,
        window: StatsWindow,
    ) -> Result<WebhookStats, OutboxError>;

    /// Counts over every wallet: wallets, webhooks not deleted (the global one included), and
    /// attempts started at or after `attempts_since`; and the global webhook.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn overview(&self, attempts_since: OffsetDateTime) -> Result<Overview, OutboxError>;

    /// Makes an exhausted or cancelled delivery due again at `now` ([`Delivery::requeue`]),
    /// keeping its [`Delivery::attempts_made`].
    ///
    /// # Errors
    /// MUST return `NotFound` when the delivery is unknown or belongs to another wallet, and
    /// `Conflict` when its state does not allow a requeue or its webhook is deleted or disabled
    /// (checked in the same transaction, so a requeue never outlives a concurrent delete).
    async fn requeue(
        &self,
        wallet: WalletId,
        delivery: DeliveryId,
        now: OffsetDateTime,
    ) -> Result<Delivery, OutboxError>;
}

/// Bulk redelivery jobs: their progress is stored with the work, so any instance can report or
/// resume them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RedeliveryJobs: Send + Sync {
    /// Stores a new running job and returns it with `total` set to the number of deliveries it
    /// matches now: the job's wallet's exhausted deliveries to `job.webhook_id` created in
    /// `[job.since, job.until)`.
    ///
    /// # Errors
    /// MUST return `NotFound`, storing nothing, when the webhook is unknown or belongs to
    /// another wallet.
    async fn create_redelivery_job(
        &self,
        job: &RedeliveryJob,
    ) -> Result<RedeliveryJob, OutboxError>;

    /// # Errors
    /// MUST return `NotFound` when the id is unknown or the job belongs to another wallet.
    async fn get_redelivery_job(
        &self,
        wallet: WalletId,
        id: RedeliveryJobId,
    ) -> Result<RedeliveryJob, OutboxError>;

    /// Jobs still running, oldest first: for resuming them after a restart.
    ///
    /// # Errors
    /// `Unavailable` or `Backend` only.
    async fn running_redelivery_jobs(&self) -> Result<Vec<RedeliveryJob>, OutboxError>;

    /// One step of a job, in one transaction: requeues ([`Delivery::requeue`] at `now`) up to
    /// `limit` of the deliveries it matches that are still exhausted and became final before
    /// the job was created, adds their number to its `requeued`, and marks it `Completed` when
    /// none was left. Returns the job after the step. Running a step of a finished (completed
    /// or stopped) job MUST change nothing; two instances stepping the same job MUST NOT
    /// requeue a delivery twice. A step of a job whose webhook is deleted or disabled MUST
    /// requeue nothing and stop the job (`Stopped` with `WebhookDeleted` or `WebhookDisabled`,
    /// its count kept), judging the webhook in the step's own transaction: a delete or disable
    /// committed before the step is always seen, and one committed after it cancels what the
    /// step requeued.
    ///
    /// # Errors
    /// `NotFound` when the job is unknown; otherwise `Unavailable` or `Backend`, and on error
    /// nothing of the step is stored.
    async fn step_redelivery_job(
        &self,
        id: RedeliveryJobId,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<RedeliveryJob, OutboxError>;
}

/// Leased work for dispatchers.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Leases due deliveries to `owner` until `request.now + request.lease`, earliest due
    /// first, at most `request.limit` in all and `request.per_target` of one target, and returns
    /// them with their event and target. Due means pending or retry-scheduled with a due time
    /// at or before `now`, or in flight with an expired lease.
    ///
    /// - MUST never hand a delivery to two claimers while its lease is live, even under
    ///   concurrent calls; MUST NOT return deliveries that are not due or are final.
    /// - MUST NOT return deliveries to a target in `request.skip` (busy or resting ones, whose
    ///   backlog stays in storage), nor to a deleted or disabled target; the due deliveries of
    ///   a deleted or disabled target that no live lease holds MUST be cancelled as the claim
    ///   meets them (left behind by an instance that died holding them, or recorded after the
    ///   change).
    /// - For an ordered target, MUST return only its first unfinished delivery in publish order
    ///   (the order the publishes committed; within a batch, item order), and only while no
    ///   other delivery of that target is in flight under a live lease: one attempt at a time,
    ///   in order, across retries, requeues and claimers.
    /// - MUST NOT cost more because of the deliveries other targets hold waiting (a target's
    ///   backlog is never walked by a claim that does not serve it).
    /// - MUST NOT hold a lock or connection after returning.
    ///
    /// # Errors
    /// `Unavailable` or `Backend`; on error nothing is leased.
    async fn claim_due(
        &self,
        owner: &LeaseOwner,
        request: &ClaimRequest,
    ) -> Result<Vec<ClaimedDelivery>, OutboxError>;

    /// Stores the outcome of many attempts at once: each delivery's new state and one attempt
    /// row. Records whose delivery is no longer leased to `owner` (the lease expired and another
    /// dispatcher took it) MUST be skipped; their ids are returned.
    ///
    /// A delivery's [`Delivery::attempts_made`] MUST be stored with its state and come back
    /// from every later read of it (claims, listings, [`EventOutbox::get_delivery`]); requeues
    /// ([`EventOutbox::requeue`], [`RedeliveryJobs::step_redelivery_job`]) MUST keep it, so
    /// that attempts recorded after a requeue go on with the numbers of the earlier ones.
    ///
    /// # Errors
    /// `Unavailable` or `Backend`; on error nothing of the batch is stored.
    async fn record_attempts(
        &self,
        owner: &LeaseOwner,
        records: &[AttemptRecord],
    ) -> Result<Vec<DeliveryId>, OutboxError>;

    /// Gives back leases without an outcome, storing the released states
    /// ([`Delivery::release`]). Deliveries not leased to `owner` MUST be left alone.
    ///
    /// # Errors
    /// `Unavailable` or `Backend`.
    async fn release(&self, owner: &LeaseOwner, deliveries: &[Delivery])
    -> Result<(), OutboxError>;

    /// The earliest time at which a claim at `now` skipping `skip` could find a delivery, if
    /// any: for sleeping until then instead of polling. It MUST leave out what such a claim
    /// could not take: the targets in `skip`, deleted and disabled targets, and the
    /// deliveries of an ordered target behind its first one (which count from the time that
    /// first one, or the one of the target in flight, could be claimed). A time at or before
    /// `now` means a claim would find something now.
    ///
    /// # Errors
    /// `Unavailable` or `Backend`.
    async fn next_due_at(
        &self,
        now: OffsetDateTime,
        skip: &[WebhookId],
    ) -> Result<Option<OffsetDateTime>, OutboxError>;

    /// Settles a deleted or disabled target after the change: cancels its unfinished
    /// deliveries that no lease live at `now` holds, and returns the latest end of a live lease
    /// still held on one of them, `None` when none is. No claim leases a deleted or disabled
    /// target's deliveries, so once this answers `None` (or the time it answered has passed),
    /// no attempt to the target is in flight anywhere and none will start: the API answers a
    /// DELETE or a disabling PATCH only then. For a live, enabled target it MUST change
    /// nothing and answer `None`.
    ///
    /// # Errors
    /// `Unavailable` or `Backend`.
    async fn settle_target(
        &self,
        webhook: WebhookId,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, OutboxError>;

    /// The backlog at `now`, for monitoring: how many unfinished deliveries are due (pending or
    /// retry-scheduled with a due time at or before `now`, or in flight with an expired lease:
    /// what [`Self::claim_due`] could take, ignoring `skip` and the order of ordered targets)
    /// and the earliest due time among them.
    ///
    /// MUST NOT count final deliveries, nor deliveries due after `now` or leased past it; MUST
    /// report `oldest_due_at` as `None` exactly when nothing is due; MUST NOT lease or change
    /// anything.
    ///
    /// # Errors
    /// `Unavailable` or `Backend`.
    async fn backlog(&self, now: OffsetDateTime) -> Result<Backlog, OutboxError>;
}

/// What one pruning batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
}

/// Removes old, finished history so the database stays small.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Retention: Send + Sync {
    /// Removes up to `limit` events stored before `before` whose deliveries are all final
    /// (delivered, exhausted or cancelled), together with those deliveries and their attempts,
    /// oldest first, in one short transaction. Callers repeat it until it removes no event.
    ///
    /// MUST NOT remove an event that still has an unfinished delivery, nor one stored at or
    /// after `before`; MUST NOT block or be blocked by claims of unfinished deliveries.
    ///
    /// # Errors
    /// `Unavailable` or `Backend`; on error nothing of the batch is removed.
    async fn prune(&self, before: OffsetDateTime, limit: u32) -> Result<Pruned, OutboxError>;
}
