//! The rules of a publish that storage only carries out: which targets an event fans out to
//! (one new [`Delivery`] each, pending and due at once), and what a publish answers when it
//! repeats one stored before (a replay of the first result, or a conflict of idempotency
//! keys).
//!
//! No I/O and no randomness: the adapters look earlier publishes up, draw the deliveries' ids
//! and store what these rules make. Storage adds what is its own (a delivery's wallet and its
//! place in an ordered target's sequence) and nothing of the rules.

use thiserror::Error;
use time::OffsetDateTime;

use crate::{Delivery, DeliveryId, Event, EventId, Webhook};

/// The deliveries a first publish of `event` creates: one for each of `candidates` (the live,
/// enabled webhooks of its wallet and the global one) that [wants](Webhook::wants) it, in the
/// candidates' order, each new ([`Delivery::new`]: pending, due at `now`) with the next id of
/// `next_id`.
pub fn fan_out<'a>(
    event: &Event,
    candidates: impl IntoIterator<Item = &'a Webhook>,
    now: OffsetDateTime,
    mut next_id: impl FnMut() -> DeliveryId,
) -> Vec<Delivery> {
    candidates
        .into_iter()
        .filter(|webhook| webhook.wants(event))
        .map(|webhook| Delivery::new(next_id(), event.id(), webhook.id, now))
        .collect()
}

/// How a publish was found to repeat one stored before. Idempotency keys and event ids are
/// unique per wallet, and the key is looked up first: a publish whose key is known repeats the
/// publish under that key, whatever its event id; one whose key is new (or that has none)
/// repeats the publish of its event id, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat<'a> {
    /// Under the same idempotency key, sent with a request whose fingerprint is `fingerprint`.
    SameKey { fingerprint: &'a str },
    /// With the same event id, under no known idempotency key.
    SameEventId,
}

/// A publish stored before, as a repeat of it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlierPublish<'a> {
    /// The event it stored.
    pub event_id: EventId,
    /// The fingerprint of the request it came with, when it came with an idempotency key.
    pub fingerprint: Option<&'a str>,
    /// The deliveries it created.
    pub deliveries: u32,
}

/// What a publish that repeats an earlier one answers: the earlier one's result. It stores
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub event_id: EventId,
    pub deliveries: u32,
}

/// An idempotency key sent again with another request than the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "the idempotency key was used before with a different request; send a new key for a new \
     request, or the same request to get the first answer again"
)]
pub struct IdempotencyConflict;

impl EarlierPublish<'_> {
    /// What a publish that repeats this one as `repeat` says answers: a replay of this one's
    /// result, unless it came under the same key with another request. The fingerprint
    /// matters only when the key matched: a known event id published again under a new key
    /// is a plain replay.
    ///
    /// # Errors
    /// [`IdempotencyConflict`] when the key is this one's and the request's fingerprint is not.
    pub fn replay(&self, repeat: Repeat<'_>) -> Result<Replay, IdempotencyConflict> {
        if let Repeat::SameKey { fingerprint } = repeat
            && self.fingerprint != Some(fingerprint)
        {
            return Err(IdempotencyConflict);
        }
        Ok(Replay {
            event_id: self.event_id,
            deliveries: self.deliveries,
        })
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;
    use crate::{
        CustomHeaders, DeliveryState, EventType, EventTypeFilter, Timestamp, WalletId, WebhookId,
        WebhookScope, WebhookUrl,
    };

    const NOW: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn earlier(fingerprint: Option<&str>) -> EarlierPublish<'_> {
        EarlierPublish {
            event_id: EventId::from_uuid(Uuid::from_u128(7)),
            fingerprint,
            deliveries: 3,
        }
    }

    #[test]
    fn a_repeat_replays_unless_its_key_came_with_another_request() {
        let replay = Ok(Replay {
            event_id: EventId::from_uuid(Uuid::from_u128(7)),
            deliveries: 3,
        });
        let check = |earlier: EarlierPublish<'_>, repeat, expected: &Result<_, _>| {
            assert_eq!(&earlier.replay(repeat), expected, "{earlier:?} {repeat:?}");
        };
        let same_key = |fingerprint| Repeat::SameKey { fingerprint };
        // Rows: (earlier fingerprint, how the repeat was found, answer).
        check(earlier(Some("f1")), same_key("f1"), &replay);
        check(
            earlier(Some("f1")),
            same_key("f2"),
            &Err(IdempotencyConflict),
        );
        // The key's first publish had no fingerprint: no request can match it.
        check(earlier(None), same_key("f1"), &Err(IdempotencyConflict));
        // By event id the fingerprint is not compared: a new key, or none, for a known id.
        check(earlier(Some("f1")), Repeat::SameEventId, &replay);
        check(earlier(None), Repeat::SameEventId, &replay);
    }

    #[test]
    fn the_conflict_says_what_was_wrong_and_what_would_be_right() {
        let text = IdempotencyConflict.to_string();
        assert!(text.starts_with("the idempotency key was used before with a different request"));
        assert!(text.contains("send a new key"), "{text}");
    }

    fn webhook(n: u128, types: Option<&[&str]>) -> Webhook {
        let mut webhook = Webhook::new(
            WebhookId::from_uuid(Uuid::from_u128(n)),
            WebhookScope::Global,
            WebhookUrl::parse("https://example.com/hook").unwrap(),
            CustomHeaders::default(),
            NOW,
        );
        webhook.event_types = types
            .map(|types| EventTypeFilter::new(types.iter().map(|t| EventType::parse(t).unwrap())));
        webhook
    }

    #[test]
    fn a_publish_fans_out_one_new_delivery_to_each_target_that_wants_the_event() {
        let event = Event::new(
            EventId::from_uuid(Uuid::from_u128(1)),
            Timestamp::from_datetime(NOW),
            EventType::parse("order.created").unwrap(),
            serde_json::json!({}),
            WalletId::DEFAULT,
        )
        .unwrap();
        let candidates = [
            webhook(10, None),
            webhook(11, Some(&["order.paid"])),
            webhook(12, Some(&["order.created"])),
        ];
        let mut ids = (100..).map(|n| DeliveryId::from_uuid(Uuid::from_u128(n)));
        let deliveries = fan_out(&event, &candidates, NOW, || ids.next().unwrap());
        assert_eq!(
            deliveries,
            vec![
                Delivery::new(
                    DeliveryId::from_uuid(Uuid::from_u128(100)),
                    event.id(),
                    candidates[0].id,
                    NOW
                ),
                Delivery::new(
                    DeliveryId::from_uuid(Uuid::from_u128(101)),
                    event.id(),
                    candidates[2].id,
                    NOW
                ),
            ]
        );
        for delivery in &deliveries {
            assert_eq!(delivery.state(), DeliveryState::Pending { due: NOW });
            assert_eq!((delivery.attempts(), delivery.attempts_made()), (0, 0));
        }
        assert!(fan_out(&event, &candidates[1..2], NOW, || unreachable!()).is_empty());
    }
}
