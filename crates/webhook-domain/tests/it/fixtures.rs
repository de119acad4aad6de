//! Fixed values shared by the test modules: the tutorial's example event, a clock reading, ids.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use webhook_domain::{
    CustomHeaders, DeliveryId, Event, EventId, EventType, Timestamp, WalletId, Webhook, WebhookId,
    WebhookScope, WebhookUrl,
};

/// "Now" for tests that need one moment.
pub(crate) const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
/// `NOW` as Unix seconds, computed independently of the `time` crate.
pub(crate) const NOW_UNIX: i64 = 1_772_366_400;

pub(crate) fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

pub(crate) fn event_id() -> EventId {
    "cb8d4e96-30f0-4892-863f-44d49d634211".parse().unwrap()
}

pub(crate) fn delivery_id() -> DeliveryId {
    "9d3c1e52-5a1e-4c8e-9a57-0f1d2b3c4d5e".parse().unwrap()
}

pub(crate) fn webhook_id() -> WebhookId {
    "5f0c8b1a-7e2d-4c3b-8a9f-1e2d3c4b5a69".parse().unwrap()
}

pub(crate) fn other_wallet() -> WalletId {
    "7b6f3a2e-1c4d-4e5f-9a8b-0c1d2e3f4a5b".parse().unwrap()
}

/// The `ts` of the tutorial's example event.
pub(crate) fn tutorial_ts() -> Timestamp {
    Timestamp::from_datetime(datetime!(2023-07-06 12:01:19.769427 UTC))
}

/// The `data` of the tutorial's example `ConnectionUpdated` event, verbatim.
pub(crate) fn tutorial_data() -> Value {
    json!({
        "connectionId": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
        "label": "Connect with Alice",
        "role": "Inviter",
        "state": "InvitationGenerated",
        "invitation": {
            "id": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
            "type": "https://didcomm.org/out-of-band/2.0/invitation",
            "from": "did:peer:2.Ez6LS...jIiXX0",
            "invitationUrl": "https://my.domain.com/path?_oob=eyJpZCI6...bXX19"
        },
        "createdAt": "2023-07-06T12:01:19.760126Z",
        "self": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
        "kind": "Connection"
    })
}

/// The tutorial's example event, from the default wallet.
pub(crate) fn tutorial_event() -> Event {
    Event::new(
        event_id(),
        tutorial_ts(),
        EventType::ConnectionUpdated,
        tutorial_data(),
        WalletId::DEFAULT,
    )
    .unwrap()
}

/// An enabled, unsigned webhook with no custom headers.
pub(crate) fn webhook(scope: WebhookScope) -> Webhook {
    Webhook::new(
        webhook_id(),
        scope,
        WebhookUrl::parse("https://receiver.example.com/hooks").unwrap(),
        CustomHeaders::default(),
        NOW,
    )
}
