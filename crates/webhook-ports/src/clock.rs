//! Time, as a port: the core never reads the clock itself, so tests control it.

use time::OffsetDateTime;

/// The current time.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}
