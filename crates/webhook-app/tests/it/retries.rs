//! What each kind of failure at a real receiver comes to: the outcome recorded for every
//! attempt, how many attempts the retry policy allows, and the delivery's final state.
//!
//! Every scenario runs on SQLite and on PostgreSQL. Timing is asserted only as lower bounds
//! (a retry came no sooner than it should); how soon things happen is left to the 10 s waits.

use std::time::Duration;

use webhook_domain::{AttemptDetail, Backoff, CancelReason, DeliveryState, DeliveryStateKind};
use webhook_ports::AttemptLog;

use crate::utils::{
    Backend, Receiver, Reply, Service, assert_signed, publish, publish_counted, refusing_url,
    register,
};

/// The retry interval the service under test uses (see [`Service::start_with`]).
const INTERVAL: Duration = Duration::from_millis(100);

/// How long to watch for an attempt that should not come: several retry intervals.
const QUIET: Duration = Duration::from_millis(600);

/// A fixed-interval policy of `max_attempts` attempts, [`INTERVAL`] apart.
fn fixed_policy(max_attempts: u32) -> webhook_domain::RetryPolicy {
    webhook_domain::RetryPolicy::new(Backoff::Fixed { interval: INTERVAL }, max_attempts, None)
        .unwrap()
}

/// The (number, outcome) of each attempt.
fn outcomes(attempts: &[AttemptLog]) -> Vec<(u32, AttemptDetail)> {
    attempts.iter().map(|a| (a.number, a.detail)).collect()
}

/// The time from one attempt's start to the next one's.
fn gaps(attempts: &[AttemptLog]) -> Vec<Duration> {
    attempts
        .windows(2)
        .map(|pair| Duration::try_from(pair[1].started_at - pair[0].started_at).unwrap())
        .collect()
}

fn response(status: u16) -> AttemptDetail {
    AttemptDetail::Response {
        status,
        retry_after: None,
    }
}

/// A target that always answers 500 gets exactly the policy's attempts, numbered 1..=N, and
/// its delivery is exhausted. Four attempts, not the Identus three, so the count is the
/// policy's.
async fn always_500(backend: Backend) {
    const MAX_ATTEMPTS: u32 = 4;
    let Some(mut service) = Service::start_with(backend, |s| {
        s.default_retry_policy = fixed_policy(MAX_ATTEMPTS);
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start(&[500; 10]).await;
    let webhook = register(&service, &receiver.url()).await;
    publish(&service).await;

    let delivery = service
        .wait_for_delivery(webhook.id, DeliveryStateKind::Exhausted)
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(receiver.received().len(), MAX_ATTEMPTS as usize);
    assert_eq!(delivery.attempts(), MAX_ATTEMPTS);
    let attempts = service.attempts(&delivery).await;
    let expected: Vec<_> = (1..=MAX_ATTEMPTS).map(|n| (n, response(500))).collect();
    assert_eq!(outcomes(&attempts), expected);
    for gap in gaps(&attempts) {
        assert!(gap >= INTERVAL, "retried after {gap:?}");
    }
    service.stop().await;
}

#[tokio::test]
async fn always_500_is_exhausted_after_the_policy_attempts() {
    always_500(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_always_500_is_exhausted_after_the_policy_attempts() {
    always_500(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_always_500_is_exhausted_after_the_policy_attempts() {
    always_500(Backend::Mysql).await;
}

/// A target that takes the request and never answers: each attempt ends at the attempt
/// timeout and is recorded as a timeout, and the policy's attempts are all made.
async fn never_answers(backend: Backend) {
    const TIMEOUT_MS: u64 = 300;
    let Some(mut service) = Service::start_with(backend, |s| {
        s.dispatcher.attempt_timeout_ms = TIMEOUT_MS;
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start_silent().await;
    let webhook = register(&service, &receiver.url()).await;
    publish(&service).await;

    let delivery = service
        .wait_for_delivery(webhook.id, DeliveryStateKind::Exhausted)
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(receiver.received().len(), 3, "one request per attempt");
    let attempts = service.attempts(&delivery).await;
    assert_eq!(
        outcomes(&attempts),
        (1..=3)
            .map(|n| (n, AttemptDetail::Timeout))
            .collect::<Vec<_>>()
    );
    let timeout = Duration::from_millis(TIMEOUT_MS);
    for attempt in &attempts {
        assert!(attempt.duration >= timeout, "{attempt:?}");
        assert!(attempt.error.is_some(), "{attempt:?}");
    }
    for gap in gaps(&attempts) {
        assert!(gap >= timeout + INTERVAL, "retried after {gap:?}");
    }
    service.stop().await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_is_exhausted() {
    never_answers(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_receiver_that_never_answers_times_out_and_is_exhausted() {
    never_answers(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_receiver_that_never_answers_times_out_and_is_exhausted() {
    never_answers(Backend::Mysql).await;
}

/// A port where nothing listens: each attempt is a failed connection, retried per policy.
async fn connection_refused(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let webhook = register(&service, &refusing_url()).await;
    publish(&service).await;

    let delivery = service
        .wait_for_delivery(webhook.id, DeliveryStateKind::Exhausted)
        .await;
    let attempts = service.attempts(&delivery).await;
    assert_eq!(
        outcomes(&attempts),
        (1..=3)
            .map(|n| (n, AttemptDetail::ConnectionFailed))
            .collect::<Vec<_>>()
    );
    for attempt in &attempts {
        assert_eq!(attempt.error.as_deref(), Some("connection refused"));
    }
    for gap in gaps(&attempts) {
        assert!(gap >= INTERVAL, "retried after {gap:?}");
    }
    service.stop().await;
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_exhausted() {
    connection_refused(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_refused_connection_is_retried_and_exhausted() {
    connection_refused(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_refused_connection_is_retried_and_exhausted() {
    connection_refused(Backend::Mysql).await;
}

/// 410 Gone: one attempt, the delivery is cancelled, the webhook disabled, and later events
/// make no delivery for it while another webhook of the wallet still gets them.
async fn gone(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let gone = Receiver::start(&[410]).await;
    let healthy = Receiver::start(&[]).await;
    let gone_hook = register(&service, &gone.url()).await;
    register(&service, &healthy.url()).await;
    let (_, deliveries) = publish_counted(&service).await;
    assert_eq!(deliveries, 2);

    let delivery = service
        .wait_for_delivery(gone_hook.id, DeliveryStateKind::Cancelled)
        .await;
    assert!(
        matches!(
            delivery.state(),
            DeliveryState::Cancelled {
                reason: CancelReason::TargetGone,
                ..
            }
        ),
        "{:?}",
        delivery.state()
    );
    assert_eq!(delivery.attempts(), 1);
    let attempts = service.attempts(&delivery).await;
    assert_eq!(outcomes(&attempts), [(1, response(410))]);

    // The webhook is disabled right after the outcome is recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while service.webhook(gone_hook.id).await.enabled {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook that answered 410 is still enabled after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_, deliveries) = publish_counted(&service).await;
    assert_eq!(
        deliveries, 1,
        "only the healthy webhook gets the later event"
    );
    healthy.wait_for(2).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(gone.received().len(), 1, "no request after the 410");
    service.stop().await;
}

#[tokio::test]
async fn a_410_cancels_and_disables_the_webhook() {
    gone(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_410_cancels_and_disables_the_webhook() {
    gone(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_410_cancels_and_disables_the_webhook() {
    gone(Backend::Mysql).await;
}

/// 429 with `Retry-After: 1`, then 200: the retry waits the second the target asked for, not
/// the policy's 100 ms.
async fn retry_after(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start_replies(&[Reply::status(429).header("retry-after", "1")]).await;
    let webhook = register(&service, &receiver.url()).await;
    publish(&service).await;

    let delivery = service
        .wait_for_delivery(webhook.id, DeliveryStateKind::Delivered)
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(receiver.received().len(), 2);
    let attempts = service.attempts(&delivery).await;
    let statuses: Vec<_> = attempts
        .iter()
        .map(|a| (a.number, a.detail.status()))
        .collect();
    assert_eq!(statuses, [(1, Some(429)), (2, Some(200))]);
    let gap = gaps(&attempts)[0];
    assert!(
        gap >= Duration::from_secs(1),
        "the retry came {gap:?} after the first attempt, before the Retry-After second"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_429_retry_after_is_honoured() {
    retry_after(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_429_retry_after_is_honoured() {
    retry_after(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_429_retry_after_is_honoured() {
    retry_after(Backend::Mysql).await;
}

/// A 200 whose body never ends: delivered, and only a bounded excerpt of the body is kept.
async fn endless_body(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start_replies(&[Reply::status(200).endless()]).await;
    let webhook = register(&service, &receiver.url()).await;
    publish(&service).await;

    let delivery = service
        .wait_for_delivery(webhook.id, DeliveryStateKind::Delivered)
        .await;
    let attempts = service.attempts(&delivery).await;
    assert_eq!(outcomes(&attempts), [(1, response(200))]);
    let excerpt = attempts[0].response_excerpt.as_deref().unwrap_or_default();
    assert!(
        excerpt.starts_with("xxxx") && excerpt.len() <= 4096,
        "an excerpt of {} bytes",
        excerpt.len()
    );
    assert_eq!(receiver.received().len(), 1);
    service.stop().await;
}

#[tokio::test]
async fn an_endless_body_is_delivered_with_a_bounded_excerpt() {
    endless_body(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_an_endless_body_is_delivered_with_a_bounded_excerpt() {
    endless_body(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_an_endless_body_is_delivered_with_a_bounded_excerpt() {
    endless_body(Backend::Mysql).await;
}

/// A 302 to another receiver is a failed answer like any other: not followed, recorded,
/// retried, exhausted.
async fn redirect(backend: Backend) {
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let elsewhere = Receiver::start(&[]).await;
    let moved = Reply::status(302).header("location", elsewhere.url());
    let receiver = Receiver::start_replies(&vec![moved; 10]).await;
    let webhook = register(&service, &receiver.url()).await;
    publish(&service).await;

    let delivery = service
        .wait_for_delivery(webhook.id, DeliveryStateKind::Exhausted)
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(receiver.received().len(), 3);
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
    let attempts = service.attempts(&delivery).await;
    assert_eq!(
        outcomes(&attempts),
        (1..=3).map(|n| (n, response(302))).collect::<Vec<_>>()
    );
    service.stop().await;
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_is_retried() {
    redirect(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_a_redirect_is_not_followed_and_is_retried() {
    redirect(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_a_redirect_is_not_followed_and_is_retried() {
    redirect(Backend::Mysql).await;
}

/// The global webhook from the Identus variables gets its API key as a bearer token; a wallet
/// webhook gets its custom headers and a signature made with the secret from its
/// registration; neither gets the other's headers.
async fn headers(backend: Backend) {
    const GLOBAL_KEY: &str = "global-api-key-0123";
    let global = Receiver::start(&[]).await;
    let global_url = global.url();
    let Some(mut service) = Service::start_with(backend, |s| {
        s.identus.global_webhook_url = Some(global_url);
        s.identus.global_webhook_api_key = Some(GLOBAL_KEY.to_owned());
    })
    .await
    else {
        return;
    };
    let wallet = Receiver::start(&[]).await;
    let webhook = register(&service, &wallet.url()).await;
    let (event_id, deliveries) = publish_counted(&service).await;
    assert_eq!(deliveries, 2, "the wallet webhook and the global one");

    let to_global = &global.wait_for(1).await[0];
    let to_wallet = &wallet.wait_for(1).await[0];
    for request in [to_global, to_wallet] {
        assert_eq!(request.headers["webhook-id"], event_id.as_str());
        assert_eq!(request.body, to_wallet.body, "the same envelope for both");
    }
    assert_eq!(
        to_global.headers["authorization"],
        format!("Bearer {GLOBAL_KEY}").as_str()
    );
    assert!(!to_global.headers.contains_key("x-team"));
    assert_eq!(to_wallet.headers["x-team"], "blue");
    assert!(!to_wallet.headers.contains_key("authorization"));
    assert_signed(to_wallet, &webhook.secret);
    service.stop().await;
}

#[tokio::test]
async fn the_global_webhook_gets_its_bearer_key_and_a_wallet_webhook_its_headers() {
    headers(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_the_global_webhook_gets_its_bearer_key_and_a_wallet_webhook_its_headers() {
    headers(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_the_global_webhook_gets_its_bearer_key_and_a_wallet_webhook_its_headers() {
    headers(Backend::Mysql).await;
}

/// The default wallet's webhook from `DEFAULT_WALLET_WEBHOOK_URL` and `_API_KEY`, created at the
/// wallet's creation, sends `Authorization: Bearer <key>`, as Identus does.
async fn default_wallet_env_webhook(backend: Backend) {
    const KEY: &str = "default-wallet-webhook-key";
    let receiver = Receiver::start(&[]).await;
    let url = receiver.url();
    let Some(mut service) = Service::start_with(backend, |s| {
        s.identus.default_wallet_webhook_url = Some(url);
        s.identus.default_wallet_webhook_api_key = Some(KEY.to_owned());
    })
    .await
    else {
        return;
    };
    let (event_id, deliveries) = publish_counted(&service).await;
    assert_eq!(deliveries, 1, "the env webhook of the default wallet");
    let request = &receiver.wait_for(1).await[0];
    assert_eq!(request.headers["webhook-id"], event_id.as_str());
    assert_eq!(
        request.headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    service.stop().await;
}

#[tokio::test]
async fn the_default_wallet_env_webhook_gets_its_bearer_key() {
    default_wallet_env_webhook(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_the_default_wallet_env_webhook_gets_its_bearer_key() {
    default_wallet_env_webhook(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_the_default_wallet_env_webhook_gets_its_bearer_key() {
    default_wallet_env_webhook(Backend::Mysql).await;
}
