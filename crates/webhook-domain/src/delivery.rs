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

/// What one attempt came to, as the transport saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The target answered with `status`. `retry_after` is the parsed `Retry-After` header.
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
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

impl AttemptOutcome {
    /// A response with a status code of at least 200 and below 300.
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptOutcome::Response { status, .. } if (200..300).contains(status))
    }

    /// The HTTP status, when the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptOutcome::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The outcome's kind, without its data.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            AttemptOutcome::Response { .. } => OutcomeKind::Response,
            AttemptOutcome::Timeout => OutcomeKind::Timeout,
            AttemptOutcome::ConnectionFailed => OutcomeKind::ConnectionFailed,
            AttemptOutcome::TlsFailed => OutcomeKind::TlsFailed,
            AttemptOutcome::ResponseTooLarge => OutcomeKind::ResponseTooLarge,
            AttemptOutcome::AddressRefused => OutcomeKind::AddressRefused,
        }
    }

    /// The outcome named `kind` (an [`OutcomeKind::as_str`]), with `status` for a response, as
    /// storage keeps it. `retry_after` is not kept, so a response comes back without one; a
    /// status beside any other kind is ignored.
    ///
    /// # Errors
    /// [`AttemptOutcomeError::UnknownKind`] for a name that is no kind's, and
    /// [`AttemptOutcomeError::MissingStatus`] for a response without a status.
    pub fn parse(kind: &str, status: Option<u16>) -> Result<Self, AttemptOutcomeError> {
        let kind = OutcomeKind::parse(kind)
            .ok_or_else(|| AttemptOutcomeError::UnknownKind(kind.into()))?;
        Ok(match kind {
            OutcomeKind::Response => AttemptOutcome::Response {
                status: status.ok_or(AttemptOutcomeError::MissingStatus)?,
                retry_after: None,
            },
            OutcomeKind::Timeout => AttemptOutcome::Timeout,
            OutcomeKind::ConnectionFailed => AttemptOutcome::ConnectionFailed,
            OutcomeKind::TlsFailed => AttemptOutcome::TlsFailed,
            OutcomeKind::ResponseTooLarge => AttemptOutcome::ResponseTooLarge,
            OutcomeKind::AddressRefused => AttemptOutcome::AddressRefused,
        })
    }
}

/// An attempt outcome's name without its data: the one table of names that storage, the API
/// and the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeKind {
    /// [`AttemptOutcome::Response`]: `response`.
    Response,
    /// [`AttemptOutcome::Timeout`]: `timeout`.
    Timeout,
    /// [`AttemptOutcome::ConnectionFailed`]: `connection_failed`.
    ConnectionFailed,
    /// [`AttemptOutcome::TlsFailed`]: `tls_failed`.
    TlsFailed,
    /// [`AttemptOutcome::ResponseTooLarge`]: `response_too_large`.
    ResponseTooLarge,
    /// [`AttemptOutcome::AddressRefused`]: `address_refused`.
    AddressRefused,
}

impl OutcomeKind {
    /// Every kind, in the order of [`AttemptOutcome`]'s variants.
    pub const ALL: [OutcomeKind; 6] = [
        OutcomeKind::Response,
        OutcomeKind::Timeout,
        OutcomeKind::ConnectionFailed,
        OutcomeKind::TlsFailed,
        OutcomeKind::ResponseTooLarge,
        OutcomeKind::AddressRefused,
    ];

    /// The kind's name, as stored and as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Response => "response",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::ConnectionFailed => "connection_failed",
            OutcomeKind::TlsFailed => "tls_failed",
            OutcomeKind::ResponseTooLarge => "response_too_large",
            OutcomeKind::AddressRefused => "address_refused",
        }
    }

    /// The kind named `name`; `None` for a name that is no kind's.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An outcome's name and status that make no [`AttemptOutcome`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttemptOutcomeError {
    /// The name is no [`OutcomeKind`]'s.
    #[error(
        "outcome: unknown kind {0:?}; expected response, timeout, connection_failed, \
         tls_failed, response_too_large or address_refused"
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
    /// 2xx delivers; 410 cancels and asks to disable the target; a refused address gives up at
    /// once; anything else is retried as `policy` says, no sooner than a bounded `Retry-After`
    /// on 429 or 503.
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
            _ if outcome.is_success() => {
                (DeliveryState::Delivered { at: now }, Decision::Delivered)
            }
            AttemptOutcome::Response { status: 410, .. } => (
                DeliveryState::Cancelled {
                    at: now,
                    reason: CancelReason::TargetGone,
                },
                Decision::DisableTarget,
            ),
            AttemptOutcome::AddressRefused => {
                (DeliveryState::Exhausted { at: now }, Decision::Exhausted)
            }
            _ => {
                let retry_after = match *outcome {
                    AttemptOutcome::Response {
                        status: 429 | 503,
                        retry_after,
                    } => retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
                    _ => None,
                };
                match policy.next_attempt(
                    attempted.attempts,
                    self.first_due,
                    now,
                    retry_after,
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
        for kind in OutcomeKind::ALL {
            assert_eq!(OutcomeKind::parse(kind.as_str()), Some(kind));
        }
        let outcomes = [
            AttemptOutcome::Response {
                status: 503,
                retry_after: None,
            },
            AttemptOutcome::Timeout,
            AttemptOutcome::ConnectionFailed,
            AttemptOutcome::TlsFailed,
            AttemptOutcome::ResponseTooLarge,
            AttemptOutcome::AddressRefused,
        ];
        assert_eq!(
            outcomes.map(|o| o.kind()),
            OutcomeKind::ALL,
            "one outcome of every kind, in order"
        );
        for outcome in outcomes {
            let name = outcome.kind().as_str();
            assert_eq!(
                AttemptOutcome::parse(name, outcome.status()),
                Ok(outcome),
                "{name}"
            );
        }
    }

    #[test]
    fn outcome_names_are_the_stored_ones() {
        // Stored in the attempts table and shown by the API: these must never change.
        assert_eq!(
            OutcomeKind::ALL.map(OutcomeKind::as_str),
            [
                "response",
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
            assert_eq!(OutcomeKind::parse(name), None, "{name:?}");
            assert_eq!(
                AttemptOutcome::parse(name, Some(200)),
                Err(AttemptOutcomeError::UnknownKind(name.into())),
                "{name:?}"
            );
        }
        let refusal = AttemptOutcomeError::UnknownKind("lost".into()).to_string();
        assert!(refusal.starts_with("outcome: unknown kind \"lost\"; expected "));
        for kind in OutcomeKind::ALL {
            assert!(refusal.contains(kind.as_str()), "{refusal} names {kind:?}");
        }
    }

    #[test]
    fn a_response_needs_a_status_and_other_kinds_ignore_one() {
        assert_eq!(
            AttemptOutcome::parse("response", None),
            Err(AttemptOutcomeError::MissingStatus)
        );
        assert_eq!(
            AttemptOutcome::parse("response", Some(429)),
            Ok(AttemptOutcome::Response {
                status: 429,
                retry_after: None
            })
        );
        assert_eq!(
            AttemptOutcome::parse("timeout", Some(200)),
            Ok(AttemptOutcome::Timeout)
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
