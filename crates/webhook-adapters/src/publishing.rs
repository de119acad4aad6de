//! What both SQL adapters share to publish events, one or a batch per transaction: the
//! candidate targets of each wallet, read once, and the deliveries to insert together at the
//! end. No I/O here: each adapter reads and writes with its own connection type.

use std::collections::{BTreeMap, HashMap, HashSet};

use time::OffsetDateTime;
use webhook_domain::{Delivery, DeliveryId, Event, WalletId, Webhook, WebhookId, fan_out};
use webhook_ports::{PublishItem, Published};

use crate::rows::{
    AdapterError, EventSummary, NewDelivery, NewEvent, WebhookRow, replay, row_to_webhook,
};

/// An event stored before, as a bulk lookup reads it: its summary and its idempotency key.
pub(crate) type EarlierEvent = (EventSummary, Option<String>);

/// What the events of one publish transaction (one event, or a batch) share: each wallet's
/// candidate targets, read once per wallet, and the deliveries to insert together at the end.
#[derive(Default)]
pub(crate) struct PublishScope {
    /// The enabled, live webhooks of each wallet seen so far, with the global one.
    targets: HashMap<WalletId, Vec<Webhook>>,
    /// The ordered ones among them.
    ordered: HashSet<WebhookId>,
    deliveries: Vec<NewDelivery>,
    #[cfg(feature = "testing")]
    faults: Option<std::sync::Arc<crate::testing::Faults>>,
}

impl std::fmt::Debug for PublishScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishScope")
            .field("wallets", &self.targets.len())
            .field("deliveries", &self.deliveries.len())
            .finish_non_exhaustive()
    }
}

impl PublishScope {
    /// A scope whose publishes reach the store's armed faults.
    #[cfg(feature = "testing")]
    pub(crate) fn with_faults(faults: std::sync::Arc<crate::testing::Faults>) -> Self {
        Self {
            faults: Some(faults),
            ..Self::default()
        }
    }

    #[cfg(feature = "testing")]
    pub(crate) fn faults(&self) -> Option<&crate::testing::Faults> {
        self.faults.as_deref()
    }

    /// Whether the candidate targets of `wallet` still have to be read.
    pub(crate) fn needs_targets(&self, wallet: WalletId) -> bool {
        !self.targets.contains_key(&wallet)
    }

    /// Keeps the candidate targets of `wallet`, as the `publish_targets` query reads them.
    pub(crate) fn add_targets(
        &mut self,
        wallet: WalletId,
        rows: Vec<WebhookRow>,
    ) -> Result<(), AdapterError> {
        let webhooks: Vec<Webhook> = rows
            .into_iter()
            .map(row_to_webhook)
            .collect::<Result<_, _>>()?;
        self.ordered
            .extend(webhooks.iter().filter(|w| w.ordered).map(|w| w.id));
        self.targets.insert(wallet, webhooks);
        Ok(())
    }

    /// The deliveries a first publish of `event` creates, by the domain's rule
    /// ([`fan_out`]) over the targets read for its wallet, each with a new random id. Queue
    /// them with [`Self::queue_deliveries`] once the event is stored.
    pub(crate) fn fan_out(&self, event: &Event, now: OffsetDateTime) -> Vec<Delivery> {
        let candidates = self.targets.get(&event.wallet_id()).into_iter().flatten();
        fan_out(event, candidates, now, || {
            DeliveryId::from_uuid(uuid::Uuid::new_v4())
        })
    }

    /// Queues `deliveries` of `event`, stored at `now`, for the inserts at the end. Call after
    /// the event is stored: the deliveries refer to it.
    pub(crate) fn queue_deliveries(
        &mut self,
        event: &Event,
        deliveries: &[Delivery],
        now: OffsetDateTime,
    ) {
        self.deliveries.extend(
            deliveries
                .iter()
                .map(|delivery| NewDelivery::of(delivery, event.wallet_id(), now)),
        );
    }

    /// Fails as an armed fault says, after the event was written and before its deliveries.
    pub(crate) fn fault_after_event(&self) -> Result<(), AdapterError> {
        #[cfg(feature = "testing")]
        if self
            .faults
            .as_ref()
            .is_some_and(|f| f.take_publish_after_event())
        {
            return Err(AdapterError::Injected);
        }
        Ok(())
    }

    /// Plans a batch in memory, as [`publish_in`](crate::postgres) would publish its items one
    /// after the other: each item's answer, and the events to store (their deliveries are
    /// queued). An item repeating an `earlier` event, or an earlier item of the batch, by
    /// idempotency key first and then by id, gets the replay of the first one. The targets of
    /// every wallet in `items` must have been added.
    ///
    /// # Errors
    /// `Conflict` as [`replay`] decides.
    pub(crate) fn plan(
        &mut self,
        items: &[PublishItem],
        earlier: Vec<EarlierEvent>,
        now: OffsetDateTime,
    ) -> Result<(Vec<Published>, Vec<NewEvent>), AdapterError> {
        // Both keyed by wallet: event ids and idempotency keys are unique per wallet.
        let mut by_id: HashMap<(String, String), EventSummary> = HashMap::new();
        let mut by_key: HashMap<(String, String), EventSummary> = HashMap::new();
        for (summary, key) in earlier {
            if let Some(key) = key {
                by_key.insert((summary.1.clone(), key), summary.clone());
            }
            by_id.insert((summary.1.clone(), summary.0.clone()), summary);
        }
        let mut answers = Vec::with_capacity(items.len());
        let mut rows = Vec::new();
        for PublishItem { event, idempotency } in items {
            let (id, wallet) = (event.id().to_string(), event.wallet_id().to_string());
            let key = idempotency
                .as_ref()
                .map(|i| (wallet.clone(), i.key.clone()));
            let id = (wallet.clone(), id);
            let found = match key.as_ref().and_then(|k| by_key.get(k)) {
                Some(first) => Some((true, first.clone())),
                None => by_id.get(&id).map(|first| (false, first.clone())),
            };
            if let Some((found_by_key, first)) = found {
                answers.push(replay(idempotency.as_ref(), found_by_key, first)?);
                continue;
            }
            let deliveries = self.fan_out(event, now);
            let count = i32::try_from(deliveries.len()).unwrap_or(i32::MAX);
            let summary = (
                id.1.clone(),
                wallet,
                idempotency.as_ref().map(|i| i.fingerprint.clone()),
                count,
            );
            if let Some(key) = key {
                by_key.insert(key, summary.clone());
            }
            by_id.insert(id, summary);
            rows.push(NewEvent::of(
                event,
                idempotency.as_ref(),
                deliveries.len(),
                now,
            ));
            self.queue_deliveries(event, &deliveries, now);
            answers.push(first_publish(event, deliveries.len()));
        }
        Ok((answers, rows))
    }

    /// The ordered targets of the deliveries queued so far, in id order (the order in which a
    /// publish locks them, so that two publishes never wait for each other in a circle), each
    /// with how many deliveries it gets.
    pub(crate) fn ordered_counts(&self) -> Vec<(String, i64)> {
        let ordered: HashSet<String> = self.ordered.iter().map(ToString::to_string).collect();
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for delivery in &self.deliveries {
            if ordered.contains(delivery.webhook_id()) {
                *counts.entry(delivery.webhook_id()).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(id, n)| (id.to_owned(), n))
            .collect()
    }

    /// Numbers the queued deliveries of the ordered target `webhook` from `first` on, in the
    /// order they were queued: publish order, and item order within a batch. `first` comes
    /// from the target's sequence, drawn while the publish holds the target's row lock, so the
    /// numbers of two publishes follow the order in which they commit.
    pub(crate) fn number(&mut self, webhook: &str, first: i64) {
        let queued = self
            .deliveries
            .iter_mut()
            .filter(|d| d.webhook_id() == webhook);
        for (seq, delivery) in (first..).zip(queued) {
            delivery.number(seq);
        }
    }

    /// The deliveries queued so far, to insert.
    pub(crate) fn deliveries(&self) -> &[NewDelivery] {
        &self.deliveries
    }
}

/// The result of a first publish that created `count` deliveries.
pub(crate) fn first_publish(event: &Event, count: usize) -> Published {
    Published {
        event_id: event.id(),
        deliveries: u32::try_from(count).unwrap_or(u32::MAX),
        replayed: false,
    }
}
