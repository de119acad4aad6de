//! Contract rules of ordered targets and of which targets a claim may serve: strict order by
//! publish commit (within a batch, by item), one attempt in flight at a time across retries,
//! requeues and claimers, and no claim for a deleted or disabled target.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A wallet with one ordered webhook.
pub async fn ordered_target<S>(store: &S) -> (WalletId, Webhook)
where
    S: WalletRepository + WebhookRepository,
{
    let wallet = new_wallet(store).await;
    let mut ordered = webhook_value(WebhookScope::Wallet(wallet), "https://ordered.example/in");
    ordered.ordered = true;
    store.create_webhook(&ordered, None).await.unwrap();
    (wallet, ordered)
}

/// Records `outcome` for every claimed delivery and returns the claimed event ids.
pub async fn settle<S: DeliveryQueue>(
    store: &S,
    me: &LeaseOwner,
    claimed: &[crate::ClaimedDelivery],
    outcome: AttemptDetail,
    now: OffsetDateTime,
) -> Vec<EventId> {
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .map(|c| {
            let (next, _) = c
                .delivery
                .on_attempt(
                    &outcome.outcome(),
                    &RetryPolicy::identus(),
                    now,
                    Jitter::MAX,
                )
                .unwrap();
            AttemptRecord {
                delivery: next,
                attempt: log(c.delivery.attempts() + 1, now, outcome),
            }
        })
        .collect();
    let lost = store.record_attempts(me, &records).await.unwrap();
    assert!(lost.is_empty(), "leases lost: {lost:?}");
    claimed.iter().map(|c| c.event.id()).collect()
}

/// Claims and delivers the ordered target's deliveries one claim at a time until none is left,
/// checking that each claim holds at most one of them; returns their events in that order.
pub async fn drain_one_by_one<S: DeliveryQueue>(
    store: &S,
    target: WebhookId,
    now: OffsetDateTime,
) -> Vec<EventId> {
    let me = owner("drain");
    let mut order = Vec::new();
    loop {
        let claimed: Vec<_> = claim(store, &me, now, 100, &[])
            .await
            .into_iter()
            .filter(|c| c.webhook.id == target)
            .collect();
        assert!(claimed.len() <= 1, "{} in flight at once", claimed.len());
        if claimed.is_empty() {
            return order;
        }
        order.extend(settle(store, &me, &claimed, status(200), now).await);
    }
}

/// Deliveries to an ordered target go out in the order their publishes committed, whatever
/// times the callers passed as `now`, and a batch's in item order.
pub async fn ordered_follows_commit_order<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, ordered) = ordered_target(store).await;
    new_webhook(store, wallet, "https://free.example/in").await;
    let mut expected = Vec::new();
    // Publish times that go backwards: only the commit order counts.
    let first = event(wallet);
    store.publish(&first, None, at(10)).await.unwrap();
    let second = event(wallet);
    store.publish(&second, None, at(5)).await.unwrap();
    expected.extend([first.id(), second.id()]);
    // Twenty items of one batch share one publish time; their ids are random.
    let batch: Vec<Event> = (0..20).map(|_| event(wallet)).collect();
    let items: Vec<PublishItem> = batch.iter().map(|e| item(e, None)).collect();
    store.publish_batch(&items, at(7)).await.unwrap();
    expected.extend(batch.iter().map(Event::id));
    let last = event(wallet);
    store.publish(&last, None, at(1)).await.unwrap();
    expected.push(last.id());

    assert_eq!(drain_one_by_one(store, ordered.id, at(20)).await, expected);
}

/// A requeued delivery of an ordered target waits while another of the target is in flight,
/// then goes before the later ones that were not attempted yet.
pub async fn ordered_requeue_waits_for_the_one_in_flight<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, ordered) = ordered_target(store).await;
    let events: Vec<Event> = (0..3).map(|_| event(wallet)).collect();
    for e in &events {
        store.publish(e, None, T0).await.unwrap();
    }
    let me = owner("a");
    // The first one is exhausted: the queue moves on to the second.
    let head = claim(store, &me, at(1), 10, &[]).await;
    assert_eq!(
        settle(store, &me, &head, AttemptDetail::AddressRefused, at(1)).await,
        [events[0].id()]
    );
    let second = claim(store, &me, at(2), 10, &[]).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].event.id(), events[1].id());

    // Requeued while the second is in flight: nothing more may start.
    store
        .requeue(wallet, head[0].delivery.id(), at(3))
        .await
        .unwrap();
    assert!(claim(store, &me, at(4), 10, &[]).await.is_empty());
    assert_eq!(
        next_due(store, at(4), &[]).await,
        Some(at(2) + LEASE),
        "the next claimable time is the end of the lease in flight"
    );

    // Once it is delivered: the requeued one, then the third.
    settle(store, &me, &second, status(200), at(5)).await;
    assert_eq!(
        drain_one_by_one(store, ordered.id, at(6)).await,
        [events[0].id(), events[2].id()]
    );
}

/// Several claimers racing over an ordered target never hold two of its deliveries at once,
/// and it receives them in publish order.
pub async fn ordered_racing_claimers<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + Clone + 'static,
{
    let (wallet, ordered) = ordered_target(store).await;
    let free = new_webhook(store, wallet, "https://free.example/in").await;
    let events: Vec<Event> = (0..40).map(|_| event(wallet)).collect();
    for e in &events {
        store.publish(e, None, T0).await.unwrap();
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let claimers: Vec<_> = (0..4)
        .map(|n| {
            let (store, in_flight, received) = (store.clone(), in_flight.clone(), received.clone());
            tokio::spawn(async move {
                let me = owner(&format!("claimer-{n}"));
                let mut idle = 0;
                while idle < 50 {
                    let claimed = claim(&store, &me, at(1), 5, &[]).await;
                    if claimed.is_empty() {
                        idle += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    idle = 0;
                    let mine = claimed.iter().filter(|c| c.webhook.id == ordered.id);
                    for c in mine.clone() {
                        let before = in_flight.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(before, 0, "two deliveries of the ordered target at once");
                        received.lock().unwrap().push(c.event.id());
                    }
                    // Given up just before the outcome is stored, which frees the next one.
                    for _ in mine {
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                    settle(&store, &me, &claimed, status(200), at(1)).await;
                }
            })
        })
        .collect();
    for claimer in claimers {
        claimer.await.unwrap();
    }
    let expected: Vec<EventId> = events.iter().map(Event::id).collect();
    assert_eq!(*received.lock().unwrap(), expected);
    let left = store
        .list_deliveries(
            wallet,
            DeliveryFilter {
                webhook_id: Some(free.id),
                state: Some(webhook_domain::DeliveryStateKind::Pending),
                ..DeliveryFilter::default()
            },
            all(),
        )
        .await
        .unwrap();
    assert!(left.is_empty());
}

/// Publishes racing from several callers reach an ordered target in an order that respects
/// every publish that had returned before another began (the commit order), even when the
/// callers' clocks disagree.
pub async fn ordered_racing_publishers<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue + Clone + 'static,
{
    let (wallet, ordered) = ordered_target(store).await;
    let clock = Arc::new(std::sync::Mutex::new(0_u64));
    let tick = move || {
        let mut now = clock.lock().unwrap();
        *now += 1;
        *now
    };
    let publishers: Vec<_> = (0..6_i64)
        .map(|n| {
            let (store, tick) = (store.clone(), tick.clone());
            tokio::spawn(async move {
                let mut spans = Vec::new();
                for i in 0..15_i64 {
                    let e = event(wallet);
                    let began = tick();
                    // Each caller's clock is off by its own amount.
                    let now = at(100 + i - 17 * n);
                    if i % 5 == 4 {
                        let batch = [item(&e, None), item(&event(wallet), None)];
                        store.publish_batch(&batch, now).await.unwrap();
                        spans.push((batch[0].event.id(), began, tick()));
                        spans.push((batch[1].event.id(), began, tick()));
                    } else {
                        store.publish(&e, None, now).await.unwrap();
                        spans.push((e.id(), began, tick()));
                    }
                }
                spans
            })
        })
        .collect();
    let mut spans = Vec::new();
    for publisher in publishers {
        spans.extend(publisher.await.unwrap());
    }
    let order = drain_one_by_one(store, ordered.id, at(500)).await;
    assert_eq!(order.len(), spans.len());
    let position: std::collections::HashMap<EventId, usize> =
        order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for (a, _, a_end) in &spans {
        for (b, b_start, _) in &spans {
            if a_end < b_start {
                assert!(
                    position[a] < position[b],
                    "{a} returned before {b} was published, but was delivered after it"
                );
            }
        }
    }
}

/// Deleting or disabling a target leaves its delivery in flight to the holder, whose outcome is
/// recorded; what the holder leaves unfinished is cancelled by `settle_target`, which until then
/// reports the live lease. Claims never hand out the target's deliveries, and such deliveries
/// do not count as due.
pub async fn a_change_leaves_the_delivery_in_flight_to_its_holder<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    for delete in [false, true] {
        let (wallet, webhook, _, _) = one_delivery(store).await;
        store.publish(&event(wallet), None, T0).await.unwrap();
        let me = owner("a");
        let held = claim(store, &me, T0, 1, &[]).await;
        assert_eq!(held.len(), 1);
        let reason = if delete {
            store
                .delete_webhook(wallet, webhook.id, at(1))
                .await
                .unwrap();
            webhook_domain::CancelReason::TargetDeleted
        } else {
            let mut off = store.get_webhook(wallet, webhook.id).await.unwrap();
            off.enabled = false;
            store.update_webhook(&off, at(1)).await.unwrap();
            webhook_domain::CancelReason::TargetDisabled
        };
        let states = |deliveries: Vec<Delivery>| -> Vec<webhook_domain::DeliveryStateKind> {
            let mut kinds: Vec<_> = deliveries.iter().map(|d| d.state().kind()).collect();
            kinds.sort();
            kinds
        };
        use webhook_domain::DeliveryStateKind::{Cancelled, InFlight, RetryScheduled};
        assert_eq!(
            states(deliveries_of(store, wallet).await),
            [InFlight, Cancelled],
            "the one not claimed is cancelled, the one in flight is left alone"
        );
        assert_eq!(
            store.settle_target(webhook.id, at(2)).await.unwrap(),
            Some(T0 + LEASE),
            "its lease is live"
        );
        assert!(claim(store, &me, at(2), 10, &[]).await.is_empty());
        assert_eq!(next_due(store, at(2), &[]).await, None);

        // The holder's outcome is recorded: a retry, which settling then cancels.
        settle(store, &me, &held, status(500), at(3)).await;
        assert_eq!(
            states(deliveries_of(store, wallet).await),
            [RetryScheduled, Cancelled]
        );
        assert_eq!(store.settle_target(webhook.id, at(4)).await.unwrap(), None);
        let after = deliveries_of(store, wallet).await;
        assert!(
            after.iter().all(|d| matches!(
                d.state(),
                DeliveryState::Cancelled { reason: r, .. } if r == reason
            )),
            "{after:?}"
        );
    }
}

/// A delivery left in flight by an instance that died when its target was deleted or disabled
/// is cancelled by a claim once its lease has run out; it is never handed out.
pub async fn claims_cancel_what_a_dead_holder_left_of_a_gone_target<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    for delete in [false, true] {
        let (wallet, webhook, _, _) = one_delivery(store).await;
        let held = claim(store, &owner("dead"), T0, 10, &[]).await;
        assert_eq!(held.len(), 1);
        if delete {
            store
                .delete_webhook(wallet, webhook.id, at(1))
                .await
                .unwrap();
        } else {
            let mut off = store.get_webhook(wallet, webhook.id).await.unwrap();
            off.enabled = false;
            store.update_webhook(&off, at(1)).await.unwrap();
        }
        let after_lease = T0 + LEASE + Duration::from_secs(1);
        assert!(
            claim(store, &owner("b"), after_lease, 10, &[])
                .await
                .is_empty()
        );
        let left = deliveries_of(store, wallet).await;
        assert!(
            left.iter()
                .all(|d| d.state().kind() == webhook_domain::DeliveryStateKind::Cancelled),
            "{left:?}"
        );
        // Settling has nothing left to wait for.
        assert_eq!(
            store.settle_target(webhook.id, after_lease).await.unwrap(),
            None
        );
    }
}

/// settle_target changes nothing for a live, enabled target.
pub async fn settling_a_live_target_changes_nothing<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, webhook, _, _) = one_delivery(store).await;
    claim(store, &owner("a"), T0, 1, &[]).await;
    store.publish(&event(wallet), None, T0).await.unwrap();
    let before = deliveries_of(store, wallet).await;
    assert_eq!(store.settle_target(webhook.id, at(1)).await.unwrap(), None);
    assert_eq!(deliveries_of(store, wallet).await, before);
}

/// A requeue of a delivery whose target is deleted or disabled is `Conflict`, changing nothing.
pub async fn requeue_refuses_a_gone_target<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    for delete in [false, true] {
        let (wallet, webhook, _, delivery) = one_delivery(store).await;
        let me = owner("a");
        let claimed = claim(store, &me, T0, 10, &[]).await;
        settle(store, &me, &claimed, AttemptDetail::AddressRefused, T0).await;
        if delete {
            store
                .delete_webhook(wallet, webhook.id, at(1))
                .await
                .unwrap();
        } else {
            let mut off = store.get_webhook(wallet, webhook.id).await.unwrap();
            off.enabled = false;
            store.update_webhook(&off, at(1)).await.unwrap();
        }
        let before = deliveries_of(store, wallet).await;
        let err = store
            .requeue(wallet, delivery.id(), at(2))
            .await
            .unwrap_err();
        assert!(matches!(err, OutboxError::Conflict(_)), "{err:?}");
        assert_eq!(deliveries_of(store, wallet).await, before);
    }
}

/// Turning `ordered` on keeps the deliveries already waiting, in the order they were stored,
/// before the ones published after.
pub async fn ordering_a_target_keeps_its_waiting_deliveries<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let wallet = new_wallet(store).await;
    let webhook = new_webhook(store, wallet, "https://a.example/in").await;
    let mut expected = Vec::new();
    for n in 0..3 {
        let e = event(wallet);
        store.publish(&e, None, at(n)).await.unwrap();
        expected.push(e.id());
    }
    let mut ordered = store.get_webhook(wallet, webhook.id).await.unwrap();
    ordered.ordered = true;
    store.update_webhook(&ordered, at(5)).await.unwrap();
    let later = event(wallet);
    store.publish(&later, None, at(6)).await.unwrap();
    expected.push(later.id());
    assert_eq!(drain_one_by_one(store, webhook.id, at(10)).await, expected);
}

/// next_due_at leaves out what a claim could not take: the targets in `skip`, and the
/// deliveries of an ordered target behind a first one that is not due.
pub async fn next_due_at_leaves_out_what_cannot_be_claimed<S>(store: &S)
where
    S: WalletRepository + WebhookRepository + EventOutbox + DeliveryQueue,
{
    let (wallet, ordered) = ordered_target(store).await;
    for _ in 0..3 {
        store.publish(&event(wallet), None, T0).await.unwrap();
    }
    let me = owner("a");
    let head = claim(store, &me, at(1), 10, &[]).await;
    assert_eq!(head.len(), 1);
    // The first one failed: retried at +5 s (Identus's policy); the others wait behind it.
    settle(store, &me, &head, status(500), at(1)).await;
    assert_eq!(next_due(store, at(2), &[]).await, Some(at(6)));
    assert_eq!(next_due(store, at(2), &[ordered.id]).await, None);

    let other = new_webhook(store, new_wallet(store).await, "https://b.example/in").await;
    let WebhookScope::Wallet(b) = other.scope else {
        unreachable!()
    };
    store.publish(&event(b), None, at(2)).await.unwrap();
    assert_eq!(next_due(store, at(3), &[]).await, Some(at(2)));
    assert_eq!(next_due(store, at(3), &[other.id]).await, Some(at(6)));
    assert_eq!(next_due(store, at(3), &[other.id, ordered.id]).await, None);
}
