//! Event sources: the inbound seam. A source is an adapter that reads events from somewhere
//! (a broker's topic, a file, a queue) and hands them to the publishing service through
//! [`PublishEvents`], acknowledging its input only once the service has answered, which means
//! the events and their deliveries are committed.
//!
//! This module knows no transport and no storage: it must not name a broker, a driver or the
//! app. A source is chosen by the scheme of its URL through a [`SourceKind`], the way a storage
//! backend is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::{BoxError, PublishItem, Published};
use async_trait::async_trait;

/// Why the publishing service did not store a source's events. What a source does next
/// depends on the variant: the input is wrong (acknowledge it as refused, report it, go on),
/// or storage is down (acknowledge nothing, try the same input again later).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An event names a wallet that does not exist; nothing was stored.
    #[error("an event names a wallet that does not exist; nothing was stored")]
    WalletNotFound,
    /// An event's id or idempotency key was published before with other content; nothing was
    /// stored.
    #[error("conflict: {0}; nothing was stored")]
    Conflict(String),
    /// Storage cannot take events now (down, disk full, read-only); nothing was stored, and the
    /// same input may succeed later.
    #[error("storage is unavailable; nothing was stored; try again later")]
    Unavailable(#[source] BoxError),
    /// Anything else; nothing was stored.
    #[error("the publish failed; nothing was stored")]
    Backend(#[source] BoxError),
}

impl PublishError {
    /// Whether the same input could be stored later: only when storage was unavailable. Any
    /// other error is about the input, and repeating it would fail the same way.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The publishing service as a source sees it: the one way events enter webhookd, shared with
/// the REST API and the CLI.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PublishEvents: Send + Sync {
    /// Stores `items` (each into the wallet its event names) with one delivery per interested
    /// target, and answers one [`Published`] per item, in order.
    ///
    /// - An `Ok` answer MUST mean committed: the events and their deliveries survive a crash
    ///   that follows, so the caller may acknowledge its input.
    /// - MUST store all of `items` or none of them.
    /// - MUST NOT store an event twice: an event id already published in its wallet answers the
    ///   first result with `replayed: true`. A source that derives its event ids from its input
    ///   (an offset, a message id) therefore loses nothing and duplicates nothing when it reads
    ///   input again after a crash.
    ///
    /// # Errors
    /// - MUST return `WalletNotFound` when an event names a wallet that does not exist.
    /// - MUST return `Unavailable` when storage cannot be reached or cannot write, so that the
    ///   caller keeps its input and tries again.
    async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError>;

    /// Takes the report of a piece of input a source refused for good (it cannot be read, or
    /// the service refused its event for a reason of its own), after the source terminated or
    /// rejected it at its broker (the source logs it itself): the service counts it and keeps
    /// it for the operator to list. By default it is dropped.
    fn refused(&self, refusal: Refusal) {
        let _ = refusal;
    }
}

/// A piece of input a source refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The source, as its kind names it with its URL (without credentials).
    pub source: String,
    /// Where the input is, for someone to find it (`stream EVENTS sequence 42`).
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Why a source stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Its input cannot be reached or read any more (a broker gone for good, a file removed).
    #[error("the source's input is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// Anything else.
    #[error("the source failed: {0}")]
    Backend(#[source] BoxError),
}

/// Resolves once the service is stopping. A source selects on it beside its reads: `&mut
/// shutdown` can be polled again and again, also after it has resolved (it stays resolved).
pub struct Shutdown(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Shutdown {
    /// A shutdown signalled when `signal` resolves.
    pub fn new(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Some(Box::pin(signal)))
    }
}

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // An async block must not be polled once it has completed: remember that it did.
        let Some(signal) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        let polled = signal.as_mut().poll(cx);
        if polled.is_ready() {
            self.0 = None;
        }
        polled
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").finish_non_exhaustive()
    }
}

/// One configured event source, ready to run.
#[async_trait]
pub trait EventSource: Send {
    /// Reads events and hands them to `sink` until `shutdown` resolves, then returns `Ok`.
    ///
    /// Each rule is one case of the contract suite (`contract::source`, feature `contract`).
    ///
    /// - MUST hand each piece of input (a message) to the sink as one [`PublishItem`] with the
    ///   input's event (for a broker source: the body's `type` and `data`), and give an event
    ///   the same id each time it reads the same input (the input's own id, such as a broker's
    ///   message id, or one derived from where the input is), so that input read again (after
    ///   a crash, or put twice) is replayed rather than stored twice.
    /// - MUST acknowledge a piece of input (commit an offset, ack a message) only after
    ///   `sink.publish` answered `Ok` for the events it holds, or refused them for a reason of
    ///   their own (not a transient one; see [`PublishError::is_transient`]).
    /// - MUST hold back while a publish has not answered: take at most one batch (its batch or
    ///   prefetch size) of input it has not acknowledged, and leave the rest where it is (in
    ///   the broker), so that a slow or absent database never fills the source's memory.
    /// - MUST keep its input unacknowledged and publish the same events (the same ids) again
    ///   later when the sink answers a transient error.
    /// - MUST NOT stop on input it cannot read or that the sink refuses: it settles it for
    ///   good (terminates or rejects it at its broker, so that it does not come again), reports
    ///   it through [`PublishEvents::refused`] with the reason (and a log line naming the input
    ///   and what was wrong), and goes on with the next.
    /// - MUST return soon after `shutdown` resolves, also while a publish has not answered
    ///   (abandoning it: its input comes again and is replayed), acknowledging nothing it has
    ///   not published.
    ///
    /// # Errors
    /// `Unavailable` when its input is gone for good; the app logs it, and the source stays
    /// stopped while the rest of the service runs on.
    async fn run(
        self: Box<Self>,
        sink: Arc<dyn PublishEvents>,
        shutdown: Shutdown,
    ) -> Result<(), SourceError>;
}

/// One kind of event source as the app sees it before anything is opened: which URL schemes it
/// serves and how to make a source of a URL.
#[derive(Debug, Clone, Copy)]
pub struct SourceKind {
    /// Its name in messages (`JSON lines`, `NATS`).
    pub name: &'static str,
    /// The URL schemes it serves, without `://`.
    pub schemes: &'static [&'static str],
    /// A URL to show in an error message that asks for one.
    pub example: &'static str,
    /// Makes a source of `url` (of one of its schemes), without reading any input yet: a
    /// message saying what is wrong with the URL otherwise, never repeating credentials.
    pub open: fn(url: &str) -> Result<Box<dyn EventSource>, String>,
}

impl SourceKind {
    /// Whether it serves `url`'s scheme.
    pub fn serves(&self, url: &str) -> bool {
        url.split_once("://")
            .is_some_and(|(scheme, _)| self.schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_nothing(url: &str) -> Result<Box<dyn EventSource>, String> {
        Err(format!("{url}: never opened in these tests"))
    }

    const KIND: SourceKind = SourceKind {
        name: "idle",
        schemes: &["idle", "idle+tls"],
        example: "idle://anything",
        open: open_nothing,
    };

    #[test]
    fn a_kind_serves_its_schemes_in_any_case_and_nothing_else() {
        assert!(KIND.serves("idle://x"));
        assert!(KIND.serves("IDLE+TLS://x"));
        assert!(!KIND.serves("idler://x"));
        assert!(!KIND.serves("idle:x"));
        assert!(!KIND.serves("idle"));
    }

    #[test]
    fn a_shutdown_stays_resolved() {
        let mut shutdown = Shutdown::new(async {});
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..3 {
            assert!(Pin::new(&mut shutdown).poll(&mut cx).is_ready());
        }
    }

    #[test]
    fn only_unavailable_storage_is_transient() {
        assert!(PublishError::Unavailable("down".into()).is_transient());
        assert!(!PublishError::WalletNotFound.is_transient());
        assert!(!PublishError::Conflict("id reused".into()).is_transient());
        assert!(!PublishError::Backend("bug".into()).is_transient());
    }
}
