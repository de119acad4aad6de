//! The whole REST API over real HTTP against the real server, on every backend: the
//! tutorial's flow, every endpoint's success and error paths, tenant isolation across two
//! wallets, and the Identus environment variables across restarts.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};
use webhook_domain::{SigningSecret, WalletId};

use crate::utils::{
    ADMIN_KEY, API_KEY, Answer, Backend, Receiver, Service, call, connection_data, register,
};

/// Expands `$name(backend)` into one test per backend.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::utils::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::utils::Backend::Postgres).await;
                }
            )+
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::utils::Backend::Mysql).await;
                }
            )+
        }
    };
}

on_every_backend!(
    the_tutorial_flow_works_as_written,
    the_admin_manages_wallets_and_keys,
    admin_calls_need_the_admin_key,
    a_webhook_can_be_read_changed_and_deleted,
    the_webhook_limit_is_enforced,
    a_rotated_secret_keeps_signing_during_its_grace,
    a_test_send_reports_the_answer,
    a_batch_is_stored_whole_or_not_at_all,
    the_admin_publishes_into_any_wallet,
    delivery_logs_show_every_attempt_and_redeliver,
    a_redelivery_numbers_its_attempts_after_the_earlier_ones,
    delivery_logs_show_the_most_recent_attempts_and_how_many_in_all,
    a_bulk_redelivery_requeues_a_window_with_progress,
    wallets_never_see_each_other,
    the_identus_variables_behave_across_restarts,
    generated_keys_are_shown_once_and_keep_working,
);

/// Who a request authenticates as.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Wallet(&'a str),
    Admin,
}

/// Sends `body` (JSON when given) to `path` under the base path.
pub async fn request(
    service: &Service,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    match auth {
        Auth::None => {}
        Auth::Wallet(key) => headers.push(("apikey", key)),
        Auth::Admin => headers.push(("x-admin-api-key", ADMIN_KEY)),
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    call(method, &service.url(path), &headers, &body).await
}

pub fn assert_problem(answer: &Answer, status: StatusCode, detail_has: &str) {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.json["status"], status.as_u16());
    assert!(answer.json["type"].is_string() && answer.json["title"].is_string());
    assert!(
        answer.json["instance"]
            .as_str()
            .is_some_and(|i| i.starts_with('/')),
        "a problem names its instance: {}",
        answer.json
    );
    let detail = answer.json["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_has),
        "{detail:?} should mention {detail_has:?}"
    );
}

pub fn id_of(answer: &Answer) -> String {
    answer.json["id"].as_str().unwrap().to_owned()
}

/// Creates a wallet with a key of its own; returns its id.
pub async fn new_wallet(service: &Service, name: &str, key: &str) -> String {
    let wallet = request(
        service,
        "POST",
        "/wallets",
        Auth::Admin,
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(wallet.status, StatusCode::CREATED, "{}", wallet.json);
    let entity = request(
        service,
        "POST",
        "/iam/entities",
        Auth::Admin,
        Some(json!({ "name": format!("{name} app"), "walletId": id_of(&wallet) })),
    )
    .await;
    assert_eq!(entity.status, StatusCode::CREATED, "{}", entity.json);
    let bound = request(
        service,
        "POST",
        "/iam/apikey-authentication",
        Auth::Admin,
        Some(json!({ "entityId": id_of(&entity), "apiKey": key })),
    )
    .await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.json);
    id_of(&wallet)
}

pub async fn register_for(service: &Service, key: &str, body: Value) -> Answer {
    let created = request(
        service,
        "POST",
        "/events/webhooks",
        Auth::Wallet(key),
        Some(body),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    created
}

pub async fn publish_for(service: &Service, key: &str) -> Answer {
    let published = request(
        service,
        "POST",
        "/events",
        Auth::Wallet(key),
        Some(json!({ "type": "ConnectionUpdated", "data": connection_data() })),
    )
    .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.json);
    published
}

/// Polls `path` (as `auth`) until `done` holds for its JSON, up to 15 s.
pub async fn poll(
    service: &Service,
    path: &str,
    auth: Auth<'_>,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = request(service, "GET", path, auth, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        if done(&answer.json) {
            return answer.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} did not reach the expected state: {}",
            answer.json
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_tutorial_flow_works_as_written(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    // The tutorial's curl, header for header.
    let created = call(
        "POST",
        &service.url("/events/webhooks"),
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("apiKey", API_KEY),
        ],
        &format!("{{\n    \"url\": \"{}\"\n  }}", receiver.url()),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    for field in ["id", "url", "customHeaders", "createdAt"] {
        assert!(
            created.json.get(field).is_some(),
            "{field} in {}",
            created.json
        );
    }
    assert_eq!(created.json["customHeaders"], json!({}));

    let published = publish_for(&service, API_KEY).await;
    let got = receiver.wait_for(1).await;
    let envelope: Value = serde_json::from_slice(&got[0].body).unwrap();
    let keys: Vec<&str> = envelope
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["data", "id", "ts", "type", "walletId"]);
    assert_eq!(envelope["id"], published.json["id"]);
    assert_eq!(envelope["type"], "ConnectionUpdated");
    assert_eq!(envelope["walletId"], WalletId::DEFAULT.to_string());
    let stored = request(
        &service,
        "GET",
        &format!("/events/{}", envelope["id"].as_str().unwrap()),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(
        stored.json, envelope,
        "the event reads back as it was delivered"
    );

    let listed = request(
        &service,
        "GET",
        "/events/webhooks",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(listed.json["kind"], "WebhookNotificationPage");
    assert_eq!(listed.json["contents"][0]["id"], created.json["id"]);
    assert_eq!(listed.json["pageOf"], "/cloud-agent/events/webhooks");
    let described = call(
        "GET",
        &format!("http://{}/openapi.json", service.addr),
        &[],
        "",
    )
    .await;
    assert_eq!(described.status, StatusCode::OK);
    assert_eq!(described.json["openapi"], "3.1.0");
    assert_eq!(described.json["servers"][0]["url"], "/cloud-agent");
    assert!(described.json["paths"]["/events/webhooks"]["post"].is_object());
    assert_eq!(
        listed.json["self"],
        "/cloud-agent/events/webhooks?offset=0&limit=100"
    );
    service.stop().await;
}

async fn the_admin_manages_wallets_and_keys(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let chosen = uuid::Uuid::new_v4().to_string();
    let created = request(
        &service,
        "POST",
        "/wallets",
        Auth::Admin,
        Some(json!({ "name": "acme", "id": chosen, "seed": "00ff" })),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert_eq!(created.json["id"], chosen);
    assert_eq!(created.json["name"], "acme");
    assert!(created.json["createdAt"].is_string() && created.json["updatedAt"].is_string());
    let again = request(
        &service,
        "POST",
        "/wallets",
        Auth::Admin,
        Some(json!({ "name": "acme", "id": chosen })),
    )
    .await;
    assert_problem(&again, StatusCode::CONFLICT, "");

    let fetched = request(
        &service,
        "GET",
        &format!("/wallets/{chosen}"),
        Auth::Admin,
        None,
    )
    .await;
    assert_eq!(fetched.json["name"], "acme");
    let unknown = uuid::Uuid::new_v4();
    assert_problem(
        &request(
            &service,
            "GET",
            &format!("/wallets/{unknown}"),
            Auth::Admin,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "wallet",
    );
    assert_problem(
        &request(&service, "GET", "/wallets/not-a-uuid", Auth::Admin, None).await,
        StatusCode::BAD_REQUEST,
        "wallet_id",
    );

    // The default wallet and ours, one per page.
    let first = request(&service, "GET", "/wallets?limit=1", Auth::Admin, None).await;
    assert_eq!(first.json["kind"], "WalletDetailPage");
    assert_eq!(first.json["contents"].as_array().unwrap().len(), 1);
    let next = first.json["next"].as_str().unwrap().to_owned();
    let second = call(
        "GET",
        &format!("http://{}{next}", service.addr),
        &[("x-admin-api-key", ADMIN_KEY)],
        "",
    )
    .await;
    assert_eq!(second.json["contents"].as_array().unwrap().len(), 1);
    assert!(second.json["previous"].is_string());
    let ids: Vec<&Value> = [&first, &second]
        .iter()
        .map(|a| &a.json["contents"][0]["id"])
        .collect();
    assert!(ids.contains(&&json!(chosen)));

    // The Identus way: an entity of the wallet, then a key bound to the entity.
    let entity = request(
        &service,
        "POST",
        "/iam/entities",
        Auth::Admin,
        Some(json!({ "name": "acme app", "walletId": chosen })),
    )
    .await;
    assert_eq!(entity.status, StatusCode::CREATED, "{}", entity.json);
    assert_eq!(entity.json["kind"], "Entity");
    assert_eq!(entity.json["walletId"], chosen);
    let entity_id = id_of(&entity);
    let read = request(
        &service,
        "GET",
        &format!("/iam/entities/{entity_id}"),
        Auth::Admin,
        None,
    )
    .await;
    assert_eq!(read.json["name"], "acme app");
    // Identus documents no 409 here; webhookd answers one to a duplicate id, documented.
    assert_problem(
        &request(
            &service,
            "POST",
            "/iam/entities",
            Auth::Admin,
            Some(json!({ "name": "again", "walletId": chosen, "id": entity_id })),
        )
        .await,
        StatusCode::CONFLICT,
        "",
    );
    assert_problem(
        &request(
            &service,
            "POST",
            "/iam/entities",
            Auth::Admin,
            Some(json!({ "name": "ghost", "walletId": unknown })),
        )
        .await,
        StatusCode::NOT_FOUND,
        "wallet",
    );
    let bind = |key: &'static str, entity: String| {
        let service = &service;
        async move {
            request(
                service,
                "POST",
                "/iam/apikey-authentication",
                Auth::Admin,
                Some(json!({ "entityId": entity, "apiKey": key })),
            )
            .await
        }
    };
    assert_eq!(
        bind("acme-key", entity_id.clone()).await.status,
        StatusCode::CREATED
    );
    assert_problem(
        &bind("acme-key", entity_id.clone()).await,
        StatusCode::CONFLICT,
        "already bound",
    );
    assert_problem(
        &bind("other-key", unknown.to_string()).await,
        StatusCode::NOT_FOUND,
        "entity",
    );
    register_for(
        &service,
        "acme-key",
        json!({ "url": "http://localhost:9095" }),
    )
    .await;
    let theirs = request(
        &service,
        "GET",
        "/events/webhooks",
        Auth::Wallet("acme-key"),
        None,
    )
    .await;
    let ours = request(
        &service,
        "GET",
        "/events/webhooks",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(theirs.json["contents"].as_array().unwrap().len(), 1);
    assert_eq!(ours.json["contents"].as_array().unwrap().len(), 0);

    // The simpler way: the service generates the key.
    let generated = request(
        &service,
        "POST",
        &format!("/wallets/{chosen}/apikeys"),
        Auth::Admin,
        None,
    )
    .await;
    assert_eq!(generated.status, StatusCode::CREATED, "{}", generated.json);
    let key = generated.json["apiKey"].as_str().unwrap().to_owned();
    let seen = request(
        &service,
        "GET",
        "/events/webhooks",
        Auth::Wallet(&key),
        None,
    )
    .await;
    assert_eq!(seen.json["contents"].as_array().unwrap().len(), 1);
    assert_problem(
        &request(
            &service,
            "POST",
            &format!("/wallets/{unknown}/apikeys"),
            Auth::Admin,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "wallet",
    );
    service.stop().await;
}

async fn admin_calls_need_the_admin_key(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let body = Some(json!({ "name": "x" }));
    assert_problem(
        &request(&service, "POST", "/wallets", Auth::None, body.clone()).await,
        StatusCode::UNAUTHORIZED,
        "x-admin-api-key",
    );
    assert_problem(
        &request(
            &service,
            "POST",
            "/wallets",
            Auth::Wallet(API_KEY),
            body.clone(),
        )
        .await,
        StatusCode::FORBIDDEN,
        "admin key",
    );
    let wrong = call(
        "POST",
        &service.url("/wallets"),
        &[
            ("content-type", "application/json"),
            ("x-admin-api-key", "not-the-admin-key"),
        ],
        r#"{"name": "x"}"#,
    )
    .await;
    assert_problem(&wrong, StatusCode::UNAUTHORIZED, "x-admin-api-key");
    // The admin key opens no wallet.
    assert_problem(
        &request(&service, "GET", "/events/webhooks", Auth::Admin, None).await,
        StatusCode::UNAUTHORIZED,
        "apikey",
    );
    let listed = request(&service, "GET", "/wallets", Auth::Admin, None).await;
    assert_eq!(listed.json["contents"].as_array().unwrap().len(), 1);
    service.stop().await;
}

async fn a_webhook_can_be_read_changed_and_deleted(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let created = register_for(
        &service,
        API_KEY,
        json!({
            "url": "http://localhost:9095/a",
            "customHeaders": { "X-Team": "blue" },
            "eventTypes": ["ConnectionUpdated"],
            "retryPolicy": { "kind": "fixed", "intervalMs": 1000, "maxAttempts": 4 },
            "rateLimit": 50,
            "ordered": true,
        }),
    )
    .await;
    assert!(
        created.json["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let path = format!("/events/webhooks/{}", id_of(&created));
    let read = request(&service, "GET", &path, Auth::Wallet(API_KEY), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(
        read.json.get("secret").is_none(),
        "the secret is shown only once"
    );
    assert_eq!(read.json["eventTypes"], json!(["ConnectionUpdated"]));
    assert_eq!(read.json["rateLimit"], 50);
    assert_eq!(read.json["ordered"], true);

    let patched = request(
        &service,
        "PATCH",
        &path,
        Auth::Wallet(API_KEY),
        Some(json!({ "url": "http://localhost:9095/b", "enabled": false, "rateLimit": null, "eventTypes": null })),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    let read = request(&service, "GET", &path, Auth::Wallet(API_KEY), None).await;
    assert_eq!(read.json["url"], "http://localhost:9095/b");
    assert_eq!(read.json["enabled"], false);
    assert!(read.json.get("rateLimit").is_none());
    assert!(read.json.get("eventTypes").is_none());
    assert_eq!(read.json["customHeaders"], json!({ "X-Team": "blue" }));
    assert_eq!(read.json["retryPolicy"]["maxAttempts"], 4);

    for (body, detail) in [
        (json!({ "secret": "whsec_x" }), "secret"),
        (json!({ "url": "gopher://x" }), "scheme"),
        (json!({ "eventTypes": ["no spaces allowed"] }), "eventTypes"),
        (json!({ "rateLimit": 0 }), "rateLimit"),
    ] {
        let refused = request(&service, "PATCH", &path, Auth::Wallet(API_KEY), Some(body)).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, detail);
    }
    let unchanged = request(&service, "GET", &path, Auth::Wallet(API_KEY), None).await;
    assert_eq!(unchanged.json, read.json);

    let deleted = request(&service, "DELETE", &path, Auth::Wallet(API_KEY), None).await;
    assert_eq!(deleted.status, StatusCode::OK);
    for method in ["GET", "DELETE"] {
        assert_problem(
            &request(&service, method, &path, Auth::Wallet(API_KEY), None).await,
            StatusCode::NOT_FOUND,
            "webhook",
        );
    }
    service.stop().await;
}

async fn the_webhook_limit_is_enforced(backend: Backend) {
    let Some(mut service) = Service::start_with(backend, |s| s.max_webhooks_per_wallet = 2).await
    else {
        return;
    };
    for n in 0..2 {
        register_for(
            &service,
            API_KEY,
            json!({ "url": format!("http://localhost:9095/{n}") }),
        )
        .await;
    }
    let third = request(
        &service,
        "POST",
        "/events/webhooks",
        Auth::Wallet(API_KEY),
        Some(json!({ "url": "http://localhost:9095/2" })),
    )
    .await;
    assert_problem(&third, StatusCode::UNPROCESSABLE_ENTITY, "2 webhooks");
    service.stop().await;
}

async fn a_rotated_secret_keeps_signing_during_its_grace(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    let registered = register(&service, &receiver.url()).await;
    let rotated = request(
        &service,
        "POST",
        &format!("/events/webhooks/{}/secret/rotate", registered.id),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.json);
    let new_secret = rotated.json["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, registered.secret);
    assert!(rotated.json["previousSecretExpiresAt"].is_string());

    publish_for(&service, API_KEY).await;
    let got = receiver.wait_for(1).await;
    let signatures = got[0].headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    crate::utils::assert_signed(&got[0], &registered.secret);
    crate::utils::assert_signed(&got[0], &new_secret);

    // With no grace, the old secret stops at once; a chosen secret is taken as given.
    let chosen = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let again = request(
        &service,
        "POST",
        &format!("/events/webhooks/{}/secret/rotate", registered.id),
        Auth::Wallet(API_KEY),
        Some(json!({ "secret": chosen, "graceSeconds": 0 })),
    )
    .await;
    assert_eq!(again.json["secret"], chosen);
    publish_for(&service, API_KEY).await;
    let got = receiver.wait_for(2).await;
    let signatures = got[1].headers["webhook-signature"].to_str().unwrap();
    assert_eq!(
        signatures.split(' ').count(),
        2,
        "the first rotation's grace still runs"
    );
    crate::utils::assert_signed(&got[1], chosen);
    assert!(SigningSecret::parse(chosen).is_ok());
    let refused = request(
        &service,
        "POST",
        &format!("/events/webhooks/{}/secret/rotate", registered.id),
        Auth::Wallet(API_KEY),
        Some(json!({ "graceSeconds": 99_999_999 })),
    )
    .await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "graceSeconds");
    service.stop().await;
}

async fn a_test_send_reports_the_answer(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[503]).await;
    let registered = register(&service, &receiver.url()).await;
    let path = format!("/events/webhooks/{}/test", registered.id);
    let failed = request(&service, "POST", &path, Auth::Wallet(API_KEY), None).await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.json);
    assert_eq!(failed.json["delivered"], false);
    assert_eq!(failed.json["statusCode"], 503);
    let passed = request(&service, "POST", &path, Auth::Wallet(API_KEY), None).await;
    assert_eq!(passed.json["delivered"], true);
    assert_eq!(passed.json["statusCode"], 200);
    let got = receiver.wait_for(2).await;
    let envelope: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(envelope["type"], "WebhookTest");
    assert_eq!(envelope["id"], passed.json["eventId"]);
    crate::utils::assert_signed(&got[1], &registered.secret);
    // Nothing is stored: the webhook has no deliveries.
    let deliveries = request(
        &service,
        "GET",
        &format!("/events/webhooks/{}/deliveries", registered.id),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(deliveries.json["contents"], json!([]));
    service.stop().await;
}

async fn a_batch_is_stored_whole_or_not_at_all(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    register(&service, &receiver.url()).await;
    let event = |n: u32| json!({ "type": "Custom.Thing", "data": { "n": n } });
    let refused = request(
        &service,
        "POST",
        "/events/batch",
        Auth::Wallet(API_KEY),
        Some(json!({ "events": [event(1), { "type": "bad type", "data": {} }] })),
    )
    .await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "events[1]");
    let empty = request(
        &service,
        "POST",
        "/events/batch",
        Auth::Wallet(API_KEY),
        Some(json!({ "events": [] })),
    )
    .await;
    assert_problem(&empty, StatusCode::UNPROCESSABLE_ENTITY, "events");

    let fixed_id = uuid::Uuid::new_v4().to_string();
    let accepted = request(
        &service,
        "POST",
        "/events/batch",
        Auth::Wallet(API_KEY),
        Some(json!({ "events": [
            event(1),
            { "type": "Custom.Thing", "data": { "n": 2 }, "id": fixed_id },
            { "type": "Custom.Thing", "data": { "n": 3 }, "idempotencyKey": "k-3" },
        ] })),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.json);
    let results = accepted.json["events"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["id"], fixed_id);
    assert!(
        results
            .iter()
            .all(|r| r["deliveries"] == 1 && r["replayed"] == false)
    );
    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3);

    // Repeating the id and the key replays them and stores nothing new.
    let repeated = request(
        &service,
        "POST",
        "/events/batch",
        Auth::Wallet(API_KEY),
        Some(json!({ "events": [
            { "type": "Custom.Thing", "data": { "n": 2 }, "id": fixed_id },
            { "type": "Custom.Thing", "data": { "n": 3 }, "idempotencyKey": "k-3" },
        ] })),
    )
    .await;
    assert_eq!(repeated.status, StatusCode::ACCEPTED, "{}", repeated.json);
    assert!(
        repeated.json["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["replayed"] == true)
    );
    // A key reused with another body makes the whole batch a conflict.
    let conflict = request(
        &service,
        "POST",
        "/events/batch",
        Auth::Wallet(API_KEY),
        Some(json!({ "events": [
            event(4),
            { "type": "Custom.Thing", "data": { "n": 99 }, "idempotencyKey": "k-3" },
        ] })),
    )
    .await;
    assert_problem(&conflict, StatusCode::CONFLICT, "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 3, "the conflicting batch stored nothing");
    service.stop().await;
}

async fn the_admin_publishes_into_any_wallet(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let wallet_b = new_wallet(&service, "b", "b-key").await;
    let receiver = Receiver::start(&[]).await;
    register_for(&service, "b-key", json!({ "url": receiver.url() })).await;
    let body = |wallet: Value| json!({ "type": "Custom.Thing", "data": {}, "walletId": wallet });
    let published = request(
        &service,
        "POST",
        "/events",
        Auth::Admin,
        Some(body(json!(wallet_b))),
    )
    .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.json);
    let got = receiver.wait_for(1).await;
    let envelope: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(envelope["walletId"], wallet_b);

    let without = request(
        &service,
        "POST",
        "/events",
        Auth::Admin,
        Some(json!({ "type": "Custom.Thing", "data": {} })),
    )
    .await;
    assert_problem(&without, StatusCode::UNPROCESSABLE_ENTITY, "walletId");
    let unknown = request(
        &service,
        "POST",
        "/events",
        Auth::Admin,
        Some(body(json!(uuid::Uuid::new_v4()))),
    )
    .await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "wallet");
    let intruder = request(
        &service,
        "POST",
        "/events",
        Auth::Wallet(API_KEY),
        Some(body(json!(wallet_b))),
    )
    .await;
    assert_problem(&intruder, StatusCode::FORBIDDEN, "walletId");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 1);
    service.stop().await;
}

pub fn deliveries_of(json: &Value) -> &Vec<Value> {
    json["contents"].as_array().unwrap()
}

async fn delivery_logs_show_every_attempt_and_redeliver(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    // Three failures use up the test policy (3 attempts); then the receiver answers 200.
    let receiver = Receiver::start(&[500, 500, 500]).await;
    let registered = register(&service, &receiver.url()).await;
    let event_id = id_of(&publish_for(&service, API_KEY).await);
    let listing = format!("/events/{event_id}/deliveries");
    let exhausted = poll(&service, &listing, Auth::Wallet(API_KEY), |j| {
        deliveries_of(j)
            .first()
            .is_some_and(|d| d["state"] == "exhausted")
    })
    .await;
    assert_eq!(exhausted["kind"], "DeliveryPage");
    let delivery = &deliveries_of(&exhausted)[0];
    assert_eq!(delivery["webhookId"], registered.id.to_string());
    assert_eq!(delivery["attemptCount"], 3);
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["number"], n + 1);
        assert_eq!(attempt["statusCode"], 500);
        assert_eq!(attempt["outcome"], "response");
        assert!(attempt["startedAt"].is_string() && attempt["durationMs"].is_u64());
    }
    let delivery_id = delivery["id"].as_str().unwrap().to_owned();

    let filtered = request(
        &service,
        "GET",
        &format!("{listing}?state=delivered"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(deliveries_of(&filtered.json).len(), 0);
    let by_webhook = request(
        &service,
        "GET",
        &format!(
            "/events/webhooks/{}/deliveries?state=exhausted",
            registered.id
        ),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(deliveries_of(&by_webhook.json)[0]["id"], delivery_id);
    assert_problem(
        &request(
            &service,
            "GET",
            &format!("{listing}?state=lost"),
            Auth::Wallet(API_KEY),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "state",
    );

    let one = format!("/events/deliveries/{delivery_id}");
    let read = request(&service, "GET", &one, Auth::Wallet(API_KEY), None).await;
    assert_eq!(read.json["state"], "exhausted");
    let requeued = request(
        &service,
        "POST",
        &format!("{one}/redeliver"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(requeued.status, StatusCode::ACCEPTED, "{}", requeued.json);
    let delivered = poll(&service, &one, Auth::Wallet(API_KEY), |j| {
        j["state"] == "delivered"
    })
    .await;
    assert_eq!(
        delivered["attempts"].as_array().unwrap().last().unwrap()["statusCode"],
        200
    );
    assert_eq!(receiver.count(), 4);
    assert_problem(
        &request(
            &service,
            "POST",
            &format!("{one}/redeliver"),
            Auth::Wallet(API_KEY),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "",
    );
    service.stop().await;
}

/// The numbers of the attempts recorded after a redelivery go on from the earlier ones, and
/// `attemptCount` counts every attempt made, not only the fresh budget's.
async fn a_redelivery_numbers_its_attempts_after_the_earlier_ones(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    // Three failures use up the test policy (3 attempts); after the redelivery, a 200.
    let receiver = Receiver::start(&[500, 500, 500]).await;
    register(&service, &receiver.url()).await;
    let event_id = id_of(&publish_for(&service, API_KEY).await);
    let listing = format!("/events/{event_id}/deliveries");
    let exhausted = poll(&service, &listing, Auth::Wallet(API_KEY), |j| {
        deliveries_of(j)
            .first()
            .is_some_and(|d| d["state"] == "exhausted")
    })
    .await;
    let one = format!(
        "/events/deliveries/{}",
        deliveries_of(&exhausted)[0]["id"].as_str().unwrap()
    );
    let requeued = request(
        &service,
        "POST",
        &format!("{one}/redeliver"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(requeued.status, StatusCode::ACCEPTED, "{}", requeued.json);
    assert_eq!(requeued.json["attemptCount"], 3, "{}", requeued.json);
    poll(&service, &one, Auth::Wallet(API_KEY), |j| {
        j["state"] == "delivered"
    })
    .await;
    let listed = request(&service, "GET", &listing, Auth::Wallet(API_KEY), None).await;
    let read = request(&service, "GET", &one, Auth::Wallet(API_KEY), None).await;
    for delivery in [&deliveries_of(&listed.json)[0], &read.json] {
        assert_eq!(delivery["attemptCount"], 4, "{delivery}");
        let numbers: Vec<u64> = delivery["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, [1, 2, 3, 4], "{delivery}");
        assert_eq!(delivery["attempts"][3]["statusCode"], 200, "{delivery}");
        assert!(delivery.get("attemptsTotal").is_none(), "{delivery}");
    }
    assert_eq!(receiver.count(), 4);
    service.stop().await;
}

/// With `api.max_attempts_per_delivery`, each delivery shows only its most recent attempts, in
/// order, and `attemptsTotal` says how many there are in all; the listings by event and by
/// webhook and the single delivery agree.
async fn delivery_logs_show_the_most_recent_attempts_and_how_many_in_all(backend: Backend) {
    let Some(mut service) = Service::start_with(backend, |s| {
        s.api.max_attempts_per_delivery = 2;
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start(&[500, 500, 500]).await;
    let registered = register(&service, &receiver.url()).await;
    let event_id = id_of(&publish_for(&service, API_KEY).await);
    let by_event = format!("/events/{event_id}/deliveries");
    let exhausted = poll(&service, &by_event, Auth::Wallet(API_KEY), |j| {
        deliveries_of(j)
            .first()
            .is_some_and(|d| d["state"] == "exhausted")
    })
    .await;
    let one = format!(
        "/events/deliveries/{}",
        deliveries_of(&exhausted)[0]["id"].as_str().unwrap()
    );
    let shown = |delivery: &Value| -> (Vec<u64>, Value, Value) {
        let numbers = delivery["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["number"].as_u64().unwrap())
            .collect();
        (
            numbers,
            delivery["attemptsTotal"].clone(),
            delivery["attemptCount"].clone(),
        )
    };
    let by_webhook = format!("/events/webhooks/{}/deliveries", registered.id);
    for path in [&by_event, &by_webhook] {
        let listed = request(&service, "GET", path, Auth::Wallet(API_KEY), None).await;
        assert_eq!(
            shown(&deliveries_of(&listed.json)[0]),
            (vec![2, 3], json!(3), json!(3)),
            "{path}"
        );
    }
    let read = request(&service, "GET", &one, Auth::Wallet(API_KEY), None).await;
    assert_eq!(shown(&read.json), (vec![2, 3], json!(3), json!(3)));

    let requeued = request(
        &service,
        "POST",
        &format!("{one}/redeliver"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(requeued.status, StatusCode::ACCEPTED, "{}", requeued.json);
    assert_eq!(shown(&requeued.json), (vec![2, 3], json!(3), json!(3)));
    let delivered = poll(&service, &one, Auth::Wallet(API_KEY), |j| {
        j["state"] == "delivered"
    })
    .await;
    assert_eq!(shown(&delivered), (vec![3, 4], json!(4), json!(4)));
    service.stop().await;
}

async fn a_bulk_redelivery_requeues_a_window_with_progress(backend: Backend) {
    // Fifteen failures in a row would open the circuit breaker and delay the test.
    let Some(mut service) =
        Service::start_with(backend, |s| s.dispatcher.breaker_failure_threshold = 100).await
    else {
        return;
    };
    let receiver = Receiver::start(&[500; 15]).await;
    let registered = register(&service, &receiver.url()).await;
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    for _ in 0..5 {
        publish_for(&service, API_KEY).await;
    }
    let listing = format!(
        "/events/webhooks/{}/deliveries?state=exhausted",
        registered.id
    );
    poll(&service, &listing, Auth::Wallet(API_KEY), |j| {
        deliveries_of(j).len() == 5
    })
    .await;
    let started = request(
        &service,
        "POST",
        &format!("/events/webhooks/{}/redeliver", registered.id),
        Auth::Wallet(API_KEY),
        Some(json!({ "since": since.format(&time::format_description::well_known::Rfc3339).unwrap() })),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.json);
    assert_eq!(started.json["total"], 5);
    let job = format!(
        "/events/webhooks/{}/redeliveries/{}",
        registered.id,
        id_of(&started)
    );
    let done = poll(&service, &job, Auth::Wallet(API_KEY), |j| {
        j["state"] == "completed"
    })
    .await;
    assert_eq!(done["requeued"], 5);
    let delivered = format!(
        "/events/webhooks/{}/deliveries?state=delivered",
        registered.id
    );
    poll(&service, &delivered, Auth::Wallet(API_KEY), |j| {
        deliveries_of(j).len() == 5
    })
    .await;

    let reversed = request(
        &service,
        "POST",
        &format!("/events/webhooks/{}/redeliver", registered.id),
        Auth::Wallet(API_KEY),
        Some(json!({ "since": "2030-01-01T00:00:00Z", "until": "2029-01-01T00:00:00Z" })),
    )
    .await;
    assert_problem(&reversed, StatusCode::UNPROCESSABLE_ENTITY, "since");
    service.stop().await;
}

async fn wallets_never_see_each_other(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    new_wallet(&service, "b", "b-key").await;
    let receiver = Receiver::start(&[500; 3]).await;
    let theirs = register_for(&service, "b-key", json!({ "url": receiver.url() })).await;
    let webhook = id_of(&theirs);
    let event = id_of(&publish_for(&service, "b-key").await);
    let deliveries = poll(
        &service,
        &format!("/events/{event}/deliveries"),
        Auth::Wallet("b-key"),
        |j| {
            deliveries_of(j)
                .first()
                .is_some_and(|d| d["state"] == "exhausted")
        },
    )
    .await;
    let delivery = deliveries_of(&deliveries)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = request(
        &service,
        "POST",
        &format!("/events/webhooks/{webhook}/redeliver"),
        Auth::Wallet("b-key"),
        Some(json!({ "since": "2020-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.json);
    let job = id_of(&job);

    // Wallet A (the default wallet) tries everything on B's resources.
    let attempts: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/events/webhooks/{webhook}"), None),
        (
            "PATCH",
            format!("/events/webhooks/{webhook}"),
            Some(json!({ "enabled": false })),
        ),
        ("DELETE", format!("/events/webhooks/{webhook}"), None),
        (
            "POST",
            format!("/events/webhooks/{webhook}/secret/rotate"),
            None,
        ),
        ("POST", format!("/events/webhooks/{webhook}/test"), None),
        (
            "GET",
            format!("/events/webhooks/{webhook}/deliveries"),
            None,
        ),
        (
            "POST",
            format!("/events/webhooks/{webhook}/redeliver"),
            Some(json!({ "since": "2020-01-01T00:00:00Z" })),
        ),
        (
            "GET",
            format!("/events/webhooks/{webhook}/redeliveries/{job}"),
            None,
        ),
        ("GET", format!("/events/{event}"), None),
        ("GET", format!("/events/{event}/deliveries"), None),
        ("GET", format!("/events/deliveries/{delivery}"), None),
        (
            "POST",
            format!("/events/deliveries/{delivery}/redeliver"),
            None,
        ),
    ];
    for (method, path, body) in attempts {
        let answer = request(&service, method, &path, Auth::Wallet(API_KEY), body).await;
        assert_problem(&answer, StatusCode::NOT_FOUND, "not found");
        let text = answer.json.to_string();
        assert!(
            !text.contains(&receiver.url()) && !text.contains("b-key"),
            "{method} {path} leaks: {text}"
        );
    }
    let listed = request(
        &service,
        "GET",
        "/events/webhooks",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(deliveries_of(&listed.json).len(), 0);
    // B's webhook is intact and still receives; redeliveries by B went through.
    let read = request(
        &service,
        "GET",
        &format!("/events/webhooks/{webhook}"),
        Auth::Wallet("b-key"),
        None,
    )
    .await;
    assert_eq!(read.json["enabled"], true);
    assert_eq!(read.json["url"], receiver.url());
    service.stop().await;
}

async fn the_identus_variables_behave_across_restarts(backend: Backend) {
    let first = Receiver::start(&[]).await;
    let second = Receiver::start(&[]).await;
    let global_a = Receiver::start(&[]).await;
    let global_b = Receiver::start(&[]).await;
    let Some(mut service) = Service::start_with(backend, |s| {
        s.identus.default_wallet_webhook_url = Some(first.url());
        s.identus.default_wallet_webhook_api_key = Some("default-hook-key".to_owned());
        s.identus.global_webhook_url = Some(global_a.url());
        s.identus.global_webhook_api_key = Some("global-a-key".to_owned());
    })
    .await
    else {
        return;
    };
    publish_for(&service, API_KEY).await;
    let to_default = first.wait_for(1).await;
    assert_eq!(
        to_default[0].headers["authorization"],
        "Bearer default-hook-key"
    );
    let to_global = global_a.wait_for(1).await;
    assert_eq!(to_global[0].headers["authorization"], "Bearer global-a-key");

    service
        .restart(|s| {
            s.identus.default_wallet_webhook_url = Some(second.url());
            s.identus.default_wallet_webhook_api_key = Some("changed".to_owned());
            s.identus.global_webhook_url = Some(global_b.url());
            s.identus.global_webhook_api_key = Some("global-b-key".to_owned());
        })
        .await;
    let listed = request(
        &service,
        "GET",
        "/events/webhooks",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    let hooks = deliveries_of(&listed.json);
    assert_eq!(
        hooks.len(),
        1,
        "the default wallet's webhook is created once"
    );
    assert_eq!(hooks[0]["url"], first.url());
    publish_for(&service, API_KEY).await;
    first.wait_for(2).await;
    let to_global = global_b.wait_for(1).await;
    assert_eq!(to_global[0].headers["authorization"], "Bearer global-b-key");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.count(), 0);
    assert_eq!(
        global_a.count(),
        1,
        "the old global target gets nothing new"
    );

    // Unsetting the global URL removes the global target.
    service
        .restart(|s| s.identus.global_webhook_url = None)
        .await;
    publish_for(&service, API_KEY).await;
    first.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(global_b.count(), 1);
    service.stop().await;
}

async fn generated_keys_are_shown_once_and_keep_working(backend: Backend) {
    let Some(mut service) = Service::start_with(backend, |s| {
        s.identus.admin_token = None;
        s.identus.default_wallet_auth_api_key = None;
    })
    .await
    else {
        return;
    };
    let running = service.running.as_ref().unwrap();
    let admin = running
        .generated_admin_token
        .clone()
        .expect("an admin token is generated");
    let wallet_key = running
        .generated_default_key
        .clone()
        .expect("a default key is generated");
    service.restart(|_| {}).await;
    let running = service.running.as_ref().unwrap();
    assert!(running.generated_admin_token.is_none(), "shown only once");
    assert!(running.generated_default_key.is_none(), "shown only once");
    let listed = call(
        "GET",
        &service.url("/wallets"),
        &[("x-admin-api-key", admin.expose())],
        "",
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    let hooks = request(
        &service,
        "GET",
        "/events/webhooks",
        Auth::Wallet(wallet_key.expose()),
        None,
    )
    .await;
    assert_eq!(hooks.status, StatusCode::OK);
    // A configured ADMIN_TOKEN takes over from the generated one.
    service
        .restart(|s| s.identus.admin_token = Some(ADMIN_KEY.to_owned()))
        .await;
    let with_configured = request(&service, "GET", "/wallets", Auth::Admin, None).await;
    assert_eq!(with_configured.status, StatusCode::OK);
    service.stop().await;
}
