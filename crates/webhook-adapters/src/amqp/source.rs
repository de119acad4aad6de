//! Events from a RabbitMQ queue: `amqp://user:password@host:port/vhost?queue=NAME`, with
//! `prefetch=` (unacknowledged messages the broker hands over at once, default 100) and the
//! mapping of `inbound` (`wallet`, `wallet_from` with the routing key's tokens as the
//! subject's, `id_from`).
//!
//! A consumer with manual acknowledgements: what the broker has handed over (at most the
//! prefetch limit) is published together, and only then is each message acknowledged
//! (published) or rejected without requeue (it can never be published; a dead-letter exchange
//! on the queue catches it). A slow or absent database therefore holds at most `prefetch`
//! messages here; the rest stays in the queue. The queue is the operator's: it is never
//! declared here.
//!
//! A message's event id derives from its `message-id` property, so a message delivered again
//! after a crash or a lost acknowledgement is replayed rather than stored twice. A message
//! without one gets a new id each time it is delivered: producers that may be redelivered
//! should set `message-id` (or name a header with `id_from=header:<name>`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, Consumer};
use url::Url;
use webhook_ports::{EventSource, PublishEvents, Shutdown, SourceError};

use super::{describe, vhost_of};
use crate::brokers::Secret;
use crate::inbound::{self, Inbound, Mapping, Verdict};

/// Wait before connecting again after the connection or the consumer failed.
const RECONNECT: Duration = Duration::from_millis(500);
/// The longest wait for the broker to take the acknowledgements of a batch, or to set up a
/// consumer: an operation on a connection that died under it may never complete.
const BROKER_OPERATION: Duration = Duration::from_secs(10);
/// How often a wait for messages checks that the connection is still up.
const CONNECTION_CHECK: Duration = Duration::from_secs(1);
const DEFAULT_PREFETCH: u16 = 100;
const MAX_PREFETCH: u16 = 1000;

#[derive(Debug)]
pub(crate) struct AmqpSource {
    /// Where to connect; its `Debug` would show the password, so the struct's own `Debug` is
    /// only used in tests and `name` goes into logs.
    uri: Secret<AMQPUri>,
    queue: String,
    prefetch: u16,
    mapping: Mapping,
    /// The source in logs and refusal reports, without credentials.
    name: String,
}

impl AmqpSource {
    pub(crate) fn open(url: &str) -> Result<Box<dyn EventSource>, String> {
        Ok(Box::new(Self::parse(url)?))
    }

    fn parse(url: &str) -> Result<Self, String> {
        let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let tls = parsed.scheme() == "amqps";
        let host = crate::brokers::host_of(&parsed)
            .filter(|h| !h.is_empty())
            .ok_or("the URL needs the broker's host: amqp://host:5672/vhost?queue=NAME")?;
        let port = parsed
            .port()
            .or_else(|| crate::brokers::default_port(parsed.scheme()))
            .unwrap_or(5672);
        let vhost = vhost_of(&parsed)?;
        let mut queue = None;
        let mut prefetch = DEFAULT_PREFETCH;
        for (name, value) in parsed.query_pairs() {
            match &*name {
                "queue" => queue = Some(value.into_owned()),
                "prefetch" => {
                    prefetch = value
                        .parse()
                        .ok()
                        .filter(|p| (1..=MAX_PREFETCH).contains(p))
                        .ok_or(format!(
                            "prefetch={value:?}: a number from 1 to {MAX_PREFETCH}"
                        ))?;
                }
                _ => {}
            }
        }
        let queue = queue
            .filter(|q| !q.is_empty() && q.len() <= 255)
            .ok_or("the URL needs queue=NAME, the queue to consume (at most 255 bytes)")?;
        let decode = |text: &str| {
            crate::brokers::percent_decode(text)
                .ok_or_else(|| "the credentials are not valid percent-encoded UTF-8".to_owned())
        };
        let username = match parsed.username() {
            "" => "guest".to_owned(),
            user => decode(user)?,
        };
        let password = decode(parsed.password().unwrap_or("guest"))?;
        let server = if host.contains(':') {
            format!("{}://[{host}]:{port}", parsed.scheme())
        } else {
            format!("{}://{host}:{port}", parsed.scheme())
        };
        let name = format!("{server}/{}?queue={queue}", super::vhost_segment(&vhost));
        let mapping = Mapping::of_url(
            &parsed,
            &["queue", "prefetch"],
            format!("amqp {server}/{vhost}/{queue}"),
        )?;
        let uri = super::uri(tls, host, port, (username, password), vhost);
        Ok(Self {
            uri: Secret(uri),
            queue,
            prefetch,
            mapping,
            name,
        })
    }

    /// A consumer on the queue, once the broker answers and the queue exists. The connection
    /// comes along: the consumer stops when it is dropped.
    async fn consumer(&self) -> Result<(Connection, Consumer), String> {
        let properties =
            ConnectionProperties::default().with_connection_name("webhookd source".into());
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect_uri(self.uri.0.clone(), properties),
        )
        .await
        .map_err(|_| "no connection within 5 s".to_owned())?
        .map_err(|e| format!("cannot connect: {}", describe(&e)))?;
        let consume = async {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(self.prefetch, BasicQosOptions::default())
                .await?;
            channel
                .basic_consume(
                    ShortString::try_new(self.queue.as_str()).unwrap_or_default(),
                    "webhookd".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        match tokio::time::timeout(BROKER_OPERATION, consume).await {
            Ok(Ok(consumer)) => Ok((connection, consumer)),
            Ok(Err(e)) => Err(format!("queue {:?}: {}", self.queue, describe(&e))),
            Err(_) => Err(format!(
                "queue {:?}: no consumer within {} s",
                self.queue,
                BROKER_OPERATION.as_secs()
            )),
        }
    }

    /// Waits for the next messages (at most `prefetch`, all that have arrived) and publishes
    /// them; `false` at shutdown.
    async fn one_batch(
        &self,
        connection: &Connection,
        consumer: &mut Consumer,
        sink: &Arc<dyn PublishEvents>,
        shutdown: &mut Shutdown,
    ) -> Result<bool, String> {
        let first = tokio::select! {
            () = &mut *shutdown => return Ok(false),
            next = consumer.next() => next,
            // A consumer whose connection died may never end: notice it.
            () = lost(connection) => return Err("the connection to the broker was lost".into()),
        };
        let mut deliveries = vec![
            first
                .ok_or("the broker ended the consumer")?
                .map_err(|e| describe(&e))?,
        ];
        while deliveries.len() < usize::from(self.prefetch) {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => deliveries.push(delivery),
                Some(Some(Err(e))) => return Err(describe(&e)),
                Some(None) => return Err("the broker ended the consumer".into()),
                None => break,
            }
        }
        let batch = deliveries
            .iter()
            .map(|delivery| {
                let input = format!(
                    "exchange {:?} routing key {:?} delivery {}",
                    delivery.exchange.as_str(),
                    delivery.routing_key.as_str(),
                    delivery.delivery_tag
                );
                let message_id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned())
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let header = |name: &str| header(delivery, name);
                let item = self.mapping.item(&Inbound {
                    message_id,
                    subject: delivery.routing_key.as_str(),
                    header: &header,
                    body: &delivery.data,
                });
                (input, item)
            })
            .collect::<Vec<_>>();
        let inputs: Vec<String> = batch.iter().map(|(input, _)| input.clone()).collect();
        let Some(verdicts) = inbound::publish(sink, &self.name, batch, shutdown).await else {
            return Ok(false);
        };
        let answers = async {
            for ((delivery, verdict), input) in deliveries.iter().zip(verdicts).zip(inputs) {
                let answered = match &verdict {
                    Verdict::Published => delivery.ack(BasicAckOptions::default()).await,
                    Verdict::Refused(reason) => {
                        tracing::warn!(source = %self.name, %input, %reason, "event source rejected a message it cannot publish");
                        delivery.reject(BasicRejectOptions { requeue: false }).await
                    }
                };
                // A lost acknowledgement only means the message comes again, and is replayed.
                // The connection is gone with it: the rest would fail too, or never answer.
                if let Err(e) = answered {
                    tracing::warn!(source = %self.name, %input, error = %describe(&e), "acknowledgement not sent; the message will come again");
                    return Err(format!("acknowledgement failed: {}", describe(&e)));
                }
            }
            Ok(true)
        };
        tokio::time::timeout(BROKER_OPERATION, answers)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the broker took no acknowledgement within {} s",
                    BROKER_OPERATION.as_secs()
                ))
            })
    }
}

/// Ends once `connection` is no longer connected (closed, or failed under its I/O loop).
async fn lost(connection: &Connection) {
    while connection.status().connected() {
        tokio::time::sleep(CONNECTION_CHECK).await;
    }
}

/// A header's value by name, in any case, when it is text or a number.
fn header(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    let (_, value) = headers
        .inner()
        .iter()
        .find(|(key, _)| key.as_str().eq_ignore_ascii_case(name))?;
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        AMQPValue::ByteArray(bytes) => Some(String::from_utf8_lossy(bytes.as_slice()).into_owned()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        _ => None,
    }
}

#[async_trait]
impl EventSource for AmqpSource {
    async fn run(
        self: Box<Self>,
        sink: Arc<dyn PublishEvents>,
        mut shutdown: Shutdown,
    ) -> Result<(), SourceError> {
        let mut warned = false;
        loop {
            let consumer = tokio::select! {
                () = &mut shutdown => return Ok(()),
                consumer = self.consumer() => consumer,
            };
            match consumer {
                Ok((connection, mut consumer)) => {
                    tracing::info!(source = %self.name, "consuming");
                    warned = false;
                    loop {
                        match self
                            .one_batch(&connection, &mut consumer, &sink, &mut shutdown)
                            .await
                        {
                            Ok(true) => {}
                            Ok(false) => {
                                // Unacknowledged messages go back to the queue with the
                                // connection.
                                let _ = connection.close(200, "shutdown".into()).await;
                                return Ok(());
                            }
                            Err(why) => {
                                tracing::warn!(source = %self.name, error = %why, "consumer failed; connecting again");
                                // A channel error leaves the connection open: close it, or
                                // each reconnection would leave one behind.
                                let _ = connection.close(200, "reconnecting".into()).await;
                                break;
                            }
                        }
                    }
                }
                Err(why) if !warned => {
                    tracing::warn!(source = %self.name, error = %why, "not consuming yet; trying again until it works");
                    warned = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(RECONNECT) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_url_names_its_queue_and_hides_its_credentials() {
        let source = AmqpSource::parse("amqp://app:s%40cret@127.0.0.1:5672/tenants?queue=events&prefetch=10&wallet_from=subject:1").unwrap();
        let shown = format!("{source:?}");
        assert!(
            !shown.contains("s@cret") && !shown.contains("s%40cret"),
            "{shown}"
        );
        assert!(
            shown.contains("amqp://127.0.0.1:5672/tenants?queue=events"),
            "{shown}"
        );
        for bad in [
            "amqp://127.0.0.1/%2f",
            "amqp://127.0.0.1/%2f?queue=",
            "amqp://127.0.0.1/%2f?queue=q&prefetch=0",
            "amqp://127.0.0.1/%2f?queue=q&prefetch=1001",
            "amqp://127.0.0.1/%2f?queue=q&color=red",
            "amqp:///%2f?queue=q",
        ] {
            assert!(AmqpSource::open(bad).is_err(), "{bad}");
        }
    }
}
