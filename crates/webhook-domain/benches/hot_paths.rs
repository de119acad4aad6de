//! The per-attempt work of the domain, with no I/O: serialising the envelope, signing it,
//! building the outbound request, and the delivery and retry decisions after an attempt.
//!
//! Payloads: a typical Identus `ConnectionUpdated` event (the tutorial's `data` plus the `thid`
//! and `metaRetries` that Identus always sends: a 683-byte envelope) and an
//! `IssueCredentialRecordUpdated` event whose `data` is 16 KiB (a JWT credential in base64).
//! Byte throughput counts the body that is serialised or signed.
//!
//! Run with `cargo bench -p webhook-domain --bench hot_paths` (add `-- --quick` for a short run).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;
use webhook_domain::{
    AttemptDetail, Backoff, CustomHeaders, Delivery, DeliveryId, Event, EventId, EventType, Jitter,
    OutboundMessage, RetryPolicy, SigningKeys, SigningSecret, Timestamp, WalletId, Webhook,
    WebhookId, WebhookScope, WebhookUrl, sign,
};

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
/// The size of the large event's `data`, serialised.
const LARGE_DATA_BYTES: usize = 16 * 1024;

fn event(event_type: EventType, data: serde_json::Value) -> Event {
    Event::new(
        EventId::from_uuid(Uuid::from_u128(0xcb8d4e96_30f0_4892_863f_44d49d634211)),
        Timestamp::from_datetime(datetime!(2023-07-06 12:01:19.769427 UTC)),
        event_type,
        data,
        WalletId::DEFAULT,
    )
    .unwrap()
}

/// A `ConnectionUpdated` event as the Identus agent sends it after creating an invitation.
fn connection_updated() -> Event {
    event(
        EventType::ConnectionUpdated,
        json!({
            "connectionId": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
            "thid": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
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
            "metaRetries": 5,
            "self": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
            "kind": "Connection"
        }),
    )
}

/// An `IssueCredentialRecordUpdated` event whose `data` serialises to exactly 16 KiB, most of
/// it the issued credential.
fn credential_sent_16k() -> Event {
    let mut data = json!({
        "recordId": "80d612dc-0ded-4ac9-90b4-1b8eabb04545",
        "thid": "80d612dc-0ded-4ac9-90b4-1b8eabb04545",
        "credentialFormat": "JWT",
        "claims": { "emailAddress": "alice@wonderland.com", "givenName": "Alice", "familyName": "Wonderland" },
        "automaticIssuance": true,
        "createdAt": "2023-07-06T12:05:19.760126Z",
        "role": "Issuer",
        "protocolState": "CredentialSent",
        "metaRetries": 5,
        "credential": "",
    });
    let without = serde_json::to_vec(&data).unwrap().len();
    // Base64 needs no escaping, so each character is one byte of the body.
    let credential: String = "eyJhbGciOiJFUzI1NksifQ"
        .chars()
        .cycle()
        .take(LARGE_DATA_BYTES - without)
        .collect();
    data["credential"] = credential.into();
    assert_eq!(serde_json::to_vec(&data).unwrap().len(), LARGE_DATA_BYTES);
    event(EventType::IssueCredentialRecordUpdated, data)
}

fn payloads() -> [(&'static str, Event); 2] {
    [
        ("connection_updated", connection_updated()),
        ("data_16k", credential_sent_16k()),
    ]
}

fn secret(byte: u8) -> SigningSecret {
    SigningSecret::from_bytes(&[byte; 32]).unwrap()
}

/// The exponential policy: 1 s doubling up to one minute, ten attempts.
fn exponential() -> RetryPolicy {
    RetryPolicy::new(
        Backoff::Exponential {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        },
        10,
        None,
    )
    .unwrap()
}

fn envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope/to_json_bytes");
    for (name, event) in payloads() {
        group.throughput(Throughput::Bytes(event.to_json_bytes().len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &event, |b, event| {
            b.iter(|| black_box(event).to_json_bytes());
        });
    }
    group.finish();
}

fn signatures(c: &mut Criterion) {
    let one = secret(1);
    // Rotated an hour before NOW with a day's grace: both secrets sign.
    let rotated = SigningKeys::new(secret(1)).rotate(
        secret(2),
        NOW - time::Duration::hours(1),
        Duration::from_secs(24 * 3600),
    );
    assert_eq!(rotated.active(NOW).count(), 2);
    let msg_id = "cb8d4e96-30f0-4892-863f-44d49d634211";
    let timestamp = NOW.unix_timestamp();

    let mut group = c.benchmark_group("signature");
    for (name, event) in payloads() {
        let body = event.to_json_bytes();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("sign", name), &body, |b, body| {
            b.iter(|| sign(black_box(&one), msg_id, timestamp, black_box(body)));
        });
        group.bench_with_input(
            BenchmarkId::new("header_two_secrets", name),
            &body,
            |b, body| {
                b.iter(|| {
                    black_box(&rotated).signature_header(msg_id, timestamp, black_box(body), NOW)
                });
            },
        );
    }
    group.finish();
}

fn outbound_message(c: &mut Criterion) {
    let mut webhook = Webhook::new(
        WebhookId::from_uuid(Uuid::from_u128(0x5f0c8b1a_7e2d_4c3b_8a9f_1e2d3c4b5a69)),
        WebhookScope::Wallet(WalletId::DEFAULT),
        WebhookUrl::parse("https://receiver.example.com/hooks").unwrap(),
        CustomHeaders::new([
            (
                "Authorization".to_owned(),
                "Bearer 3f1c9a7e5b2d4f6a8c0e1b3d5f7a9c2e".to_owned(),
            ),
            ("X-Team".to_owned(), "blue".to_owned()),
        ])
        .unwrap(),
        NOW,
    );
    webhook.signing_keys = Some(SigningKeys::new(secret(1)));

    let mut group = c.benchmark_group("outbound_message/build");
    for (name, event) in payloads() {
        group.throughput(Throughput::Bytes(event.to_json_bytes().len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &event, |b, event| {
            b.iter(|| OutboundMessage::build(black_box(event), black_box(&webhook), NOW));
        });
    }
    group.finish();
}

fn delivery(c: &mut Criterion) {
    let pending = Delivery::new(
        DeliveryId::from_uuid(Uuid::from_u128(0x9d3c1e52_5a1e_4c8e_9a57_0f1d2b3c4d5e)),
        EventId::from_uuid(Uuid::from_u128(0xcb8d4e96_30f0_4892_863f_44d49d634211)),
        WebhookId::from_uuid(Uuid::from_u128(0x5f0c8b1a_7e2d_4c3b_8a9f_1e2d3c4b5a69)),
        NOW,
    );
    let leased_until = NOW + time::Duration::seconds(60);
    let done = NOW + time::Duration::milliseconds(30);
    let policy = exponential();
    let ok = AttemptDetail::Response {
        status: 200,
        retry_after: None,
    };
    let server_error = AttemptDetail::Response {
        status: 500,
        retry_after: None,
    };

    let mut group = c.benchmark_group("delivery/claim_then_on_attempt");
    for (name, outcome) in [("200", ok), ("500", server_error)] {
        group.bench_with_input(BenchmarkId::from_parameter(name), &outcome, |b, outcome| {
            b.iter(|| {
                black_box(&pending)
                    .claim(NOW, leased_until)
                    .unwrap()
                    .on_attempt(
                        &black_box(outcome).outcome(),
                        &policy,
                        done,
                        Jitter::new(0.5),
                    )
                    .unwrap()
            });
        });
    }
    group.finish();
}

fn retry(c: &mut Criterion) {
    let policy = exponential();
    let mut group = c.benchmark_group("retry/delay_after/exponential");
    // The first retry, and the last one the policy allows, where the cap applies.
    for failed in [1u32, 9] {
        group.bench_with_input(BenchmarkId::from_parameter(failed), &failed, |b, &n| {
            b.iter(|| black_box(&policy).delay_after(black_box(n), Jitter::new(0.5)));
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // The slowest benchmark takes tens of microseconds an iteration: shorter windows than the
    // defaults still collect thousands of iterations each, and the suite stays under a minute.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = envelope, signatures, outbound_message, delivery, retry
}
criterion_main!(hot_paths);
