//! Publishing, the one service every inbound path calls ([`Publishing`]), and its group commit
//! for single publishes: concurrent `POST /events` requests are stored together,
//! in one transaction per group, so their commits share one disk flush. A request waits for no
//! timer: a worker takes whatever has queued up while the previous group was committing, so a
//! lone request is stored at once and a crowd is stored in a few transactions.
//!
//! A group is all-or-nothing in storage; when it fails for one request's sake (an idempotency
//! conflict, say), its requests are stored one by one instead, so each gets its own answer.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use webhook_ports::{
    BoxError, Clock, EventOutbox, OutboxError, PublishItem, Published, StorageRefusal,
    WalletRepository, WalletStoreError,
};

use crate::metrics::Metrics;

/// Requests stored in one transaction, at most.
const MAX_GROUP: usize = 256;
/// Workers committing groups concurrently: while one commits, the next group gathers.
const WORKERS: usize = 2;
/// Requests waiting for a worker, at most; further publishers wait for room.
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Published, OutboxError>>;

/// The front of the group-commit workers.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    queue: mpsc::Sender<(PublishItem, Reply)>,
}

impl Publisher {
    /// Starts the workers; they stop when every `Publisher` clone is dropped.
    pub(crate) fn start(
        outbox: Arc<dyn EventOutbox>,
        clock: Arc<dyn Clock>,
    ) -> (Publisher, Vec<JoinHandle<()>>) {
        let (queue, requests) = mpsc::channel(QUEUE);
        let requests = Arc::new(Mutex::new(requests));
        let workers = (0..WORKERS)
            .map(|_| tokio::spawn(work(outbox.clone(), clock.clone(), requests.clone())))
            .collect();
        (Publisher { queue }, workers)
    }

    /// Stores `item` as [`EventOutbox::publish`] would, in a group with concurrent requests.
    ///
    /// # Errors
    /// As [`EventOutbox::publish`]; `Unavailable` when the workers have stopped.
    pub(crate) async fn publish(&self, item: PublishItem) -> Result<Published, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> OutboxError {
    OutboxError::Unavailable("the publisher has stopped".into())
}

async fn work(
    outbox: Arc<dyn EventOutbox>,
    clock: Arc<dyn Clock>,
    requests: Arc<Mutex<mpsc::Receiver<(PublishItem, Reply)>>>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        // Holding the lock while waiting makes this worker the one that gathers next.
        let received = requests.lock().await.recv_many(&mut group, MAX_GROUP).await;
        if received == 0 {
            return;
        }
        let (items, replies): (Vec<PublishItem>, Vec<Reply>) = group.drain(..).unzip();
        commit(outbox.as_ref(), clock.now(), items, replies).await;
    }
}

/// Stores a group and answers each of its requests.
async fn commit(
    outbox: &dyn EventOutbox,
    now: OffsetDateTime,
    items: Vec<PublishItem>,
    replies: Vec<Reply>,
) {
    if let [item] = items.as_slice() {
        let result = outbox
            .publish(&item.event, item.idempotency.clone(), now)
            .await;
        answer(replies, vec![result]);
        return;
    }
    match outbox.publish_batch(&items, now).await {
        Ok(published) => answer(replies, published.into_iter().map(Ok).collect()),
        Err(OutboxError::Unavailable(cause)) => {
            // Every request of the group gets the cause; a storage refusal keeps its type, so
            // that each answer can say what is wrong.
            let refusal = cause.downcast_ref::<StorageRefusal>().copied();
            let text = cause.to_string();
            let unavailable = |_| {
                Err(OutboxError::Unavailable(match refusal {
                    Some(refusal) => Box::new(refusal),
                    None => BoxError::from(text.clone()),
                }))
            };
            answer(replies, (0..items.len()).map(unavailable).collect());
        }
        // One request's conflict (or a deadlock) failed the group: store them one by one.
        Err(_) => {
            let mut results = Vec::with_capacity(items.len());
            for item in &items {
                results.push(
                    outbox
                        .publish(&item.event, item.idempotency.clone(), now)
                        .await,
                );
            }
            answer(replies, results);
        }
    }
}

fn answer(replies: Vec<Reply>, results: Vec<Result<Published, OutboxError>>) {
    for (reply, result) in replies.into_iter().zip(results) {
        // A request whose client went away still stored its event; nobody is told.
        let _ = reply.send(result);
    }
}

/// Publishing as every inbound path does it (the REST API's single and batch publishes, the
/// CLI, any future event source): the wallet checked when the caller could name any, the
/// events stored (a single publish through the group commit, a batch in one transaction), new
/// events counted, and the local dispatcher woken when deliveries were created. What it answers
/// is committed: a source acknowledges its input only after it returns.
#[derive(Clone)]
pub(crate) struct Publishing {
    singles: Publisher,
    outbox: Arc<dyn EventOutbox>,
    wallets: Arc<dyn WalletRepository>,
    clock: Arc<dyn Clock>,
    /// `None` where nothing is served from this process (the CLI).
    metrics: Option<Arc<Metrics>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Publishing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publishing").finish_non_exhaustive()
    }
}

/// Why a publish was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// A wallet named by an event could not be read (`NotFound`: it does not exist).
    #[error(transparent)]
    Wallet(#[from] WalletStoreError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl Publishing {
    /// Starts the group-commit workers (see [`Publisher::start`]); they stop once every clone
    /// of the answer is dropped, after storing what was accepted.
    pub(crate) fn start(
        outbox: Arc<dyn EventOutbox>,
        wallets: Arc<dyn WalletRepository>,
        clock: Arc<dyn Clock>,
        metrics: Option<Arc<Metrics>>,
        wake: Arc<Notify>,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let (singles, workers) = Publisher::start(outbox.clone(), clock.clone());
        let publishing = Self {
            singles,
            outbox,
            wallets,
            clock,
            metrics,
            wake,
        };
        (publishing, workers)
    }

    /// Stores one event, grouped with concurrent single publishes; with `check_wallet`, first
    /// checks that its wallet exists (for callers that may name any wallet).
    ///
    /// # Errors
    /// `Wallet(NotFound)` for a missing wallet; otherwise as [`EventOutbox::publish`].
    pub(crate) async fn publish(
        &self,
        item: PublishItem,
        check_wallet: bool,
    ) -> Result<Published, PublishError> {
        if check_wallet {
            self.check_wallets(std::slice::from_ref(&item)).await?;
        }
        let published = self.singles.publish(item).await?;
        self.after(std::slice::from_ref(&published));
        Ok(published)
    }

    /// Stores a batch in one transaction: all events, or none; with `check_wallets`, first
    /// checks that each named wallet exists.
    ///
    /// # Errors
    /// `Wallet(NotFound)` for a missing wallet; otherwise as [`EventOutbox::publish_batch`].
    pub(crate) async fn publish_batch(
        &self,
        items: &[PublishItem],
        check_wallets: bool,
    ) -> Result<Vec<Published>, PublishError> {
        if check_wallets {
            self.check_wallets(items).await?;
        }
        let published = self.outbox.publish_batch(items, self.clock.now()).await?;
        self.after(&published);
        Ok(published)
    }

    async fn check_wallets(&self, items: &[PublishItem]) -> Result<(), WalletStoreError> {
        let mut seen = std::collections::HashSet::new();
        for item in items {
            let wallet = item.event.wallet_id();
            if seen.insert(wallet) {
                self.wallets.get_wallet(wallet).await?;
            }
        }
        Ok(())
    }

    /// Counts what was stored anew and wakes the dispatcher when it created deliveries.
    fn after(&self, published: &[Published]) {
        let fresh = published.iter().filter(|p| !p.replayed);
        if let Some(metrics) = &self.metrics {
            metrics.events_published(fresh.clone().count());
        }
        if fresh.clone().any(|p| p.deliveries > 0) {
            self.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use webhook_domain::{Event, EventId, EventType, Timestamp, WalletId};
    use webhook_ports::{MockClock, MockEventOutbox};

    fn item(n: u128) -> PublishItem {
        PublishItem {
            event: Event::new(
                EventId::from_uuid(uuid::Uuid::from_u128(n)),
                Timestamp::from_datetime(datetime!(2026-11-29 00:00 UTC)),
                EventType::parse("Custom.Thing").unwrap(),
                serde_json::json!({ "n": n }),
                WalletId::DEFAULT,
            )
            .unwrap(),
            idempotency: None,
        }
    }

    fn published(item: &PublishItem) -> Published {
        Published {
            event_id: item.event.id(),
            deliveries: 1,
            replayed: false,
        }
    }

    async fn run(
        outbox: MockEventOutbox,
        items: Vec<PublishItem>,
    ) -> Vec<Result<Published, String>> {
        let (replies, answers): (Vec<_>, Vec<_>) = items.iter().map(|_| oneshot::channel()).unzip();
        commit(&outbox, datetime!(2026-11-29 00:00 UTC), items, replies).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap().map_err(|e| e.to_string()));
        }
        results
    }

    #[tokio::test]
    async fn a_group_is_stored_in_one_batch() {
        let mut outbox = MockEventOutbox::new();
        outbox
            .expect_publish_batch()
            .times(1)
            .returning(|items, _| Ok(items.iter().map(published).collect()));
        let results = run(outbox, vec![item(1), item(2), item(3)]).await;
        let ids: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().unwrap().event_id)
            .collect();
        assert_eq!(
            ids,
            [1, 2, 3].map(|n| EventId::from_uuid(uuid::Uuid::from_u128(n)))
        );
    }

    #[tokio::test]
    async fn a_failed_group_is_stored_one_by_one_with_each_answer_its_own() {
        let mut outbox = MockEventOutbox::new();
        outbox
            .expect_publish_batch()
            .times(1)
            .returning(|_, _| Err(OutboxError::Conflict("idempotency key reused".into())));
        let conflicting = EventId::from_uuid(uuid::Uuid::from_u128(2));
        outbox
            .expect_publish()
            .times(3)
            .returning(move |event, _, _| {
                if event.id() == conflicting {
                    Err(OutboxError::Conflict("idempotency key reused".into()))
                } else {
                    Ok(Published {
                        event_id: event.id(),
                        deliveries: 1,
                        replayed: false,
                    })
                }
            });
        let results = run(outbox, vec![item(1), item(2), item(3)]).await;
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(results[1].as_ref().unwrap_err().contains("idempotency"));
    }

    #[tokio::test]
    async fn an_unavailable_database_fails_the_group_without_retrying_each() {
        let mut outbox = MockEventOutbox::new();
        outbox
            .expect_publish_batch()
            .times(1)
            .returning(|_, _| Err(OutboxError::Unavailable("down".into())));
        outbox.expect_publish().never();
        let results = run(outbox, vec![item(1), item(2)]).await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().unwrap_err().contains("unavailable"))
        );
    }

    #[tokio::test]
    async fn a_full_disk_is_named_in_every_answer_of_the_group() {
        let mut outbox = MockEventOutbox::new();
        outbox
            .expect_publish_batch()
            .times(1)
            .returning(|_, _| Err(OutboxError::Unavailable(Box::new(StorageRefusal::DiskFull))));
        outbox.expect_publish().never();
        let (replies, answers): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        let now = datetime!(2026-11-29 00:00 UTC);
        commit(&outbox, now, vec![item(1), item(2), item(3)], replies).await;
        for answer in answers {
            let Err(OutboxError::Unavailable(cause)) = answer.await.unwrap() else {
                panic!("expected the database to be unavailable");
            };
            assert_eq!(
                cause.downcast_ref::<StorageRefusal>(),
                Some(&StorageRefusal::DiskFull)
            );
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_groups() {
        let mut outbox = MockEventOutbox::new();
        outbox.expect_publish().returning(|event, _, _| {
            Ok(Published {
                event_id: event.id(),
                deliveries: 1,
                replayed: false,
            })
        });
        outbox
            .expect_publish_batch()
            .returning(|items, _| Ok(items.iter().map(published).collect()));
        let mut clock = MockClock::new();
        clock
            .expect_now()
            .returning(|| datetime!(2026-11-29 00:00 UTC));
        let (publisher, workers) = Publisher::start(Arc::new(outbox), Arc::new(clock));
        let requests: Vec<_> = (0..100)
            .map(|n| {
                let publisher = publisher.clone();
                tokio::spawn(async move { publisher.publish(item(n)).await })
            })
            .collect();
        for (n, request) in requests.into_iter().enumerate() {
            let published = request.await.unwrap().unwrap();
            assert_eq!(
                published.event_id,
                EventId::from_uuid(uuid::Uuid::from_u128(n as u128))
            );
        }
        drop(publisher);
        for worker in workers {
            worker.await.unwrap();
        }
    }

    fn service(
        outbox: MockEventOutbox,
        wallets: webhook_ports::MockWalletRepository,
        metrics: &Arc<Metrics>,
        wake: &Arc<Notify>,
    ) -> (Publishing, Vec<JoinHandle<()>>) {
        let mut clock = MockClock::new();
        clock
            .expect_now()
            .returning(|| datetime!(2026-11-29 00:00 UTC));
        Publishing::start(
            Arc::new(outbox),
            Arc::new(wallets),
            Arc::new(clock),
            Some(metrics.clone()),
            wake.clone(),
        )
    }

    fn published_total(metrics: &Metrics) -> String {
        let text = metrics
            .render(
                datetime!(2026-11-29 00:00 UTC),
                None,
                crate::metrics::PoolUsage::default(),
            )
            .unwrap();
        text.lines()
            .find(|l| l.starts_with("webhookd_events_published_total "))
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn the_service_counts_new_events_and_wakes_only_for_new_deliveries() {
        let mut outbox = MockEventOutbox::new();
        outbox
            .expect_publish_batch()
            .times(1)
            .returning(|items, _| {
                // A new event with deliveries, a replay, a new event without deliveries.
                Ok(vec![
                    published(&items[0]),
                    Published {
                        replayed: true,
                        ..published(&items[1])
                    },
                    Published {
                        deliveries: 0,
                        ..published(&items[2])
                    },
                ])
            });
        let metrics = Arc::new(Metrics::new());
        let wake = Arc::new(Notify::new());
        let (publishing, _workers) = service(
            outbox,
            webhook_ports::MockWalletRepository::new(),
            &metrics,
            &wake,
        );
        let answers = publishing
            .publish_batch(&[item(1), item(2), item(3)], false)
            .await
            .unwrap();
        assert_eq!(answers.len(), 3);
        assert_eq!(
            published_total(&metrics),
            "webhookd_events_published_total 2"
        );
        // The wake-up is stored as a permit: it was given.
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
            .await
            .expect("deliveries were created: the dispatcher is woken");

        // A replay (a lone single publish is stored by itself): nothing counted, no wake-up.
        let mut outbox = MockEventOutbox::new();
        outbox.expect_publish().times(1).returning(|event, _, _| {
            Ok(Published {
                event_id: event.id(),
                deliveries: 1,
                replayed: true,
            })
        });
        let metrics = Arc::new(Metrics::new());
        let wake = Arc::new(Notify::new());
        let (publishing, _workers) = service(
            outbox,
            webhook_ports::MockWalletRepository::new(),
            &metrics,
            &wake,
        );
        publishing.publish(item(4), false).await.unwrap();
        assert_eq!(
            published_total(&metrics),
            "webhookd_events_published_total 0"
        );
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), wake.notified())
                .await
                .is_err(),
            "a replay woke the dispatcher"
        );
    }

    #[tokio::test]
    async fn a_missing_wallet_stores_nothing() {
        let mut wallets = webhook_ports::MockWalletRepository::new();
        wallets
            .expect_get_wallet()
            .times(1)
            .returning(|_| Err(WalletStoreError::NotFound));
        // No expectation on the outbox: a publish would panic.
        let metrics = Arc::new(Metrics::new());
        let wake = Arc::new(Notify::new());
        let (publishing, _workers) = service(MockEventOutbox::new(), wallets, &metrics, &wake);
        let refused = publishing
            .publish_batch(&[item(1), item(2)], true)
            .await
            .unwrap_err();
        assert!(matches!(
            refused,
            PublishError::Wallet(WalletStoreError::NotFound)
        ));
        assert_eq!(
            published_total(&metrics),
            "webhookd_events_published_total 0"
        );
    }
}
