//! The ports: the traits the core needs from the outside world (storage, destinations, the clock,
//! event sources), each with its contract. Adapters implement them; the app depends only on them.
//!
//! Every `MUST` in these docs is one case of the shared contract suite that runs against every
//! adapter. Errors are typed per port, with variants a caller can act on and one opaque
//! `Backend` for everything else.
//!
//! With the `mock` feature (and in this crate's tests) each trait has a mockall `Mock*` twin.

mod clock;
#[cfg(feature = "contract")]
pub mod contract;
mod destination;
mod outbox;
mod source;
mod storage;
mod tenancy;
mod webhooks;

pub use clock::Clock;
pub use destination::{AttemptReport, Destination};
pub use outbox::{
    AttemptLog, AttemptRecord, AttemptStats, Backlog, ClaimRequest, ClaimedDelivery,
    DeliveryFilter, DeliveryQueue, DeliverySearch, EventOutbox, FoundDelivery, Idempotency,
    LeaseOwner, OutboxError, Overview, Pruned, PublishItem, Published, RecentAttempts,
    RedeliveryJobs, Retention, SearchPosition, StatsWindow, WebhookStats,
};
pub use source::{
    EventSource, PublishError, PublishEvents, Refusal, Shutdown, SourceError, SourceKind,
};
pub use storage::{ChangeListener, PoolState, Storage, StorageError, StorageLifecycle, Watch};
pub use tenancy::{StoredApiKey, WalletRepository, WalletStoreError};
pub use webhooks::{WebhookRepository, WebhookStoreError};

#[cfg(any(test, feature = "mock"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mock"))]
pub use destination::MockDestination;
#[cfg(any(test, feature = "mock"))]
pub use outbox::{MockDeliveryQueue, MockEventOutbox, MockRedeliveryJobs, MockRetention};
#[cfg(any(test, feature = "mock"))]
pub use source::MockPublishEvents;
#[cfg(any(test, feature = "mock"))]
pub use tenancy::MockWalletRepository;
#[cfg(any(test, feature = "mock"))]
pub use webhooks::MockWebhookRepository;

/// Any error from a driver, kept opaque.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Storage refused to write for a reason of its disk or files, not of the request: it clears
/// once an operator frees space or makes the database writable again, and nothing was stored.
/// Adapters put it as the cause of a port's `Unavailable` error, so that callers can say what
/// is wrong without quoting the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorageRefusal {
    #[error("the database's disk is full; nothing was stored; writes resume once space is freed")]
    DiskFull,
    #[error(
        "the database is read-only; nothing was stored; writes resume once its files are writable"
    )]
    ReadOnly,
    #[error(
        "the database's files could not be written (an I/O error: the disk may be full, \
         read-only or failing); nothing was stored; writes resume once they can be"
    )]
    WriteFailed,
}

/// A window of a listing: skip `offset` rows, return at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u32,
}

impl Page {
    /// The first `limit` rows.
    pub fn first(limit: u32) -> Self {
        Self { offset: 0, limit }
    }
}
