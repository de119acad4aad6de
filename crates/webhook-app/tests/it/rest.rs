//! The REST API's answers to good and bad requests, and that bad ones store nothing.

use hyper::StatusCode;
use serde_json::json;

use crate::utils::{API_KEY, Service, call, post_json};

fn assert_problem(answer: &crate::utils::Answer, status: StatusCode, detail_has: &str) {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.json["status"], status.as_u16());
    assert!(answer.json["type"].is_string() && answer.json["title"].is_string());
    let detail = answer.json["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_has),
        "{detail:?} should mention {detail_has:?}"
    );
}

async fn webhook_count(service: &Service) -> usize {
    let listed = call(
        "GET",
        &service.url("/events/webhooks"),
        &[("apikey", API_KEY)],
        "",
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json["kind"], "WebhookNotificationPage");
    listed.json["contents"].as_array().unwrap().len()
}

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    let mut service = Service::start().await;
    let url = service.url("/events/webhooks");
    let body = json!({ "url": "http://localhost:9095" }).to_string();
    for headers in [
        vec![("content-type", "application/json")],
        vec![
            ("content-type", "application/json"),
            ("apikey", "wrong-key"),
        ],
        vec![("content-type", "application/json"), ("apikey", "")],
    ] {
        let answer = call("POST", &url, &headers, &body).await;
        assert_problem(&answer, StatusCode::UNAUTHORIZED, "apikey");
    }
    assert_eq!(webhook_count(&service).await, 0);
    service.stop().await;
}

#[tokio::test]
async fn invalid_webhooks_get_a_problem_body_and_store_nothing() {
    let mut service = Service::start().await;
    let url = service.url("/events/webhooks");
    let cases = [
        (
            json!({ "url": "ftp://example.com" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "scheme",
        ),
        (
            json!({ "url": "https://user:pw@example.com" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "user name",
        ),
        (
            json!({ "url": "http://x", "customHeaders": { "Host": "y" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Host",
        ),
        (
            json!({ "url": "http://x", "customHeaders": { "X-A": "a\r\nB: c" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "X-A",
        ),
        (
            json!({ "url": "http://x", "retry_policy": { "kind": "fixed" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "retryPolicy",
        ),
        (
            json!({ "url": 42 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "url",
        ),
        (
            json!({ "url": "http://x", "retryPolicy": { "kind": "fixed", "intervalMs": 1, "maxAttempts": 0 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "maxAttempts",
        ),
    ];
    for (body, status, detail) in cases {
        assert_problem(&post_json(&url, body).await, status, detail);
    }
    let malformed = call(
        "POST",
        &url,
        &[("content-type", "application/json"), ("apikey", API_KEY)],
        "{\"url\": ",
    )
    .await;
    assert_problem(&malformed, StatusCode::BAD_REQUEST, "");
    assert_eq!(webhook_count(&service).await, 0);
    service.stop().await;
}

#[tokio::test]
async fn invalid_events_are_refused_with_the_field_named() {
    let mut service = Service::start().await;
    let url = service.url("/events");
    let cases = [
        (
            json!({ "type": "ConnectionUpdated", "data": { "connectionId": "c", "state": "Nope" } }),
            "data.state",
        ),
        (
            json!({ "type": "DIDStatusUpdated", "data": { "status": "PUBLISHED" } }),
            "data.did",
        ),
        (json!({ "type": "bad type!", "data": {} }), "type"),
    ];
    for (body, field) in cases {
        assert_problem(
            &post_json(&url, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            field,
        );
    }
    service.stop().await;
}

#[tokio::test]
async fn an_idempotent_publish_is_stored_once() {
    let mut service = Service::start().await;
    let url = service.url("/events");
    let body = json!({ "type": "Custom.Thing", "data": { "n": 1 } }).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("apikey", API_KEY),
        ("idempotency-key", "order-42"),
    ];
    let first = call("POST", &url, &headers, &body).await;
    let second = call("POST", &url, &headers, &body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.json["id"], second.json["id"]);
    assert_eq!(
        (
            first.json["replayed"].clone(),
            second.json["replayed"].clone()
        ),
        (json!(false), json!(true))
    );
    let other_body = json!({ "type": "Custom.Thing", "data": { "n": 2 } }).to_string();
    let reused = call("POST", &url, &headers, &other_body).await;
    assert_problem(&reused, StatusCode::CONFLICT, "idempotency key");
    service.stop().await;
}
