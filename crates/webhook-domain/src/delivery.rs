//! The delivery state machine: one (event, target) pair from pending to delivered, exhausted or
//! cancelled.
//!
//! ```text
//! Pending(due) ──claim──▶ InFlight(attempt n, leased_until) ──2xx──▶ Delivered
//!      ▲                    │   │   └──failure, policy allows──▶ RetryScheduled(at) ──claim──▶ …
//!      └──release/requeue───┘   └──failure, policy gives up──▶ Exhausted
//! any non-final state ──cancel──▶ Cancelled (target deleted or disabled; 410 Gone)
//! ```
//!
//! Every transition is a pure function of the current value, its input and `now`; the caller
//! persists the result and does any waiting.

use std::time::Duration;

use thiserror::Error;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::{DeliveryId, EventId, Jitter, RetryPolicy, WebhookId};

/// The longest `Retry-After` honoured; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its first attempt, due at `due`.
    Pending { due: OffsetDateTime },
    /// Claimed by a dispatcher for attempt number `attempt` (from 1) of the current retry
    /// budget until `leased_until`.
    InFlight {
        attempt: u32,
        leased_until: OffsetDateTime,
    },
    /// Failed before; the next attempt is due at `at`.
    RetryScheduled { at: OffsetDateTime },
    /// A 2xx answer was received at `at`. Final.
    Delivered { at: OffsetDateTime },
    /// The retry policy gave up at `at`, or the failure cannot be retried. Final until requeued.
    Exhausted { at: OffsetDateTime },
    /// Stopped at `at` for `reason`. Final until requeued.
    Cancelled {
        at: OffsetDateTime,
        reason: CancelReason,
    },
}

/// The state's name without its data, for storage, filters and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryStateKind {
    Pending,
    InFlight,
    RetryScheduled,
    Delivered,
    Exhausted,
    Cancelled,
}

impl DeliveryStateKind {
    pub const ALL: [DeliveryStateKind; 6] = [
        DeliveryStateKind::Pending,
        DeliveryStateKind::InFlight,
        DeliveryStateKind::RetryScheduled,
        DeliveryStateKind::Delivered,
        DeliveryStateKind::Exhausted,
        DeliveryStateKind::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStateKind::Pending => "pending",
            DeliveryStateKind::InFlight => "in_flight",
            DeliveryStateKind::RetryScheduled => "retry_scheduled",
            DeliveryStateKind::Delivered => "delivered",
            DeliveryStateKind::Exhausted => "exhausted",
            DeliveryStateKind::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl DeliveryState {
    pub fn kind(&self) -> DeliveryStateKind {
        match self {
            DeliveryState::Pending { .. } => DeliveryStateKind::Pending,
            DeliveryState::InFlight { .. } => DeliveryStateKind::InFlight,
            DeliveryState::RetryScheduled { .. } => DeliveryStateKind::RetryScheduled,
            DeliveryState::Delivered { .. } => DeliveryStateKind::Delivered,
            DeliveryState::Exhausted { .. } => DeliveryStateKind::Exhausted,
            DeliveryState::Cancelled { .. } => DeliveryStateKind::Cancelled,
        }
    }

    /// Delivered, exhausted and cancelled deliveries are never attempted again by themselves.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            DeliveryState::Delivered { .. }
                | DeliveryState::Exhausted { .. }
                | DeliveryState::Cancelled { .. }
        )
    }

    /// When the delivery may next be claimed: its due time, or when its lease runs out.
    pub fn claimable_at(&self) -> Option<OffsetDateTime> {
        match *self {
            DeliveryState::Pending { due } => Some(due),
            DeliveryState::RetryScheduled { at } => Some(at),
            DeliveryState::InFlight { leased_until, .. } => Some(leased_until),
            _ => None,
        }
    }
}

/// Why a delivery was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The target was deleted.
    TargetDeleted,
    /// The target was disabled.
    TargetDisabled,
    /// The target answered 410 Gone: it asked not to be called again.
    TargetGone,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::TargetDeleted => "target_deleted",
            CancelReason::TargetDisabled => "target_disabled",
            CancelReason::TargetGone => "target_gone",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            CancelReason::TargetDeleted,
            CancelReason::TargetDisabled,
            CancelReason::TargetGone,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// What one attempt came to, in the terms of the delivery's rules, whatever the destination's
/// protocol. A destination reports one of these with an [`AttemptDetail`] for the log; the
/// domain decides on the outcome alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The destination took the message (an HTTP 2xx, a broker's acknowledgement).
    Delivered,
    /// The destination answered and did not take the message (an HTTP 4xx, a broker's refusal).
    /// Retried as the policy says; not a sign that the target is down.
    Rejected,
    /// The destination could not take the message now: no answer, a failure on the way, or an
    /// answer that asks to come back (an HTTP 5xx or 429). Retried as the policy says, no
    /// sooner than `not_before` after the attempt (bounded by [`MAX_RETRY_AFTER`]); counts
    /// against the target's health.
    RetryLater { not_before: Option<Duration> },
    /// The destination says the target is gone for good (HTTP 410): the target is disabled and
    /// the delivery cancelled.
    Gone,
    /// webhookd's own policy refused to send (the SSRF guard refused the target's address).
    /// Never retried, and not the target's fault.
    RefusedByPolicy,
}

impl AttemptOutcome {
    /// The outcome of an HTTP answer with `status`, as the compatibility contract has it: 2xx
    /// delivers, 410 is gone, 5xx and 429 ask to come back (after `retry_after` on 429 and 503,
    /// where the header means it), and anything else is a rejection, retried all the same.
    pub fn of_http_status(status: u16, retry_after: Option<Duration>) -> Self {
        match status {
            200..=299 => AttemptOutcome::Delivered,
            410 => AttemptOutcome::Gone,
            429 | 503 => AttemptOutcome::RetryLater {
                not_before: retry_after,
            },
            500..=599 => AttemptOutcome::RetryLater { not_before: None },
            _ => AttemptOutcome::Rejected,
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, AttemptOutcome::Delivered)
    }

    /// Whether the outcome says the target is unwell, which is what a circuit breaker counts: a
    /// rejection is the target's answer about this message, and a policy refusal is a property
    /// of the URL, not of the target's health.
    pub fn counts_against_target(&self) -> bool {
        matches!(self, AttemptOutcome::RetryLater { .. })
    }
}

/// What one attempt came to as the destination saw it, for the attempt log: the protocol's
/// details behind an [`AttemptOutcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptDetail {
    /// The target answered with `status` (an HTTP status code). `retry_after` is the parsed
    /// `Retry-After` header.
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The destination took the message, with no status code to tell (a broker's
    /// acknowledgement).
    Accepted,
    /// The destination refused the message, with no status code to tell (a broker's negative
    /// acknowledgement).
    Declined,
    /// No complete answer within the attempt's time limit.
    Timeout,
    /// The connection could not be made or broke before an answer.
    ConnectionFailed,
    /// The TLS handshake failed.
    TlsFailed,
    /// The answer's head was larger than allowed.
    ResponseTooLarge,
    /// The target resolved to an address the SSRF guard refuses. Never retried.
    AddressRefused,
}

impl AttemptDetail {
    /// The outcome that a destination reports with this detail when it has no rule of its own:
    /// an HTTP status as [`AttemptOutcome::of_http_status`] reads it, an acceptance delivers, a
    /// refusal is a rejection, a refused address a policy refusal, and every failure on the
    /// way asks to come back.
    pub fn outcome(&self) -> AttemptOutcome {
        match *self {
            AttemptDetail::Response {
                status,
                retry_after,
            } => AttemptOutcome::of_http_status(status, retry_after),
            AttemptDetail::Accepted => AttemptOutcome::Delivered,
            AttemptDetail::Declined => AttemptOutcome::Rejected,
            AttemptDetail::AddressRefused => AttemptOutcome::RefusedByPolicy,
            AttemptDetail::Timeout
            | AttemptDetail::ConnectionFailed
            | AttemptDetail::TlsFailed
            | AttemptDetail::ResponseTooLarge => AttemptOutcome::RetryLater { not_before: None },
        }
    }

    /// A response with a status code of at least 200 and below 300, or an acceptance.
    pub fn is_success(&self) -> bool {
        self.outcome().is_success()
    }

    /// The HTTP status, when the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptDetail::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The outcome's kind, without its data.
    pub fn kind(&self) -> DetailKind {
        match self {
            AttemptDetail::Response { .. } => DetailKind::Response,
            AttemptDetail::Accepted => DetailKind::Accepted,
            AttemptDetail::Declined => DetailKind::Declined,
            AttemptDetail::Timeout => DetailKind::Timeout,
            AttemptDetail::ConnectionFailed => DetailKind::ConnectionFailed,
            AttemptDetail::TlsFailed => DetailKind::TlsFailed,
            AttemptDetail::ResponseTooLarge => DetailKind::ResponseTooLarge,
            AttemptDetail::AddressRefused => DetailKind::AddressRefused,
        }
    }

    /// The outcome named `kind` (an [`DetailKind::as_str`]), with `status` for a response, as
    /// storage keeps it. `retry_after` is not kept, so a response comes back without one; a
    /// status beside any other kind is ignored.
    ///
    /// # Errors
    /// [`AttemptDetailError::UnknownKind`] for a name that is no kind's, and
    /// [`AttemptDetailError::MissingStatus`] for a response without a status.
    pub fn parse(kind: &str, status: Option<u16>) -> Result<Self, AttemptDetailError> {
        let kind =
            DetailKind::parse(kind).ok_or_else(|| AttemptDetailError::UnknownKind(kind.into()))?;
        Ok(match kind {
            DetailKind::Response => AttemptDetail::Response {
                status: status.ok_or(AttemptDetailError::MissingStatus)?,
                retry_after: None,
            },
            DetailKind::Accepted => AttemptDetail::Accepted,
            DetailKind::Declined => AttemptDetail::Declined,
            DetailKind::Timeout => AttemptDetail::Timeout,
            DetailKind::ConnectionFailed => AttemptDetail::ConnectionFailed,
            DetailKind::TlsFailed => AttemptDetail::TlsFailed,
            DetailKind::ResponseTooLarge => AttemptDetail::ResponseTooLarge,
            DetailKind::AddressRefused => AttemptDetail::AddressRefused,
        })
    }
}

/// An attempt outcome's name without its data: the one table of names that storage, the API
/// and the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetailKind {
    /// [`AttemptDetail::Response`]: `response`.
    Response,
    /// [`AttemptDetail::Accepted`]: `accepted`.
    Accepted,
    /// [`AttemptDetail::Declined`]: `declined`.
    Declined,
    /// [`AttemptDetail::Timeout`]: `timeout`.
    Timeout,
    /// [`AttemptDetail::ConnectionFailed`]: `connection_failed`.
    ConnectionFailed,
    /// [`AttemptDetail::TlsFailed`]: `tls_failed`.
    TlsFailed,
    /// [`AttemptDetail::ResponseTooLarge`]: `response_too_large`.
    ResponseTooLarge,
    /// [`AttemptDetail::AddressRefused`]: `address_refused`.
    AddressRefused,
}

impl DetailKind {
    /// Every kind, in the order of [`AttemptDetail`]'s variants.
    pub const ALL: [DetailKind; 8] = [
        DetailKind::Response,
        DetailKind::Accepted,
        DetailKind::Declined,
        DetailKind::Timeout,
        DetailKind::ConnectionFailed,
        DetailKind::TlsFailed,
        DetailKind::ResponseTooLarge,
        DetailKind::AddressRefused,
    ];

    /// The kind's name, as stored and as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            DetailKind::Response => "response",
            DetailKind::Accepted => "accepted",
            DetailKind::Declined => "declined",
            DetailKind::Timeout => "timeout",
            DetailKind::ConnectionFailed => "connection_failed",
            DetailKind::TlsFailed => "tls_failed",
            DetailKind::ResponseTooLarge => "response_too_large",
            DetailKind::AddressRefused => "address_refused",
        }
    }

    /// The kind named `name`; `None` for a name that is no kind's.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An outcome's name and status that make no [`AttemptDetail`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttemptDetailError {
    /// The name is no [`DetailKind`]'s.
    #[error(
        "outcome: unknown kind {0:?}; expected response, accepted, declined, timeout, \
         connection_failed, tls_failed, response_too_large or address_refused"
    )]
    UnknownKind(String),
    /// A `response` without its status code.
    #[error("outcome: a response needs its status code")]
    MissingStatus,
}

/// What the caller must do after an attempt, besides storing the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    /// Attempt again at this time.
    RetryAt(OffsetDateTime),
    /// Give up: the policy's attempts or age are used up, or the failure cannot be retried.
    Exhausted,
    /// The target answered 410 Gone: disable the target and cancel this delivery.
    DisableTarget,
}

/// A transition asked of a state that does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    #[error("delivery {id} is {state:?}, which does not allow {action}")]
    NotAllowed {
        id: DeliveryId,
        state: DeliveryStateKind,
        action: &'static str,
    },
    #[error("delivery {id} is not due until {due}")]
    NotDue { id: DeliveryId, due: OffsetDateTime },
}

/// One (event, target) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    id: DeliveryId,
    event_id: EventId,
    webhook_id: WebhookId,
    first_due: OffsetDateTime,
    attempts: u32,
    attempts_made: u32,
    state: DeliveryState,
}

impl Delivery {
    /// A new delivery, due at once.
    pub fn new(
        id: DeliveryId,
        event_id: EventId,
        webhook_id: WebhookId,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            event_id,
            webhook_id,
            first_due: now,
            attempts: 0,
            attempts_made: 0,
            state: DeliveryState::Pending { due: now },
        }
    }

    /// Rebuilds a delivery from storage. `attempts` is the number of attempts with a recorded
    /// outcome in the current retry budget (since the last requeue), `attempts_made` the number
    /// since the delivery was created ([`Self::attempts_made`]).
    pub fn restore(
        id: DeliveryId,
        event_id: EventId,
        webhook_id: WebhookId,
        first_due: OffsetDateTime,
        attempts: u32,
        attempts_made: u32,
        state: DeliveryState,
    ) -> Self {
        Self {
            id,
            event_id,
            webhook_id,
            first_due,
            attempts,
            attempts_made,
            state,
        }
    }

    pub fn id(&self) -> DeliveryId {
        self.id
    }

    pub fn event_id(&self) -> EventId {
        self.event_id
    }

    pub fn webhook_id(&self) -> WebhookId {
        self.webhook_id
    }

    /// When the delivery was first due; a policy's `max_age` counts from here.
    pub fn first_due(&self) -> OffsetDateTime {
        self.first_due
    }

    /// Attempts with a recorded outcome in the current retry budget: what the retry policy
    /// counts. A requeue starts it again at 0.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Attempts with a recorded outcome since the delivery was created, across requeues: unlike
    /// [`Self::attempts`] it never starts again. An attempt's number in the log is this count
    /// once its outcome is applied, so one delivery's attempts are numbered 1, 2, 3, … without a
    /// repeat.
    pub fn attempts_made(&self) -> u32 {
        self.attempts_made
    }

    pub fn state(&self) -> DeliveryState {
        self.state
    }

    fn refuse(&self, action: &'static str) -> TransitionError {
        TransitionError::NotAllowed {
            id: self.id,
            state: self.state.kind(),
            action,
        }
    }

    fn with_state(&self, state: DeliveryState) -> Delivery {
        Delivery {
            state,
            ..self.clone()
        }
    }

    /// Leases the delivery to a dispatcher for its next attempt. Allowed when it is pending or
    /// scheduled and due, or in flight with an expired lease (the holder crashed; the attempt
    /// had no recorded outcome, so it is not counted).
    ///
    /// # Errors
    /// `NotDue` before its time; `NotAllowed` in a final state or under a live lease.
    pub fn claim(
        &self,
        now: OffsetDateTime,
        leased_until: OffsetDateTime,
    ) -> Result<Delivery, TransitionError> {
        match self.state.claimable_at() {
            None => Err(self.refuse("claim")),
            Some(due) if due > now => match self.state {
                DeliveryState::InFlight { .. } => Err(self.refuse("claim")),
                _ => Err(TransitionError::NotDue { id: self.id, due }),
            },
            Some(_) => Ok(self.with_state(DeliveryState::InFlight {
                attempt: self.attempts + 1,
                leased_until,
            })),
        }
    }

    /// Applies the outcome of the attempt in flight.
    ///
    /// Delivered delivers; gone cancels and asks to disable the target; a policy refusal gives
    /// up at once; a rejection or a retry-later is retried as `policy` says, no sooner than the
    /// outcome's `not_before` bounded by [`MAX_RETRY_AFTER`].
    ///
    /// # Errors
    /// `NotAllowed` unless the delivery is in flight.
    pub fn on_attempt(
        &self,
        outcome: &AttemptOutcome,
        policy: &RetryPolicy,
        now: OffsetDateTime,
        jitter: Jitter,
    ) -> Result<(Delivery, Decision), TransitionError> {
        if !matches!(self.state, DeliveryState::InFlight { .. }) {
            return Err(self.refuse("an attempt outcome"));
        }
        let attempted = Delivery {
            attempts: self.attempts + 1,
            attempts_made: self.attempts_made.saturating_add(1),
            ..self.clone()
        };
        let (state, decision) = match *outcome {
            AttemptOutcome::Delivered => {
                (DeliveryState::Delivered { at: now }, Decision::Delivered)
            }
            AttemptOutcome::Gone => (
                DeliveryState::Cancelled {
                    at: now,
                    reason: CancelReason::TargetGone,
                },
                Decision::DisableTarget,
            ),
            AttemptOutcome::RefusedByPolicy => {
                (DeliveryState::Exhausted { at: now }, Decision::Exhausted)
            }
            AttemptOutcome::Rejected | AttemptOutcome::RetryLater { .. } => {
                let not_before = match *outcome {
                    AttemptOutcome::RetryLater { not_before } => {
                        not_before.map(|d| d.min(MAX_RETRY_AFTER))
                    }
                    _ => None,
                };
                match policy.next_attempt(
                    attempted.attempts,
                    self.first_due,
                    now,
                    not_before,
                    jitter,
                ) {
                    Some(at) => (DeliveryState::RetryScheduled { at }, Decision::RetryAt(at)),
                    None => (DeliveryState::Exhausted { at: now }, Decision::Exhausted),
                }
            }
        };
        Ok((attempted.with_state(state), decision))
    }

    /// Gives back a lease without an outcome (graceful shutdown): due again at once, the
    /// attempt not counted.
    ///
    /// # Errors
    /// `NotAllowed` unless the delivery is in flight.
    pub fn release(&self, now: OffsetDateTime) -> Result<Delivery, TransitionError> {
        match self.state {
            DeliveryState::InFlight { .. } if self.attempts == 0 => {
                Ok(self.with_state(DeliveryState::Pending { due: now }))
            }
            DeliveryState::InFlight { .. } => {
                Ok(self.with_state(DeliveryState::RetryScheduled { at: now }))
            }
            _ => Err(self.refuse("release")),
        }
    }

    /// Stops a delivery that has not finished, because its target went away.
    ///
    /// # Errors
    /// `NotAllowed` in a final state.
    pub fn cancel(
        &self,
        reason: CancelReason,
        now: OffsetDateTime,
    ) -> Result<Delivery, TransitionError> {
        if self.state.is_final() {
            return Err(self.refuse("cancel"));
        }
        Ok(self.with_state(DeliveryState::Cancelled { at: now, reason }))
    }

    /// Manual redelivery of an exhausted or cancelled delivery: due at once with a fresh budget
    /// of attempts ([`Self::attempts_made`] goes on counting). A delivered delivery is never
    /// requeued; redelivering its event makes a new delivery.
    ///
    /// # Errors
    /// `NotAllowed` unless the delivery is exhausted or cancelled.
    pub fn requeue(&self, now: OffsetDateTime) -> Result<Delivery, TransitionError> {
        match self.state {
            DeliveryState::Exhausted { .. } | DeliveryState::Cancelled { .. } => Ok(Delivery {
                first_due: now,
                attempts: 0,
                state: DeliveryState::Pending { due: now },
                ..self.clone()
            }),
            _ => Err(self.refuse("requeue")),
        }
    }
}

/// Parses a `Retry-After` header: delay-seconds or an IMF-fixdate such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`, relative to `now`. A date in the past means no wait.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = datetime!(1994-11-06 08:49:00 UTC);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(37))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn outcome_kinds_round_trip_through_their_names() {
        for kind in DetailKind::ALL {
            assert_eq!(DetailKind::parse(kind.as_str()), Some(kind));
        }
        let outcomes = [
            AttemptDetail::Response {
                status: 503,
                retry_after: None,
            },
            AttemptDetail::Accepted,
            AttemptDetail::Declined,
            AttemptDetail::Timeout,
            AttemptDetail::ConnectionFailed,
            AttemptDetail::TlsFailed,
            AttemptDetail::ResponseTooLarge,
            AttemptDetail::AddressRefused,
        ];
        assert_eq!(
            outcomes.map(|o| o.kind()),
            DetailKind::ALL,
            "one outcome of every kind, in order"
        );
        for outcome in outcomes {
            let name = outcome.kind().as_str();
            assert_eq!(
                AttemptDetail::parse(name, outcome.status()),
                Ok(outcome),
                "{name}"
            );
        }
    }

    #[test]
    fn http_statuses_make_the_outcomes_of_the_compatibility_contract() {
        fn check(status: u16, retry_after: Option<Duration>, expected: AttemptOutcome) {
            assert_eq!(
                AttemptOutcome::of_http_status(status, retry_after),
                expected,
                "{status} {retry_after:?}"
            );
        }
        let wait = Some(Duration::from_secs(7));
        for status in [200, 201, 204, 299] {
            check(status, wait, AttemptOutcome::Delivered);
        }
        check(410, wait, AttemptOutcome::Gone);
        // Retry-After is read on 429 and 503 only, where it asks to come back later.
        check(429, wait, AttemptOutcome::RetryLater { not_before: wait });
        check(503, wait, AttemptOutcome::RetryLater { not_before: wait });
        for status in [500, 502, 504, 599] {
            check(
                status,
                wait,
                AttemptOutcome::RetryLater { not_before: None },
            );
        }
        // Anything else is a rejection, which is retried too ("non-2xx means retry").
        for status in [
            100, 199, 300, 301, 304, 400, 401, 404, 408, 409, 413, 499, 600,
        ] {
            check(status, wait, AttemptOutcome::Rejected);
        }
    }

    #[test]
    fn details_without_a_status_have_outcomes_of_their_own() {
        fn check(detail: AttemptDetail, expected: AttemptOutcome) {
            assert_eq!(detail.outcome(), expected, "{detail:?}");
        }
        let later = AttemptOutcome::RetryLater { not_before: None };
        check(AttemptDetail::Accepted, AttemptOutcome::Delivered);
        check(AttemptDetail::Declined, AttemptOutcome::Rejected);
        check(
            AttemptDetail::AddressRefused,
            AttemptOutcome::RefusedByPolicy,
        );
        check(AttemptDetail::Timeout, later);
        check(AttemptDetail::ConnectionFailed, later);
        check(AttemptDetail::TlsFailed, later);
        check(AttemptDetail::ResponseTooLarge, later);
    }

    #[test]
    fn only_a_retry_later_counts_against_the_target() {
        let counts = [
            AttemptOutcome::Delivered,
            AttemptOutcome::Rejected,
            AttemptOutcome::RetryLater { not_before: None },
            AttemptOutcome::Gone,
            AttemptOutcome::RefusedByPolicy,
        ]
        .map(|o| o.counts_against_target());
        assert_eq!(counts, [false, false, true, false, false]);
    }

    #[test]
    fn outcome_names_are_the_stored_ones() {
        // Stored in the attempts table and shown by the API: these must never change.
        assert_eq!(
            DetailKind::ALL.map(DetailKind::as_str),
            [
                "response",
                "accepted",
                "declined",
                "timeout",
                "connection_failed",
                "tls_failed",
                "response_too_large",
                "address_refused",
            ]
        );
    }

    #[test]
    fn unknown_outcome_names_are_refused() {
        for name in ["", "Response", "timed_out", "success", " timeout"] {
            assert_eq!(DetailKind::parse(name), None, "{name:?}");
            assert_eq!(
                AttemptDetail::parse(name, Some(200)),
                Err(AttemptDetailError::UnknownKind(name.into())),
                "{name:?}"
            );
        }
        let refusal = AttemptDetailError::UnknownKind("lost".into()).to_string();
        assert!(refusal.starts_with("outcome: unknown kind \"lost\"; expected "));
        for kind in DetailKind::ALL {
            assert!(refusal.contains(kind.as_str()), "{refusal} names {kind:?}");
        }
    }

    #[test]
    fn a_response_needs_a_status_and_other_kinds_ignore_one() {
        assert_eq!(
            AttemptDetail::parse("response", None),
            Err(AttemptDetailError::MissingStatus)
        );
        assert_eq!(
            AttemptDetail::parse("response", Some(429)),
            Ok(AttemptDetail::Response {
                status: 429,
                retry_after: None
            })
        );
        assert_eq!(
            AttemptDetail::parse("timeout", Some(200)),
            Ok(AttemptDetail::Timeout)
        );
    }

    #[test]
    fn state_kind_names_round_trip() {
        for kind in DeliveryStateKind::ALL {
            assert_eq!(DeliveryStateKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(DeliveryStateKind::parse("lost"), None);
    }
}
