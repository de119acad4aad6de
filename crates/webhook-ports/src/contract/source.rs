//! The contract suite of the [`EventSource`] port: one function per `MUST` of
//! [`EventSource::run`], run against every source through a [`SourceRig`], and
//! [`source_contract_suite!`](crate::source_contract_suite), which makes one test of each. A
//! source's tests implement the rig (input of its own on the real broker: a stream, a queue)
//! and write one line.
//!
//! The suite runs the source alone against a [`ScriptedSink`], which stands for the publishing
//! service: it records each publish, can hold every publish until it is released, can answer
//! transient errors first, and keeps what the source reported as refused. What a rule says of
//! acknowledgements, the suite reads from the broker itself, through the rig. Waits have a
//! deadline only so that a broken source fails instead of hanging; no rule is timed.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::watch;
use webhook_domain::EventId;

use crate::{
    EventSource, PublishError, PublishEvents, PublishItem, Published, Refusal, Shutdown,
    SourceError, SourceKind,
};

/// One message to put into a source's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The broker's own id of the message (JetStream's `Nats-Msg-Id`, AMQP's `message-id`), if
    /// it has one. Two messages with the same id are the same message put twice.
    pub id: Option<String>,
    /// The body: an event as `{"type": ..., "data": ...}`, or anything else.
    pub body: Vec<u8>,
    /// The message's headers.
    pub headers: Vec<(String, String)>,
}

impl Message {
    /// A message carrying the event `{"type": "contract.test", "data": {"n": n}}`.
    pub fn event(n: u64) -> Self {
        Self {
            id: None,
            body: json!({"type": EVENT_TYPE, "data": {"n": n}})
                .to_string()
                .into_bytes(),
            headers: Vec::new(),
        }
    }

    /// The same message with the broker message id `id`.
    pub fn with_id(self, id: &str) -> Self {
        Self {
            id: Some(id.to_owned()),
            ..self
        }
    }
}

/// The type of every event the suite puts.
pub const EVENT_TYPE: &str = "contract.test";

/// What the broker still holds of a source's input: messages it has not delivered yet, and
/// messages delivered but neither acknowledged nor refused. Both zero: everything is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsettled {
    /// Not handed to any consumer yet.
    pub undelivered: usize,
    /// Handed to a consumer, and neither acknowledged nor refused (terminated, rejected).
    pub unacknowledged: usize,
}

impl Unsettled {
    /// Everything not yet acknowledged or refused.
    pub fn total(&self) -> usize {
        self.undelivered + self.unacknowledged
    }
}

/// What a source's tests hand the suite.
#[async_trait]
pub trait SourceRig: Send + Sync {
    /// The kind under test, as it is registered.
    fn kind(&self) -> SourceKind;
    /// The URL of a source (of [`kind`](Self::kind)) on new, empty input of its own (a stream,
    /// a queue) that nothing else reads, taking at most `batch` messages at a time (its batch
    /// or prefetch size). Its events go to one wallet, and each takes its id from the
    /// message's broker id when it has one.
    async fn source_url(&self, batch: usize) -> String;
    /// Puts `messages` into the input of `source`, in order, and returns once the broker holds
    /// them all. A message whose id was put before is kept too (the broker's own
    /// de-duplication, if any, is off): it stands for the same message delivered again.
    async fn put(&self, source: &str, messages: &[Message]);
    /// What the broker holds of the input of `source`, as the broker counts it.
    async fn unsettled(&self, source: &str) -> Unsettled;
}

/// How long a wait may last before the rule fails: a deadline, not a measure.
const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

/// Waits until `condition` holds, or fails naming `what` after [`PATIENCE`].
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not after {PATIENCE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The publishing service as the suite scripts it.
#[derive(Debug)]
pub struct ScriptedSink {
    /// Every publish, in order, as it was called.
    calls: Mutex<Vec<Vec<PublishItem>>>,
    /// The items of every publish answered `Ok`, in order.
    published: Mutex<Vec<PublishItem>>,
    refusals: Mutex<Vec<Refusal>>,
    /// How many publishes are still to be answered `Unavailable`, at once.
    transient: Mutex<usize>,
    /// Whether publishes (other than those answered `Unavailable`) answer; while not, each
    /// waits.
    open: watch::Sender<bool>,
}

impl ScriptedSink {
    /// A sink that answers every publish at once, `Ok`.
    pub fn answering() -> Self {
        Self::with_gate(true)
    }

    /// A sink that holds every publish until [`release`](Self::release).
    pub fn holding() -> Self {
        Self::with_gate(false)
    }

    fn with_gate(open: bool) -> Self {
        Self {
            calls: Mutex::default(),
            published: Mutex::default(),
            refusals: Mutex::default(),
            transient: Mutex::new(0),
            open: watch::Sender::new(open),
        }
    }

    /// The same sink, answering its first `count` publishes `Unavailable` (a transient error),
    /// at once.
    pub fn after_transient_errors(self, count: usize) -> Self {
        *self.transient.lock().unwrap() = count;
        self
    }

    /// Answers every publish held so far and every one to come.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// The items of every publish so far, answered or not, in order.
    pub fn calls(&self) -> Vec<Vec<PublishItem>> {
        self.calls.lock().unwrap().clone()
    }

    /// The items of the publishes answered `Ok`, in order.
    pub fn published(&self) -> Vec<PublishItem> {
        self.published.lock().unwrap().clone()
    }

    /// What the source reported through `refused`, in order.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.refusals.lock().unwrap().clone()
    }

    /// Waits until the source has called `publish` `count` times (answered or not).
    pub async fn wait_for_calls(&self, count: usize) {
        wait_until(&format!("{count} publishes"), || async {
            self.calls.lock().unwrap().len() >= count
        })
        .await;
    }
}

#[async_trait]
impl PublishEvents for ScriptedSink {
    async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        self.calls.lock().unwrap().push(items.clone());
        {
            let mut transient = self.transient.lock().unwrap();
            if *transient > 0 {
                *transient -= 1;
                return Err(PublishError::Unavailable("the database is down".into()));
            }
        }
        let mut open = self.open.subscribe();
        // The sender lives as long as `self`: the wait ends only with a release.
        let _ = open.wait_for(|open| *open).await;
        let mut published = self.published.lock().unwrap();
        let seen: HashSet<EventId> = published.iter().map(|i| i.event.id()).collect();
        let answers = items
            .iter()
            .map(|item| Published {
                event_id: item.event.id(),
                deliveries: 0,
                replayed: seen.contains(&item.event.id()),
            })
            .collect();
        published.extend(items);
        Ok(answers)
    }

    fn refused(&self, refusal: Refusal) {
        self.refusals.lock().unwrap().push(refusal);
    }
}

/// A source running alone against a sink.
#[derive(Debug)]
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
}

impl Running {
    /// Opens the source of `url` with the rig's kind and runs it against `sink`.
    fn start(rig: &impl SourceRig, url: &str, sink: Arc<ScriptedSink>) -> Self {
        let kind = rig.kind();
        assert!(kind.serves(url), "{} does not serve {url}", kind.name);
        let source: Box<dyn EventSource> = (kind.open)(url).unwrap_or_else(|why| {
            panic!("{} refused {url}: {why}", kind.name);
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::new(async {
            let _ = stopped.await;
        });
        Self {
            stop,
            task: tokio::spawn(source.run(sink, shutdown)),
        }
    }

    /// Resolves the shutdown and waits for `run` to return `Ok`.
    async fn stop(self) {
        let _ = self.stop.send(());
        let returned = tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap_or_else(|_| panic!("run did not return after the shutdown ({PATIENCE:?})"));
        returned.unwrap().unwrap();
    }
}

async fn wait_settled(rig: &impl SourceRig, url: &str) {
    wait_until("everything acknowledged or refused", || async {
        rig.unsettled(url).await.total() == 0
    })
    .await;
}

fn data_n(item: &PublishItem) -> u64 {
    item.event.data()["n"].as_u64().unwrap()
}

fn ids(items: &[PublishItem]) -> Vec<EventId> {
    items.iter().map(|item| item.event.id()).collect()
}

/// MUST hand each message to the sink as one event with the body's type and data, and give
/// the same message (the same broker id) the same event id each time it comes: a replay, not
/// a second event.
pub async fn a_message_is_one_event_and_the_same_message_the_same_event(rig: &impl SourceRig) {
    let url = rig.source_url(10).await;
    let mut first = Message::event(1).with_id("contract-first");
    first.headers.push(("x-contract".into(), "kept".into()));
    rig.put(
        &url,
        &[
            first.clone(),
            Message::event(2).with_id("contract-second"),
            Message::event(3),
            first,
        ],
    )
    .await;
    let sink = Arc::new(ScriptedSink::answering());
    let running = Running::start(rig, &url, sink.clone());
    wait_until("4 events published", || async {
        sink.published().len() >= 4
    })
    .await;
    wait_settled(rig, &url).await;
    running.stop().await;

    let published = sink.published();
    assert_eq!(published.len(), 4, "{published:?}");
    for item in &published {
        assert_eq!(item.event.event_type().as_str(), EVENT_TYPE);
    }
    let mut numbers: Vec<u64> = published.iter().map(data_n).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 1, 2, 3]);
    let id_of = |n| -> BTreeSet<EventId> {
        published
            .iter()
            .filter(|item| data_n(item) == n)
            .map(|item| item.event.id())
            .collect()
    };
    assert_eq!(id_of(1).len(), 1, "the same message must be the same event");
    let all: BTreeSet<EventId> = ids(&published).into_iter().collect();
    assert_eq!(all.len(), 3, "different messages must be different events");
}

/// MUST NOT acknowledge a message before the sink's publish of it returned: while it is held
/// the broker still counts the message, and once the sink answers it is settled.
pub async fn nothing_is_acknowledged_before_its_publish_returns(rig: &impl SourceRig) {
    let url = rig.source_url(10).await;
    rig.put(&url, &[Message::event(1)]).await;
    let sink = Arc::new(ScriptedSink::holding());
    let running = Running::start(rig, &url, sink.clone());
    sink.wait_for_calls(1).await;
    assert_eq!(
        rig.unsettled(&url).await.total(),
        1,
        "acknowledged while its publish was held"
    );
    sink.release();
    wait_settled(rig, &url).await;
    assert_eq!(ids(&sink.published()), ids(&sink.calls()[0]));
    running.stop().await;
}

/// MUST hold back while a publish is outstanding: a source takes at most one batch from its
/// broker before the sink answers, and the rest of a backlog stays in the broker.
pub async fn a_held_publish_leaves_all_but_one_batch_in_the_broker(rig: &impl SourceRig) {
    const BATCH: usize = 50;
    const BACKLOG: u64 = 1000;
    let url = rig.source_url(BATCH).await;
    let messages: Vec<Message> = (0..BACKLOG).map(Message::event).collect();
    rig.put(&url, &messages).await;
    let sink = Arc::new(ScriptedSink::holding());
    let running = Running::start(rig, &url, sink.clone());
    sink.wait_for_calls(1).await;
    let handed: usize = sink.calls().iter().map(Vec::len).sum();
    assert!(handed <= BATCH, "{handed} events handed over at once");
    let unsettled = rig.unsettled(&url).await;
    assert_eq!(unsettled.total(), messages.len(), "{unsettled:?}");
    assert!(
        unsettled.unacknowledged <= BATCH,
        "the source took more than one batch: {unsettled:?}"
    );

    sink.release();
    wait_until("the whole backlog published", || async {
        sink.published().len() >= messages.len()
    })
    .await;
    wait_settled(rig, &url).await;
    running.stop().await;
    let published = sink.published();
    let numbers: BTreeSet<u64> = published.iter().map(data_n).collect();
    assert_eq!(numbers, (0..BACKLOG).collect());
    assert_eq!(published.len(), messages.len(), "some published twice");
}

/// MUST keep a message unacknowledged while the sink answers a transient error, and publish
/// the same events (the same ids) again.
pub async fn a_transient_error_publishes_the_same_events_again(rig: &impl SourceRig) {
    let url = rig.source_url(10).await;
    rig.put(&url, &[Message::event(1), Message::event(2)]).await;
    let sink = Arc::new(ScriptedSink::holding().after_transient_errors(2));
    let running = Running::start(rig, &url, sink.clone());
    // Two refused at once, the third held.
    sink.wait_for_calls(3).await;
    let calls = sink.calls();
    assert_eq!(ids(&calls[1]), ids(&calls[0]), "a retry changed the events");
    assert_eq!(ids(&calls[2]), ids(&calls[0]), "a retry changed the events");
    assert_eq!(
        rig.unsettled(&url).await.total(),
        2,
        "acknowledged after a transient error"
    );
    sink.release();
    wait_settled(rig, &url).await;
    running.stop().await;
    let published = sink.published();
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(ids(&published[..calls[0].len()]), ids(&calls[0]));
}

/// MUST settle a message that can never be published (refuse it at the broker: terminate,
/// reject; it does not come again) and report it through `PublishEvents::refused` with its
/// reason, and go on with the messages around it.
pub async fn a_message_that_can_never_be_published_is_settled_and_reported(rig: &impl SourceRig) {
    let url = rig.source_url(10).await;
    let bad = Message {
        id: None,
        body: b"this is not an event".to_vec(),
        headers: Vec::new(),
    };
    rig.put(&url, &[Message::event(1), bad, Message::event(3)])
        .await;
    let sink = Arc::new(ScriptedSink::answering());
    let running = Running::start(rig, &url, sink.clone());
    wait_until("the valid events published", || async {
        sink.published().len() >= 2
    })
    .await;
    wait_settled(rig, &url).await;
    running.stop().await;
    let numbers: Vec<u64> = sink.published().iter().map(data_n).collect();
    assert_eq!(numbers, [1, 3]);
    let refusals = sink.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let refusal = &refusals[0];
    assert!(
        !refusal.source.is_empty() && !refusal.input.is_empty() && !refusal.reason.is_empty(),
        "{refusal:?}"
    );
}

/// MUST return soon after the shutdown, also while a publish is held, and acknowledge
/// nothing it has not published: its input is still in the broker.
pub async fn a_shutdown_stops_a_held_publish_and_acknowledges_nothing(rig: &impl SourceRig) {
    let url = rig.source_url(10).await;
    rig.put(
        &url,
        &[Message::event(1), Message::event(2), Message::event(3)],
    )
    .await;
    let sink = Arc::new(ScriptedSink::holding());
    let running = Running::start(rig, &url, sink.clone());
    sink.wait_for_calls(1).await;
    running.stop().await;
    assert!(sink.published().is_empty());
    assert_eq!(
        rig.unsettled(&url).await.total(),
        3,
        "acknowledged without a publish"
    );
}

/// One test per rule of the [`EventSource`] contract against the rig that `$rig()` (an async
/// function) builds. The tests need `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! source_contract_suite {
    ($rig:path) => {
        $crate::source_contract_suite!(@tests $rig;
            a_message_is_one_event_and_the_same_message_the_same_event
            nothing_is_acknowledged_before_its_publish_returns
            a_held_publish_leaves_all_but_one_batch_in_the_broker
            a_transient_error_publishes_the_same_events_again
            a_message_that_can_never_be_published_is_settled_and_reported
            a_shutdown_stops_a_held_publish_and_acknowledges_nothing
        );
    };
    (@tests $rig:path; $($rule:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                let rig = $rig().await;
                $crate::contract::source::$rule(&rig).await;
            }
        )*
    };
}
