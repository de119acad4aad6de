//! One monotonic timeline for the whole harness: the driver's publish starts and the sink's
//! receipts are nanoseconds since the same instant, so a latency is a subtraction.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the harness's epoch (its first call of this function or of [`at`]).
pub(crate) fn now_ns() -> u64 {
    Instant::now()
        .saturating_duration_since(epoch())
        .as_nanos()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// The instant `ns` nanoseconds after the epoch, for sleeping until a scheduled start.
pub(crate) fn at(ns: u64) -> Instant {
    epoch() + std::time::Duration::from_nanos(ns)
}
