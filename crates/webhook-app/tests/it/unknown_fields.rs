//! Fields a body's type does not know. Identus ignores them in its request bodies, so an
//! Identus client that sends one more field than webhookd knows must keep working: the
//! Identus-shaped bodies (registering a webhook, creating a wallet or an IAM entity, binding an
//! API key) accept and ignore them. A misspelling of one of webhookd's own webhook settings is
//! still refused, since ignoring it would silently register another webhook than the one asked
//! for. webhookd's own bodies refuse unknown fields (the rows of `bad_input.rs`).

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::api::{Auth, assert_problem, id_of, request};
use crate::utils::{API_KEY, Backend, Service};

/// Fields neither API has, with a value of each JSON kind, and other spellings of Identus's
/// own fields (ignored by Identus too).
fn extras() -> Value {
    json!({
        "custom_headers": { "X-Other": "x" },
        "URL": "http://elsewhere.example",
        "colour": "red",
        "futureFlag": true,
        "nested": { "a": [1, 2, { "b": null }] },
        "n": 1.5,
    })
}

/// `body` with [`extras`] added.
fn with_extras(body: Value) -> Value {
    let mut body = body;
    let fields = body.as_object_mut().unwrap();
    for (name, value) in extras().as_object().unwrap() {
        fields.insert(name.clone(), value.clone());
    }
    body
}

async fn identus_bodies_ignore_fields_they_do_not_know(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    // Registering a webhook: answered as if the extra fields were absent.
    let created = request(
        &service,
        "POST",
        "/events/webhooks",
        Auth::Wallet(API_KEY),
        Some(with_extras(json!({
            "url": "http://localhost:9095",
            "customHeaders": { "X-Team": "blue" },
        }))),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    assert_eq!(created.json["url"], "http://localhost:9095");
    assert_eq!(created.json["customHeaders"], json!({ "X-Team": "blue" }));
    assert_eq!(created.json["enabled"], true);
    for extra in [
        "custom_headers",
        "URL",
        "colour",
        "futureFlag",
        "nested",
        "n",
        "retryPolicy",
    ] {
        assert!(
            created.json.get(extra).is_none(),
            "{extra}: {}",
            created.json
        );
    }
    let read = request(
        &service,
        "GET",
        &format!("/events/webhooks/{}", id_of(&created)),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    let mut answered = created.json.clone();
    answered.as_object_mut().unwrap().remove("secret");
    assert_eq!(read.json, answered, "stored as answered");

    // Creating a wallet, an entity of it, and binding a key to the entity.
    let wallet = request(
        &service,
        "POST",
        "/wallets",
        Auth::Admin,
        Some(with_extras(json!({ "name": "acme", "seed": "00ff" }))),
    )
    .await;
    assert_eq!(wallet.status, StatusCode::CREATED, "{}", wallet.json);
    assert_eq!(
        wallet.json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["createdAt", "id", "name", "updatedAt"]
    );
    let entity = request(
        &service,
        "POST",
        "/iam/entities",
        Auth::Admin,
        Some(with_extras(
            json!({ "name": "acme app", "walletId": id_of(&wallet) }),
        )),
    )
    .await;
    assert_eq!(entity.status, StatusCode::CREATED, "{}", entity.json);
    assert_eq!(entity.json["walletId"], wallet.json["id"]);
    let key = "acme-key-0123456789";
    let bound = request(
        &service,
        "POST",
        "/iam/apikey-authentication",
        Auth::Admin,
        Some(with_extras(
            json!({ "entityId": id_of(&entity), "apiKey": key }),
        )),
    )
    .await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.json);
    let listed = request(&service, "GET", "/events/webhooks", Auth::Wallet(key), None).await;
    assert_eq!(
        listed.status,
        StatusCode::OK,
        "the bound key opens the wallet"
    );
    assert_eq!(listed.json["contents"], json!([]));

    // Known fields are still validated beside unknown ones.
    let invalid = request(
        &service,
        "POST",
        "/wallets",
        Auth::Admin,
        Some(with_extras(json!({ "name": "" }))),
    )
    .await;
    assert_problem(&invalid, StatusCode::UNPROCESSABLE_ENTITY, "name");
    service.stop().await;
}

/// Spellings of webhookd's own webhook settings that differ only in case, `_` or `-`: refused
/// and named, with the right spelling, rather than silently ignored.
async fn a_misspelt_webhook_setting_is_refused_not_ignored(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let before = service.snapshot().await;
    for (field, right) in [
        ("retry_policy", "retryPolicy"),
        ("RetryPolicy", "retryPolicy"),
        ("retrypolicy", "retryPolicy"),
        ("event-types", "eventTypes"),
        ("rate_limit", "rateLimit"),
        ("Secret", "secret"),
        ("ENABLED", "enabled"),
        ("Ordered", "ordered"),
    ] {
        let mut body = json!({ "url": "http://localhost:9095" });
        body[field] = json!(null);
        let answer = request(
            &service,
            "POST",
            "/events/webhooks",
            Auth::Wallet(API_KEY),
            Some(body),
        )
        .await;
        assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, field);
        let detail = answer.json["detail"].as_str().unwrap();
        assert!(detail.contains(right), "{field}: {detail}");
    }
    assert_eq!(service.snapshot().await, before, "nothing was stored");
    service.stop().await;
}

crate::on_every_backend!(
    identus_bodies_ignore_fields_they_do_not_know,
    a_misspelt_webhook_setting_is_refused_not_ignored,
);
