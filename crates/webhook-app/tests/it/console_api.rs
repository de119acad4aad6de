//! The calls the web console makes: the delivery search (keyset pages, filters, the last
//! attempt, wallet isolation, cursor tampering), a webhook's stats (buckets, totals, breaker,
//! 404 for another wallet's webhook) and the admin's overview (admin key only).

use std::collections::BTreeSet;

use hyper::StatusCode;
use serde_json::{Value, json};
use webhook_app::config::Role;

use crate::api::{Auth, assert_problem, new_wallet, poll, register_for, request};
use crate::utils::{API_KEY, Backend, Receiver, Service, connection_data};

crate::on_every_backend!(
    the_search_walks_every_delivery_once_newest_first,
    the_search_filters_and_refuses_what_it_cannot_read,
    stats_count_a_webhooks_attempts_in_the_wallet_only,
    stats_say_unknown_without_a_dispatcher,
    the_overview_is_the_admins,
);

const B_KEY: &str = "console-wallet-b-key";

/// Publishes an event of `kind` into the default wallet.
async fn publish_kind(service: &Service, kind: &str) {
    let published = request(
        service,
        "POST",
        "/events",
        Auth::Wallet(API_KEY),
        Some(json!({ "type": kind, "data": connection_data() })),
    )
    .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.json);
}

/// Every page of the search at `path` (with `?`), following `next`.
async fn walk(service: &Service, path: &str, key: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut url = path.to_owned();
    for _ in 0..100 {
        let page = request(service, "GET", &url, Auth::Wallet(key), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        assert_eq!(page.json["kind"], "DeliverySearchPage");
        assert_eq!(page.json["pageOf"], "/cloud-agent/events/deliveries");
        rows.extend(page.json["contents"].as_array().unwrap().iter().cloned());
        match page.json["next"].as_str() {
            Some(next) => url = next.strip_prefix("/cloud-agent").unwrap().to_owned(),
            None => return rows,
        }
    }
    panic!("more than 100 pages");
}

/// A wallet with two webhooks and seven events of two types, all delivered: the search walks
/// its 14 deliveries in pages of 3 through `next`, each once, newest first (createdAt, then
/// id), each with its event type and its last attempt; the other wallet sees none of them.
async fn the_search_walks_every_delivery_once_newest_first(backend: Backend) {
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    for _ in 0..2 {
        register_for(&service, API_KEY, json!({ "url": receiver.url() })).await;
    }
    for n in 0..7 {
        let kind = if n % 2 == 0 {
            "ConnectionUpdated"
        } else {
            "Custom.Thing"
        };
        publish_kind(&service, kind).await;
    }
    poll(
        &service,
        "/events/deliveries?state=delivered",
        Auth::Wallet(API_KEY),
        |page| page["contents"].as_array().unwrap().len() == 14,
    )
    .await;

    let rows = walk(&service, "/events/deliveries?limit=3", API_KEY).await;
    assert_eq!(rows.len(), 14);
    let ids: BTreeSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 14, "a delivery came twice");
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["createdAt"].as_str().unwrap(), r["id"].as_str().unwrap()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(keys, sorted, "newest first, by createdAt then id");
    for row in &rows {
        assert_eq!(row["state"], "delivered");
        assert_eq!(row["attemptCount"], 1);
        assert!(row["finishedAt"].is_string(), "{row}");
        assert!(row.get("attempts").is_none(), "{row}");
        let last = &row["lastAttempt"];
        assert_eq!(last["number"], 1, "{row}");
        assert_eq!(last["outcome"], "response");
        assert_eq!(last["statusCode"], 200);
        assert!(last["startedAt"].is_string() && last["durationMs"].is_u64());
        assert!(
            ["ConnectionUpdated", "Custom.Thing"].contains(&row["eventType"].as_str().unwrap())
        );
    }

    // The first page's links: the filters as given, the limit, the cursor of the next page.
    let first = request(
        &service,
        "GET",
        "/events/deliveries?state=delivered&limit=5",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(
        first.json["self"],
        "/cloud-agent/events/deliveries?state=delivered&limit=5"
    );
    let next = first.json["next"].as_str().unwrap();
    assert!(
        next.starts_with("/cloud-agent/events/deliveries?state=delivered&limit=5&cursor="),
        "{next}"
    );
    let last_page = request(
        &service,
        "GET",
        "/events/deliveries?limit=14",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert!(last_page.json.get("next").is_none(), "{}", last_page.json);

    // Another wallet sees none of them, with or without the first wallet's filters.
    new_wallet(&service, "b", B_KEY).await;
    let of_b = request(
        &service,
        "GET",
        "/events/deliveries",
        Auth::Wallet(B_KEY),
        None,
    )
    .await;
    assert_eq!(of_b.status, StatusCode::OK);
    assert_eq!(of_b.json["contents"], json!([]));
    let webhook = rows[0]["webhookId"].as_str().unwrap();
    let by_a_hook = request(
        &service,
        "GET",
        &format!("/events/deliveries?webhookId={webhook}"),
        Auth::Wallet(B_KEY),
        None,
    )
    .await;
    assert_eq!(by_a_hook.json["contents"], json!([]));
}

/// Each filter gives what matches it; a deleted webhook's deliveries stay searchable; an
/// edited cursor, or one moved to other filters, is a 400 problem.
async fn the_search_filters_and_refuses_what_it_cannot_read(backend: Backend) {
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    let kept = register_for(&service, API_KEY, json!({ "url": receiver.url() })).await;
    let doomed = register_for(&service, API_KEY, json!({ "url": receiver.url() })).await;
    for kind in ["ConnectionUpdated", "Custom.Thing", "Custom.Thing"] {
        publish_kind(&service, kind).await;
    }
    poll(
        &service,
        "/events/deliveries?state=delivered",
        Auth::Wallet(API_KEY),
        |page| page["contents"].as_array().unwrap().len() == 6,
    )
    .await;
    let doomed_id = doomed.json["id"].as_str().unwrap();
    let deleted = request(
        &service,
        "DELETE",
        &format!("/events/webhooks/{doomed_id}"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert!(deleted.status.is_success(), "{}", deleted.json);
    let count = |path: String| {
        let service = &service;
        async move {
            let rows = walk(service, &path, API_KEY).await;
            rows.len()
        }
    };
    assert_eq!(
        count("/events/deliveries?eventType=Custom.Thing&limit=1".into()).await,
        4
    );
    assert_eq!(
        count("/events/deliveries?eventType=Nothing.Such".into()).await,
        0
    );
    assert_eq!(
        count(format!("/events/deliveries?webhookId={doomed_id}&limit=2")).await,
        3
    );
    let kept_id = kept.json["id"].as_str().unwrap();
    assert_eq!(
        count(format!("/events/deliveries?webhookId={kept_id}")).await,
        3
    );
    assert_eq!(count("/events/deliveries?state=pending".into()).await, 0);
    assert_eq!(
        count("/events/deliveries?since=2000-01-01T00:00:00Z".into()).await,
        6
    );
    assert_eq!(
        count("/events/deliveries?until=2000-01-01T00:00:00Z".into()).await,
        0
    );

    let first = request(
        &service,
        "GET",
        "/events/deliveries?limit=2",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    let next = first.json["next"].as_str().unwrap();
    let cursor = next.rsplit("cursor=").next().unwrap();
    let mut edited = cursor.as_bytes().to_vec();
    edited[3] = if edited[3] == b'a' { b'b' } else { b'a' };
    let edited = String::from_utf8(edited).unwrap();
    for bad in [
        format!("/events/deliveries?limit=2&cursor={edited}"),
        format!("/events/deliveries?limit=2&cursor={}", &cursor[..40]),
        "/events/deliveries?cursor=not-a-cursor".to_owned(),
        format!("/events/deliveries?state=delivered&limit=2&cursor={cursor}"),
    ] {
        assert_problem(
            &request(&service, "GET", &bad, Auth::Wallet(API_KEY), None).await,
            StatusCode::BAD_REQUEST,
            "cursor",
        );
    }
    assert_problem(
        &request(&service, "GET", "/events/deliveries", Auth::None, None).await,
        StatusCode::UNAUTHORIZED,
        "apikey",
    );
}

/// A webhook's stats count its attempts (all succeeded here: 200s) in 12 buckets of 5 minutes
/// ending now, or 24 of an hour; the breaker is closed in a process whose dispatcher runs; the
/// same webhook is a 404 for another wallet, an unknown window a 400.
async fn stats_count_a_webhooks_attempts_in_the_wallet_only(backend: Backend) {
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[500]).await;
    let hook = register_for(&service, API_KEY, json!({ "url": receiver.url() })).await;
    let id = hook.json["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        publish_kind(&service, "ConnectionUpdated").await;
    }
    // One 500 (then a retry 100 ms later that succeeds) and two 200s: four attempts.
    let stats = poll(
        &service,
        &format!("/events/webhooks/{id}/stats"),
        Auth::Wallet(API_KEY),
        |s| s["totals"]["attempts"] == 4 && s["backlog"] == 0,
    )
    .await;
    assert_eq!(stats["webhookId"], id.as_str());
    assert_eq!(stats["window"], "1h");
    assert_eq!(stats["bucketSeconds"], 300);
    assert_eq!(stats["breaker"], "closed");
    let totals = &stats["totals"];
    assert_eq!(totals["succeeded"], 3);
    assert_eq!(totals["failed"], 1);
    assert_eq!(totals["successRate"], 0.75);
    assert!(totals["avgLatencyMs"].as_f64().unwrap() >= 0.0);
    assert!(totals["maxLatencyMs"].as_f64().unwrap() >= totals["avgLatencyMs"].as_f64().unwrap());
    let buckets = stats["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 12);
    let sum: u64 = buckets
        .iter()
        .map(|b| b["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 4);
    let since = time::OffsetDateTime::parse(
        stats["since"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let until = time::OffsetDateTime::parse(
        stats["until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until - since, time::Duration::hours(1));
    assert_eq!(buckets[0]["start"], stats["since"]);
    // Empty buckets are there, with zeros and nulls.
    let empty = buckets.iter().find(|b| b["attempts"] == 0).unwrap();
    assert_eq!(empty["succeeded"], 0);
    assert!(empty["avgLatencyMs"].is_null() && empty["maxLatencyMs"].is_null());

    let day = request(
        &service,
        "GET",
        &format!("/events/webhooks/{id}/stats?window=24h"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(day.json["buckets"].as_array().unwrap().len(), 24);
    assert_eq!(day.json["bucketSeconds"], 3600);
    assert_eq!(day.json["totals"]["attempts"], 4);

    for bad in ["window=2h", "window=", "span=1h"] {
        let answer = request(
            &service,
            "GET",
            &format!("/events/webhooks/{id}/stats?{bad}"),
            Auth::Wallet(API_KEY),
            None,
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.json
        );
    }
    new_wallet(&service, "b", B_KEY).await;
    let foreign = request(
        &service,
        "GET",
        &format!("/events/webhooks/{id}/stats"),
        Auth::Wallet(B_KEY),
        None,
    )
    .await;
    assert_problem(&foreign, StatusCode::NOT_FOUND, "webhook");
    let unknown = request(
        &service,
        "GET",
        "/events/webhooks/6a0e3b5f-7d2c-4a57-9f0e-1b3c5d7e9f10/stats",
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "webhook");
    assert_eq!(unknown.json["detail"], foreign.json["detail"]);
}

/// An API-only process runs no dispatcher: its breaker view is `unknown`, and its overview
/// lists no circuit.
async fn stats_say_unknown_without_a_dispatcher(backend: Backend) {
    let Some(service) = Service::start_with(backend, |s| s.role = Role::Api).await else {
        return;
    };
    let hook = register_for(&service, API_KEY, json!({ "url": "http://127.0.0.1:9/x" })).await;
    let id = hook.json["id"].as_str().unwrap();
    publish_kind(&service, "ConnectionUpdated").await;
    let stats = request(
        &service,
        "GET",
        &format!("/events/webhooks/{id}/stats"),
        Auth::Wallet(API_KEY),
        None,
    )
    .await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.json);
    assert_eq!(stats.json["breaker"], "unknown");
    assert_eq!(stats.json["backlog"], 1);
    assert_eq!(stats.json["totals"]["attempts"], 0);
    assert!(stats.json["totals"]["successRate"].is_null());
    let overview = request(&service, "GET", "/system/overview", Auth::Admin, None).await;
    assert_eq!(overview.json["circuits"], json!([]));
}

/// The overview answers the admin key only (401 without a key, 403 for a wallet's) with the
/// counts of every wallet.
async fn the_overview_is_the_admins(backend: Backend) {
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    assert_problem(
        &request(&service, "GET", "/system/overview", Auth::None, None).await,
        StatusCode::UNAUTHORIZED,
        "x-admin-api-key",
    );
    assert_problem(
        &request(
            &service,
            "GET",
            "/system/overview",
            Auth::Wallet(API_KEY),
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "admin key",
    );
    let receiver = Receiver::start(&[]).await;
    register_for(&service, API_KEY, json!({ "url": receiver.url() })).await;
    new_wallet(&service, "b", B_KEY).await;
    register_for(&service, B_KEY, json!({ "url": receiver.url() })).await;
    publish_kind(&service, "ConnectionUpdated").await;
    let overview = poll(&service, "/system/overview", Auth::Admin, |o| {
        o["attemptsLastMinute"] == 1
    })
    .await;
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(overview["wallets"], 2);
    assert_eq!(overview["webhooks"], 2);
    assert_eq!(overview["attemptsPerSecond"], 1.0 / 60.0);
    assert_eq!(overview["backlog"]["deliveries"], 0);
    assert_eq!(overview["backlog"]["oldestDueAgeSeconds"], 0.0);
    assert_eq!(overview["circuits"], json!([]));
    assert!(overview["globalWebhook"].is_null(), "{overview}");
}
