//! What an operator sees of a real service, on SQLite and on PostgreSQL: `/health`, `/ready`,
//! and `/metrics` after real deliveries to real receivers (one that fails then succeeds, one
//! that is down), with no credential in any of it.

use std::time::Duration;

use hyper::StatusCode;
use webhook_domain::DeliveryStateKind;

use crate::utils::{
    ADMIN_KEY, API_KEY, Backend, Receiver, Service, call, get_text, post_json, publish,
    refusing_url, register,
};

/// The value of one series (its name and labels as written) in an OpenMetrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// As [`sample`], for a series that must be there.
fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// `GET /metrics`, checked for its status, content type and end.
async fn scrape(service: &Service) -> String {
    let (status, content_type, text) = get_text(&format!("http://{}/metrics", service.addr)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// Scrapes until `done` holds (10 s at most) and returns that scrape.
async fn scrape_until(service: &Service, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(service).await;
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not within 10 s; the last scrape:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text holds no key, no secret, and no target address.
fn assert_no_secrets(text: &str, secrets: &[&str]) {
    for secret in [API_KEY, ADMIN_KEY, "127.0.0.1"].iter().chain(secrets) {
        assert!(!text.contains(secret), "{secret:?} in\n{text}");
    }
}

/// A receiver that answers 500 and then 200: one event published, two attempts (an HTTP error,
/// then a success) observed in the histogram, one delivery finished as delivered, nothing
/// left due, and the pool's size as configured.
async fn fail_then_succeed(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[500]).await;
    let webhook = register(&service, &receiver.url()).await;
    publish(&service).await;
    service
        .wait_for_delivery(webhook.id, DeliveryStateKind::Delivered)
        .await;

    let delivered = "webhookd_deliveries_finished_total{state=\"delivered\"}";
    let text = scrape_until(&service, "a finished delivery", |text| {
        sample(text, delivered) == Some(1.0)
    })
    .await;
    assert_eq!(value(&text, "webhookd_events_published_total"), 1.0);
    assert_eq!(
        value(&text, "webhookd_attempts_total{outcome=\"http_error\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "webhookd_attempts_total{outcome=\"success\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "webhookd_attempts_total{outcome=\"timeout\"}"),
        0.0
    );
    assert_eq!(value(&text, "webhookd_attempt_duration_seconds_count"), 2.0);
    assert_eq!(
        value(
            &text,
            "webhookd_attempt_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        2.0
    );
    assert!(value(&text, "webhookd_attempt_duration_seconds_sum") > 0.0);
    assert_eq!(
        value(
            &text,
            "webhookd_deliveries_finished_total{state=\"exhausted\"}"
        ),
        0.0
    );
    assert_eq!(value(&text, "webhookd_backlog_deliveries"), 0.0);
    assert_eq!(value(&text, "webhookd_backlog_oldest_due_age_seconds"), 0.0);
    assert_eq!(value(&text, "webhookd_circuit_open_targets"), 0.0);
    let max = f64::from(service.settings.database_pool_size.max(1));
    assert_eq!(value(&text, "webhookd_db_pool_max_connections"), max);
    let open = value(&text, "webhookd_db_pool_connections");
    assert!((1.0..=max).contains(&open), "{open} connections");
    assert!(value(&text, "webhookd_db_pool_idle_connections") <= open);
    assert_no_secrets(&text, &[&webhook.secret]);
    service.stop().await;
}

#[tokio::test]
async fn metrics_count_a_failed_then_successful_delivery() {
    fail_then_succeed(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_metrics_count_a_failed_then_successful_delivery() {
    fail_then_succeed(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_metrics_count_a_failed_then_successful_delivery() {
    fail_then_succeed(Backend::Mysql).await;
}

/// A receiver that is down: its first failure opens its circuit (a threshold of one), which
/// shows as the target's state, and the events published after it wait in storage, skipped by
/// claims: the backlog counts them and reports how long the oldest has been due.
async fn receiver_down(backend: Backend) {
    let Some(mut service) = Service::start_with(backend, |s| {
        s.dispatcher.breaker_failure_threshold = 1;
        s.dispatcher.breaker_open_ms = 60_000;
    })
    .await
    else {
        return;
    };
    let webhook = register(&service, &refusing_url()).await;
    publish(&service).await;
    let state = format!("webhookd_circuit_state{{webhook=\"{}\"}}", webhook.id);
    let text = scrape_until(&service, "an open circuit", |text| {
        sample(text, &state) == Some(2.0)
    })
    .await;
    assert_eq!(value(&text, "webhookd_circuit_open_targets"), 1.0);
    assert_eq!(
        value(
            &text,
            "webhookd_attempts_total{outcome=\"connection_failed\"}"
        ),
        1.0
    );

    publish(&service).await;
    publish(&service).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = scrape_until(&service, "a backlog", |text| {
        sample(text, "webhookd_backlog_deliveries").is_some_and(|due| due >= 2.0)
    })
    .await;
    let age = value(&text, "webhookd_backlog_oldest_due_age_seconds");
    assert!((0.05..60.0).contains(&age), "oldest due {age} s ago");
    assert_eq!(value(&text, "webhookd_events_published_total"), 3.0);
    // Still only the one attempt: the resting target got no more.
    assert_eq!(
        value(
            &text,
            "webhookd_attempts_total{outcome=\"connection_failed\"}"
        ),
        1.0
    );
    assert_eq!(value(&text, &state), 2.0);
    assert_no_secrets(&text, &[&webhook.secret]);

    // The oldest due delivery ages between scrapes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = scrape(&service).await;
    assert!(value(&later, "webhookd_backlog_oldest_due_age_seconds") >= age + 0.2);
    service.stop().await;
}

#[tokio::test]
async fn metrics_show_the_backlog_and_open_circuit_of_a_receiver_that_is_down() {
    receiver_down(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_metrics_show_the_backlog_and_open_circuit_of_a_receiver_that_is_down() {
    receiver_down(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_metrics_show_the_backlog_and_open_circuit_of_a_receiver_that_is_down() {
    receiver_down(Backend::Mysql).await;
}

/// Events are counted once each, whether published alone or in a batch; replays are not.
async fn published_events(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let event =
        |id: &str| serde_json::json!({ "type": "Custom.Test", "data": { "n": 1 }, "id": id });
    let a = "00000000-0000-4000-8000-00000000000a";
    let b = "00000000-0000-4000-8000-00000000000b";
    let c = "00000000-0000-4000-8000-00000000000c";
    for _ in 0..2 {
        let answer = post_json(&service.url("/events"), event(a)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    }
    let batch = serde_json::json!({ "events": [event(b), event(a), event(c)] });
    let answer = post_json(&service.url("/events/batch"), batch).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    let text = scrape(&service).await;
    assert_eq!(value(&text, "webhookd_events_published_total"), 3.0);
    service.stop().await;
}

#[tokio::test]
async fn replays_are_not_counted_as_published_events() {
    published_events(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_replays_are_not_counted_as_published_events() {
    published_events(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_replays_are_not_counted_as_published_events() {
    published_events(Backend::Mysql).await;
}

/// `/health` and `/ready` answer without credentials, outside the base path; a migrated
/// database that answers is ready.
async fn ready_and_alive(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let ready = call("GET", &format!("http://{}/ready", service.addr), &[], "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);
    assert_eq!(ready.json, serde_json::json!({ "status": "ready" }));
    let health = call("GET", &format!("http://{}/health", service.addr), &[], "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json, serde_json::json!({ "status": "ok" }));
    let nested = call("GET", &service.url("/ready"), &[], "").await;
    assert_eq!(nested.status, StatusCode::NOT_FOUND);
    service.stop().await;
}

#[tokio::test]
async fn a_migrated_database_is_ready() {
    ready_and_alive(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_migrated_database_is_ready() {
    ready_and_alive(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_migrated_database_is_ready() {
    ready_and_alive(Backend::Mysql).await;
}
