//! Adaptive per-target concurrency end to end: a slow but healthy receiver is sent more
//! attempts at once than its limit starts at, up to the ceiling and never beyond it. (How the
//! limit moves on each kind of answer is tested without I/O, in `webhook_domain::concurrency`
//! and `dispatcher::slots`.) The learnt limit shows in `/metrics`.

use std::time::Duration;

use crate::utils::{Backend, Receiver, Service, get_text, publish, register};

const EVENTS: usize = 120;

async fn a_slow_healthy_receiver_gets_more_at_once(backend: Backend) {
    let Some(mut service) = Service::start_with(backend, |s| {
        s.dispatcher.min_in_flight_per_target = 1;
        s.dispatcher.initial_in_flight_per_target = 4;
        s.dispatcher.max_in_flight_per_target = 24;
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start_slow(Duration::from_millis(300)).await;
    let webhook = register(&service, &receiver.url()).await;
    for _ in 0..EVENTS {
        publish(&service).await;
    }
    let got = receiver.wait_for(EVENTS).await;
    assert_eq!(got.len(), EVENTS);
    let most = receiver.most_at_once();
    // Each healthy answer at the limit raises it: from 4 it doubles per round trip while the
    // backlog lasts. More than twice the start shows it grew; the ceiling is never passed.
    assert!(most > 8, "at most {most} at once: the limit did not grow");
    assert!(most <= 24, "{most} at once, above the ceiling of 24");
    // The grown limit is reported (at most a second late) as the target's gauge.
    let series = format!(
        "webhookd_target_inflight_limit{{webhook=\"{}\"}} ",
        webhook.id
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, text) = get_text(&format!("http://{}/metrics", service.addr)).await;
        let limit = text
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|value| value.parse::<u32>().ok());
        if limit.is_some_and(|l| l > 4 && l <= 24) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no grown limit in /metrics: {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stopped before its database is dropped: the drop waits for the service's transactions.
    service.stop().await;
}

#[tokio::test]
async fn a_slow_healthy_receiver_gets_more_attempts_at_once_than_the_limit_starts_at() {
    a_slow_healthy_receiver_gets_more_at_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_slow_healthy_receiver_gets_more_attempts_at_once_than_the_limit_starts_at() {
    a_slow_healthy_receiver_gets_more_at_once(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_slow_healthy_receiver_gets_more_attempts_at_once_than_the_limit_starts_at() {
    a_slow_healthy_receiver_gets_more_at_once(Backend::Mysql).await;
}
