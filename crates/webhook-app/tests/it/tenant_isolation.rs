//! Tenant isolation, generated from the served OpenAPI document: every wallet-scoped operation
//! (security `apikey`) with an id in its path is called with wallet A's key and wallet B's ids,
//! and must answer exactly as for an id that does not exist (404, the same body), say nothing of
//! B, and change nothing. Publishing into B with A's key is refused (403, or 409 for B's event
//! id). An operation the test cannot fill (an unknown path parameter, a required body it has
//! no example for, a new operation without an id) fails the test, so it stays complete.

use std::collections::{BTreeMap, BTreeSet};

use hyper::StatusCode;
use serde_json::{Value, json};
use webhook_domain::SigningSecret;

use crate::api::{
    Auth, assert_problem, deliveries_of, id_of, new_wallet, poll, publish_for, register_for,
    request,
};
use crate::utils::{API_KEY, Backend, Receiver, Service, connection_data, get_text};

const B_KEY: &str = "wallet-b-key-5d1c";

/// Wallet-scoped operations without an id in their path, and how this test covers each.
const WITHOUT_IDS: &[(&str, &str)] = &[
    (
        "getWebhookNotifications",
        "listed: shows none of B's webhooks",
    ),
    (
        "createWebhookNotification",
        "creates in the caller's wallet only",
    ),
    (
        "searchDeliveries",
        "console.rs: B's search shows none of A's deliveries, even by A's webhook id",
    ),
    ("publishEvent", "checked below: walletId and id of B"),
    ("publishEvents", "checked below: walletId of B"),
];

/// A valid body for each operation that takes one, so that the request gets past validation
/// and reaches the wallet check.
fn body_for(operation_id: &str) -> Option<Value> {
    match operation_id {
        "updateWebhookNotification" => Some(json!({
            "enabled": false,
            "url": "http://127.0.0.1:9/taken-over",
        })),
        "startBulkRedelivery" => Some(json!({ "since": "2020-01-01T00:00:00Z" })),
        "rotateWebhookSecret" => Some(json!({
            "secret": SigningSecret::from_bytes(&[9; 32]).unwrap().expose(),
        })),
        _ => None,
    }
}

/// One wallet-scoped operation of the document.
struct Operation {
    method: String,
    path: String,
    id: String,
    body_required: bool,
}

/// The operations whose only security requirement is a wallet's `apikey`, plus those that
/// also take the admin key (publishing).
fn wallet_operations(document: &Value) -> Vec<(Operation, bool)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let schemes: BTreeSet<&str> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|requirement| requirement.as_object().unwrap().keys())
                .map(String::as_str)
                .collect();
            if !schemes.contains("apikey") {
                continue;
            }
            let only_wallet = schemes.len() == 1;
            found.push((
                Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    id: operation["operationId"].as_str().unwrap().to_owned(),
                    body_required: operation["requestBody"]["required"] == true,
                },
                only_wallet,
            ));
        }
    }
    found
}

/// `path` with each `{name}` replaced by `value(name)`.
fn fill(path: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(&rest[..open]);
        out.push_str(&value(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The answer's JSON without `instance`, which only echoes the path the caller sent.
fn without_instance(json: &Value) -> Value {
    let mut json = json.clone();
    if let Some(object) = json.as_object_mut() {
        object.remove("instance");
    }
    json
}

async fn wallets_cannot_reach_each_other(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    // Wallet B with a webhook, a delivered event, and a finished bulk redelivery job.
    let b_wallet = new_wallet(&service, "b", B_KEY).await;
    let receiver = Receiver::start(&[]).await;
    let b_hook = register_for(&service, B_KEY, json!({ "url": receiver.url() })).await;
    let b_secret = b_hook.json["secret"].as_str().unwrap().to_owned();
    let b_webhook = id_of(&b_hook);
    let b_event = id_of(&publish_for(&service, B_KEY).await);
    let delivered = poll(
        &service,
        &format!("/events/{b_event}/deliveries"),
        Auth::Wallet(B_KEY),
        |j| {
            deliveries_of(j)
                .first()
                .is_some_and(|d| d["state"] == "delivered")
        },
    )
    .await;
    let b_delivery = deliveries_of(&delivered)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = request(
        &service,
        "POST",
        &format!("/events/webhooks/{b_webhook}/redeliver"),
        Auth::Wallet(B_KEY),
        Some(json!({ "since": "2020-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.json);
    let b_job = id_of(&job);
    poll(
        &service,
        &format!("/events/webhooks/{b_webhook}/redeliveries/{b_job}"),
        Auth::Wallet(B_KEY),
        |j| j["state"] == "completed",
    )
    .await;
    let b_ids: BTreeMap<&str, &str> = BTreeMap::from([
        ("webhook_id", b_webhook.as_str()),
        ("event_id", b_event.as_str()),
        ("delivery_id", b_delivery.as_str()),
        ("job_id", b_job.as_str()),
    ]);
    let secrets_of_b = [
        b_wallet.clone(),
        b_webhook.clone(),
        b_event.clone(),
        b_delivery.clone(),
        b_job.clone(),
        B_KEY.to_owned(),
        b_secret.clone(),
        receiver.url(),
    ];
    // `echoed`: what the caller itself sent, which an answer may repeat.
    let says_nothing_of_b_but = |what: &str, json: &Value, echoed: &str| {
        let text = without_instance(json)
            .to_string()
            .replace(echoed, "<echoed>");
        for secret in &secrets_of_b {
            assert!(
                !text.contains(secret),
                "{what} tells of B ({secret}): {text}"
            );
        }
    };
    let says_nothing_of_b = |what: &str, json: &Value| says_nothing_of_b_but(what, json, "\0");
    let received = receiver.count();

    let (status, _, text) = get_text(&format!("http://{}/openapi.json", service.addr)).await;
    assert_eq!(status, StatusCode::OK);
    let document: Value = serde_json::from_str(&text).unwrap();
    let before = service.snapshot().await;

    let mut with_ids = 0;
    for (operation, only_wallet) in wallet_operations(&document) {
        let Operation {
            method,
            path,
            id,
            body_required,
        } = &operation;
        if !path.contains('{') {
            assert!(
                WITHOUT_IDS.iter().any(|(known, _)| known == id),
                "{method} {path} ({id}) is wallet-scoped but this test does not know it: add it"
            );
            continue;
        }
        assert!(
            only_wallet,
            "{id}: an id path that also takes the admin key"
        );
        let body = body_for(id);
        assert!(
            body.is_some() || !body_required,
            "{id} needs a body this test has no example of: add one to body_for"
        );
        let theirs = fill(path, |name| {
            b_ids
                .get(name)
                .unwrap_or_else(|| panic!("{id}: no id of B for the path parameter {name:?}"))
                .to_string()
        });
        let unknown = fill(path, |_| uuid::Uuid::new_v4().to_string());
        let answer = request(
            &service,
            method,
            &theirs,
            Auth::Wallet(API_KEY),
            body.clone(),
        )
        .await;
        assert_problem(&answer, StatusCode::NOT_FOUND, "not found");
        says_nothing_of_b(&format!("{method} {theirs}"), &answer.json);
        // Exactly as for ids that do not exist.
        let nothing = request(&service, method, &unknown, Auth::Wallet(API_KEY), body).await;
        assert_eq!(nothing.status, answer.status, "{method} {path}");
        assert_eq!(
            without_instance(&nothing.json),
            without_instance(&answer.json),
            "{method} {path}: B's resource is told apart from a missing one"
        );
        with_ids += 1;
    }
    assert!(
        with_ids >= 11,
        "only {with_ids} operations with ids were found"
    );

    // Listing shows none of B's webhooks.
    let listed = request(
        &service,
        "GET",
        "/events/webhooks",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(deliveries_of(&listed.json).len(), 0);
    says_nothing_of_b("the listing", &listed.json);

    // Publishing into B with A's key: by walletId (one and batch), and by B's event id.
    let event = |extra: Value| {
        let mut event = json!({ "type": "ConnectionUpdated", "data": connection_data() });
        event
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        event
    };
    let into_b = event(json!({ "walletId": b_wallet }));
    for (path, body) in [
        ("/events", into_b.clone()),
        ("/events/batch", json!({ "events": [into_b] })),
    ] {
        let answer = request(&service, "POST", path, Auth::Wallet(API_KEY), Some(body)).await;
        assert_problem(&answer, StatusCode::FORBIDDEN, "only into its own wallet");
        says_nothing_of_b(path, &answer.json);
    }
    assert_eq!(service.snapshot().await, before, "A changed something");
    assert_eq!(receiver.count(), received, "A made B's webhook receive");

    // Event ids are per wallet: B's id published by A is A's own new event, answered as any
    // first publish (nothing tells that B used it), and B's event and webhook are untouched.
    let same_id = event(json!({ "id": b_event }));
    let answer = request(
        &service,
        "POST",
        "/events",
        Auth::Wallet(API_KEY),
        Some(same_id),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    assert_eq!(answer.json["replayed"], false, "{}", answer.json);
    says_nothing_of_b_but("a publish with B's event id", &answer.json, &b_event);
    let b_seen = request(
        &service,
        "GET",
        &format!("/events/{b_event}"),
        Auth::Wallet(B_KEY),
        None,
    )
    .await;
    assert_eq!(b_seen.status, StatusCode::OK, "{}", b_seen.json);
    assert_eq!(
        b_seen.json["walletId"],
        b_wallet.as_str(),
        "{}",
        b_seen.json
    );
    assert_eq!(receiver.count(), received, "A made B's webhook receive");
    service.stop().await;
}

crate::on_every_backend!(wallets_cannot_reach_each_other);
