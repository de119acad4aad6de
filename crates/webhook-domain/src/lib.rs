//! The pure core of webhookd: event envelopes, webhook targets, retry policies, the delivery and
//! circuit-breaker state machines, Standard Webhooks signatures, and the SSRF address policy.
//!
//! This crate does no I/O, never reads the clock and never draws random numbers: time and
//! randomness are arguments. It must not depend on tokio, hyper or diesel (a `tidy` test checks).

mod address;
mod cancellation;
mod circuit;
mod concurrency;
mod delivery;
mod event;
mod ids;
mod jobs;
mod message;
mod publish;
mod retry;
mod signature;
mod tenancy;
mod timestamp;
mod webhook;

pub use address::{AddressClass, AddressPolicy, IpRange, IpRangeError, RefusedAddress};
pub use cancellation::CANCELLED_WITH_TARGET;
pub use circuit::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
pub use concurrency::{
    AdaptiveLimit, ConcurrencyLimits, ConcurrencyLimitsError, LATENCY_TOLERANCE, SLOW_START_STEP,
};
pub use delivery::{
    AttemptDetail, AttemptDetailError, AttemptOutcome, CancelReason, Decision, Delivery,
    DeliveryState, DeliveryStateKind, DetailKind, TransitionError, parse_retry_after,
};
pub use event::{Event, EventDataError, EventError, EventType, EventTypeError, json_nesting_depth};
pub use ids::{DeliveryId, EntityId, EventId, RedeliveryJobId, WalletId, WebhookId};
pub use jobs::{JobState, JobStopReason, RedeliveryJob, RedeliveryWindowError};
pub use message::OutboundMessage;
pub use publish::{EarlierPublish, IdempotencyConflict, Repeat, Replay, fan_out};
pub use retry::{Backoff, Jitter, RetryPolicy, RetryPolicyError};
pub use signature::{RetiringSecret, SignatureError, SigningKeys, SigningSecret, sign, verify};
pub use tenancy::{
    ApiKey, ApiKeyError, ApiKeyHash, ApiKeyTag, Entity, Wallet, WalletName, WalletNameError,
};
pub use timestamp::{Timestamp, TimestampError};
/// Bounds on what the domain accepts, for documentation and error messages elsewhere.
pub mod limits {
    pub use crate::delivery::MAX_RETRY_AFTER;
    pub use crate::event::MAX_EVENT_TYPE_LEN;
    pub use crate::retry::{MAX_AGE_LIMIT, MAX_ATTEMPTS_LIMIT, MAX_INTERVAL};
    pub use crate::signature::{MAX_SECRET_BYTES, MIN_SECRET_BYTES};
    pub use crate::webhook::{
        MAX_CUSTOM_HEADERS, MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN, MAX_HEADERS_TOTAL_LEN,
        MAX_URL_LEN,
    };
}
pub use webhook::{
    CustomHeaders, CustomHeadersError, EventTypeFilter, RateLimit, RateLimitError, Webhook,
    WebhookScope, WebhookUrl, WebhookUrlError,
};

/// Adds a duration to a point in time, saturating at the largest representable time instead of
/// panicking. Policies bound their durations, so saturation only guards against corrupt input.
pub fn add_saturating(at: time::OffsetDateTime, by: std::time::Duration) -> time::OffsetDateTime {
    time::Duration::try_from(by)
        .ok()
        .and_then(|d| at.checked_add(d))
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}
