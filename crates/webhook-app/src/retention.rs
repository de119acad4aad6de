//! The pruning job: removes finished history older than the configured age, in bounded
//! batches (one short transaction each), so the database stays small without blocking claims.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use webhook_ports::{Clock, OutboxError, Pruned, Retention};

use crate::config::RetentionSettings;

/// Removes, batch after batch, every finished event stored before `before`; returns the
/// totals. Stops early (keeping what was removed) when `shutdown` turns true.
///
/// # Errors
/// The first storage error; batches removed before it stay removed.
pub(crate) async fn prune_all(
    retention: &dyn Retention,
    before: time::OffsetDateTime,
    batch_size: u32,
    shutdown: &watch::Receiver<bool>,
) -> Result<Pruned, OutboxError> {
    let mut total = Pruned::default();
    for batches in 1u64.. {
        let batch = retention.prune(before, batch_size).await?;
        total.events += batch.events;
        total.deliveries += batch.deliveries;
        total.attempts += batch.attempts;
        if batch.events == 0 || *shutdown.borrow() {
            return Ok(total);
        }
        // A long prune (a first run over a large history) reports its progress.
        if batches % PROGRESS_EVERY == 0 {
            tracing::info!(
                events = total.events,
                batches,
                "pruning finished history: still going"
            );
        } else {
            tracing::debug!(removed = total.events, "pruning finished history");
        }
        // Let claims and publishes in between batches.
        tokio::task::yield_now().await;
    }
    Ok(total)
}

/// Batches between two progress lines of a long prune.
const PROGRESS_EVERY: u64 = 10;

/// Prunes at start and then every `settings.interval()` until `shutdown` turns true.
pub(crate) async fn run(
    retention: Arc<dyn Retention>,
    clock: Arc<dyn Clock>,
    settings: RetentionSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(max_age) = settings.max_age() else {
        return;
    };
    loop {
        let before = clock.now() - max_age;
        match prune_all(retention.as_ref(), before, settings.batch_size, &shutdown).await {
            Ok(total) if total.events > 0 => tracing::info!(
                events = total.events,
                deliveries = total.deliveries,
                attempts = total.attempts,
                "pruned finished history older than {} hours",
                settings.max_age_hours
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed; it will be tried again"),
        }
        tokio::select! {
            () = tokio::time::sleep(settings.interval().max(Duration::from_secs(1))) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mockall::Sequence;
    use time::macros::datetime;
    use webhook_ports::MockRetention;

    fn pruned(events: u64) -> Pruned {
        Pruned {
            events,
            deliveries: events * 2,
            attempts: events * 3,
        }
    }

    #[tokio::test]
    async fn prune_all_repeats_until_a_batch_removes_nothing_and_sums() {
        let before = datetime!(2026-01-01 00:00 UTC);
        let mut mock = MockRetention::new();
        let mut seq = Sequence::new();
        for events in [100, 100, 7, 0] {
            mock.expect_prune()
                .withf(move |b, limit| *b == before && *limit == 100)
                .times(1)
                .in_sequence(&mut seq)
                .returning(move |_, _| Ok(pruned(events)));
        }
        let (_tx, rx) = watch::channel(false);
        let total = prune_all(&mock, before, 100, &rx).await.unwrap();
        assert_eq!(total, pruned(207));
    }

    #[tokio::test]
    async fn prune_all_stops_at_shutdown_and_reports_errors() {
        let before = datetime!(2026-01-01 00:00 UTC);
        let mut mock = MockRetention::new();
        mock.expect_prune().times(1).returning(|_, _| Ok(pruned(5)));
        let (_tx, rx) = watch::channel(true);
        assert_eq!(prune_all(&mock, before, 5, &rx).await.unwrap(), pruned(5));

        let mut failing = MockRetention::new();
        failing
            .expect_prune()
            .times(1)
            .returning(|_, _| Err(OutboxError::NotFound));
        let (_tx, rx) = watch::channel(false);
        assert!(prune_all(&failing, before, 5, &rx).await.is_err());
    }
}
