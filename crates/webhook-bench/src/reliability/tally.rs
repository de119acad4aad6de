//! What the receivers got against what webhookd acknowledged: every (acknowledged event,
//! webhook) pair must arrive at least once; repeats are allowed (delivery is at least once) and
//! counted.

use std::collections::HashSet;
use std::time::Duration;

use uuid::Uuid;

use crate::sink::Sink;

/// The delivery figures of one scenario.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    /// Acknowledged events.
    pub(crate) published: u64,
    /// Acknowledged events × their webhooks.
    pub(crate) expected: u64,
    /// Expected pairs that arrived at least once.
    pub(crate) delivered: u64,
    /// Expected pairs that never arrived.
    pub(crate) lost: u64,
    /// Arrivals beyond the first of a pair.
    pub(crate) duplicates: u64,
    /// Pairs of events whose publish was never acknowledged but which arrived all the same
    /// (stored, then the answer was lost for good).
    pub(crate) unacknowledged_arrivals: u64,
}

/// Counts now.
pub(crate) fn count(sink: &Sink, acked: &[Uuid], routes: &[usize]) -> Tally {
    let received: HashSet<(u128, usize)> =
        sink.receipts().iter().map(|r| (r.event, r.route)).collect();
    let acked_set: HashSet<u128> = acked.iter().map(|id| id.as_u128()).collect();
    let expected = (acked.len() * routes.len()) as u64;
    let delivered = acked
        .iter()
        .flat_map(|id| routes.iter().map(move |&r| (id.as_u128(), r)))
        .filter(|pair| received.contains(pair))
        .count() as u64;
    Tally {
        published: acked.len() as u64,
        expected,
        delivered,
        lost: expected - delivered,
        duplicates: sink.duplicates(),
        unacknowledged_arrivals: received
            .iter()
            .filter(|(event, _)| !acked_set.contains(event))
            .count() as u64,
    }
}

/// Waits until every expected pair arrived or until `limit` passed; true when all did.
pub(crate) async fn wait_delivered(
    sink: &Sink,
    acked: &[Uuid],
    routes: &[usize],
    limit: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if count(sink, acked, routes).lost == 0 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
