//! A destination that is not HTTP, proved with a test-only in-memory one (`memory://<inbox>`),
//! registered with one line: it passes the destination contract suite, and the service
//! delivers to it end to end, with its own reading of outcomes in the attempt log.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hyper::StatusCode;
use webhook_adapters::DestinationKind;
use webhook_app::Extensions;
use webhook_domain::{
    AttemptDetail, AttemptOutcome, DeliveryStateKind, OutboundMessage, WebhookUrl,
};
use webhook_ports::contract::destination::{Answer, DestinationRig};
use webhook_ports::{AttemptReport, Destination};

use crate::utils::{Backend, Service, post_json, publish, publish_counted, register};

/// The in-memory destination in the registry's terms: the one line a service needs is
/// `Extensions::default().with_destination(memory::KIND)`.
pub const KIND: DestinationKind = DestinationKind {
    name: "in-memory",
    schemes: &["memory"],
    open: |_config| Ok(Arc::new(Memory) as Arc<dyn Destination>),
};

/// Every inbox by name (the URL's host): what it answers and what it took.
static INBOXES: LazyLock<Mutex<HashMap<String, Inbox>>> = LazyLock::new(Mutex::default);

#[derive(Debug, Clone)]
struct Inbox {
    answer: Answer,
    taken: Vec<OutboundMessage>,
}

/// Makes a new inbox that answers `answer`, and returns its URL.
fn inbox(answer: Answer) -> WebhookUrl {
    let name = format!("inbox-{}", uuid::Uuid::new_v4().simple());
    INBOXES.lock().unwrap().insert(
        name.clone(),
        Inbox {
            answer,
            taken: Vec::new(),
        },
    );
    WebhookUrl::parse_with_schemes(&format!("memory://{name}/"), KIND.schemes).unwrap()
}

fn taken(url: &WebhookUrl) -> Vec<OutboundMessage> {
    INBOXES
        .lock()
        .unwrap()
        .get(url.host())
        .map(|inbox| inbox.taken.clone())
        .unwrap_or_default()
}

/// Delivers into [`INBOXES`]. It has rules of its own: a full inbox asks to come back in a
/// second, a missing one is gone.
struct Memory;

#[async_trait]
impl Destination for Memory {
    async fn send(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
        timeout: Duration,
    ) -> AttemptReport {
        let answer = {
            let mut inboxes = INBOXES.lock().unwrap();
            match inboxes.get_mut(url.host()) {
                None => None,
                Some(inbox) => {
                    if matches!(inbox.answer, Answer::Take | Answer::Refuse) {
                        inbox.taken.push(message.clone());
                    }
                    Some(inbox.answer)
                }
            }
        };
        let report = |outcome, detail| AttemptReport {
            outcome,
            detail,
            duration: Duration::ZERO,
            response_excerpt: None,
            error: None,
        };
        match answer {
            Some(Answer::Take) => report(AttemptOutcome::Delivered, AttemptDetail::Accepted),
            Some(Answer::Refuse) => report(AttemptOutcome::Rejected, AttemptDetail::Declined),
            Some(Answer::Unavailable) => report(
                AttemptOutcome::RetryLater {
                    not_before: Some(Duration::from_secs(1)),
                },
                AttemptDetail::Declined,
            ),
            Some(Answer::Gone) | None => report(AttemptOutcome::Gone, AttemptDetail::Declined),
            Some(Answer::Stall) => {
                tokio::time::sleep(timeout).await;
                AttemptReport {
                    error: Some(format!("no answer within {} ms", timeout.as_millis())),
                    ..AttemptReport::of(AttemptDetail::Timeout, timeout)
                }
            }
        }
    }
}

struct MemoryRig;

async fn rig() -> MemoryRig {
    MemoryRig
}

#[async_trait]
impl DestinationRig for MemoryRig {
    fn destination(&self, _guarded: bool) -> Arc<dyn Destination> {
        (KIND.open)(&webhook_adapters::TransportConfig::default()).unwrap()
    }

    async fn target(&self, answer: Answer) -> WebhookUrl {
        inbox(answer)
    }

    async fn received(&self, target: &WebhookUrl) -> Vec<OutboundMessage> {
        taken(target)
    }

    fn is_network(&self) -> bool {
        false
    }
}

webhook_ports::destination_contract_suite!(rig);

async fn service(backend: Backend) -> Option<Service> {
    Service::start_extended(
        backend,
        Extensions::default().with_destination(KIND),
        |_| {},
    )
    .await
}

#[tokio::test]
async fn events_reach_an_in_memory_destination() {
    delivered_in_memory(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_events_reach_an_in_memory_destination() {
    delivered_in_memory(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_events_reach_an_in_memory_destination() {
    delivered_in_memory(Backend::Mysql).await;
}

async fn delivered_in_memory(backend: Backend) {
    let Some(mut service) = service(backend).await else {
        return;
    };
    let url = inbox(Answer::Take);
    let webhook = register(&service, url.as_str()).await;
    let event_id = publish(&service).await;
    let delivery = service
        .wait_for_delivery(webhook.id, DeliveryStateKind::Delivered)
        .await;
    let taken = taken(&url);
    assert_eq!(taken.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&taken[0].body).unwrap();
    assert_eq!(body["id"], event_id.as_str());
    assert_eq!(body["type"], "ConnectionUpdated");
    assert!(
        taken[0]
            .headers
            .iter()
            .any(|(n, v)| n == "webhook-id" && *v == event_id),
        "{:?}",
        taken[0].headers
    );
    let attempts = service.attempts(&delivery).await;
    assert_eq!(
        attempts.iter().map(|a| a.detail).collect::<Vec<_>>(),
        [AttemptDetail::Accepted]
    );
    service.stop().await;
}

/// A refusal is retried as the policy says and logged as `declined`; a gone inbox cancels the
/// delivery and disables the webhook, as a 410 does over HTTP.
#[tokio::test]
async fn an_in_memory_destinations_own_outcomes_drive_retries_and_disabling() {
    let mut service = service(Backend::Sqlite).await.unwrap();
    let refusing = inbox(Answer::Refuse);
    let refused = register(&service, refusing.as_str()).await;
    let gone = inbox(Answer::Gone);
    let gone_webhook = register(&service, gone.as_str()).await;
    let (_, deliveries) = publish_counted(&service).await;
    assert_eq!(deliveries, 2);
    let exhausted = service
        .wait_for_delivery(refused.id, DeliveryStateKind::Exhausted)
        .await;
    let details: Vec<_> = service
        .attempts(&exhausted)
        .await
        .iter()
        .map(|a| a.detail)
        .collect();
    // The service's test policy allows 3 attempts.
    assert_eq!(details, [AttemptDetail::Declined; 3]);
    assert_eq!(taken(&refusing).len(), 3);
    service
        .wait_for_delivery(gone_webhook.id, DeliveryStateKind::Cancelled)
        .await;
    assert!(!service.webhook(gone_webhook.id).await.enabled);
    service.stop().await;
}

/// Without the extension, the scheme is refused at registration with the schemes that are
/// served, and nothing is stored.
#[tokio::test]
async fn a_scheme_no_destination_serves_is_refused_at_registration() {
    let mut service = Service::start().await;
    let answer = post_json(
        &service.url("/events/webhooks"),
        serde_json::json!({ "url": inbox(Answer::Take).as_str() }),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.json
    );
    assert_eq!(
        answer.json["detail"],
        "url: scheme \"memory\" is not allowed; use http, https, nats, amqp or amqps"
    );
    let listed = crate::utils::call(
        "GET",
        &service.url("/events/webhooks"),
        &[("apikey", crate::utils::API_KEY)],
        "",
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(
        listed.json["contents"],
        serde_json::json!([]),
        "nothing was stored"
    );
    service.stop().await;
}
