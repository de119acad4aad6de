//! Deliveries to a RabbitMQ exchange: `amqp://host:port/vhost?exchange=E&routing_key=K`. Each
//! message is published persistent (delivery mode 2) and mandatory on a channel in confirm
//! mode, its headers the HTTP request's (the Standard Webhooks signature among them), its
//! `message-id` the event id, so a consumer can drop a message sent again after an attempt
//! whose confirmation was lost.
//!
//! What the broker answers becomes the attempt's outcome: a confirmation delivers; a message
//! returned because no queue is bound for its routing key, or an exchange that does not exist,
//! is rejected with that reason; a negative confirmation, a closed connection or no answer
//! asks to come back.
//!
//! One connection per broker and virtual host, one confirm channel per exchange on it, made at
//! the first attempt and made again when the broker closed them. It connects only to a broker
//! of `transport.brokers`, at the address the SSRF guard allowed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind};
use tokio::sync::Mutex;
use url::Url;
use webhook_domain::{AttemptDetail, AttemptOutcome, OutboundMessage, WebhookUrl};
use webhook_ports::{AttemptReport, Destination};

use super::{describe, vhost_of};
use crate::brokers::{self, Broker, BrokerList};
use crate::{Egress, TransportConfig};

/// Delivery mode 2: the broker writes the message to disk in a durable queue.
const PERSISTENT: u8 = 2;
/// The most channels kept open on one connection (one per exchange named by some target):
/// tenants choose exchange names, so the kept ones are bounded; past the bound one of them
/// is closed to make room.
const MAX_KEPT_CHANNELS: usize = 64;

pub(crate) struct AmqpDestination {
    brokers: BrokerList,
    egress: Egress,
    connect_timeout: Duration,
    /// `transport`'s extra root certificates, PEM, trusted for `amqps://` besides the webpki
    /// roots.
    extra_roots: Option<String>,
    /// Per broker and virtual host: its connection and a confirm channel per exchange, each
    /// behind a lock of its own, so that connecting to one broker (up to the connect timeout)
    /// holds up no attempt to another.
    links: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<Link>>>>>,
}

/// One connection and its channels.
struct Link {
    connection: Connection,
    channels: HashMap<String, Channel>,
}

impl std::fmt::Debug for AmqpDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpDestination")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

/// Where a target publishes: the virtual host, the exchange (empty: the default exchange,
/// which routes to the queue the routing key names) and the routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) vhost: String,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
}

/// The route a target URL names, or what is wrong with it.
pub(crate) fn route_of(url: &Url) -> Result<Route, String> {
    let vhost = vhost_of(url)?;
    let mut exchange = None;
    let mut routing_key = String::new();
    for (name, value) in url.query_pairs() {
        match &*name {
            "exchange" => exchange = Some(value.into_owned()),
            "routing_key" => routing_key = value.into_owned(),
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; an amqp:// target takes exchange and routing_key"
                ));
            }
        }
    }
    let exchange = exchange.ok_or(
        "an amqp:// target names its exchange: amqp://host:5672/vhost?exchange=E&routing_key=K \
         (exchange= with no name is the default exchange, routing to the queue named by the key)",
    )?;
    for (what, text) in [("exchange", &exchange), ("routing_key", &routing_key)] {
        if text.len() > 255 {
            return Err(format!("{what} is longer than 255 bytes"));
        }
        if text.chars().any(char::is_control) {
            return Err(format!("{what} contains a control character"));
        }
    }
    if exchange.is_empty() && routing_key.is_empty() {
        return Err(
            "with the default exchange (exchange= with no name), routing_key names the queue"
                .into(),
        );
    }
    Ok(Route {
        vhost,
        exchange,
        routing_key,
    })
}

/// A short string the route already checked the length of.
fn short(text: &str) -> ShortString {
    ShortString::try_new(text).unwrap_or_default()
}

/// The report of an attempt the broker could not take now (a negative confirmation, a
/// closed channel or connection): asks to come back, whatever `detail` would say alone.
fn failed(detail: AttemptDetail, why: String) -> AttemptReport {
    AttemptReport {
        outcome: AttemptOutcome::RetryLater { not_before: None },
        error: Some(why),
        ..AttemptReport::of(detail, Duration::ZERO)
    }
}

/// The report for a broker error: an exchange that does not exist is rejected with that reason,
/// anything else asks to come back.
fn broker_error(error: &lapin::Error, route: &Route, stage: &str) -> AttemptReport {
    match error.kind() {
        ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)) =>
        {
            AttemptReport {
                outcome: AttemptOutcome::Rejected,
                error: Some(format!(
                    "exchange {:?} does not exist in virtual host {:?}",
                    route.exchange, route.vhost
                )),
                ..AttemptReport::of(AttemptDetail::Declined, Duration::ZERO)
            }
        }
        ErrorKind::ProtocolError(amqp) => failed(
            AttemptDetail::Declined,
            format!(
                "{stage}: the broker closed the channel: {}",
                amqp.get_message()
            ),
        ),
        ErrorKind::IOError(io) => failed(
            AttemptDetail::ConnectionFailed,
            format!("{stage}: connection lost: {}", io.kind()),
        ),
        _ => failed(
            AttemptDetail::ConnectionFailed,
            format!("{stage}: {}", describe(error)),
        ),
    }
}

impl AmqpDestination {
    pub(crate) fn new(config: &TransportConfig) -> Result<Self, String> {
        Ok(Self {
            brokers: BrokerList::parse(&config.brokers, &["amqp", "amqps"])?,
            egress: config.egress(),
            connect_timeout: config.connect_timeout,
            extra_roots: (!config.extra_root_certs.is_empty()).then(|| {
                config
                    .extra_root_certs
                    .iter()
                    .map(|pem| String::from_utf8_lossy(pem).into_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
            links: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The target's broker and route, or why it cannot be sent to.
    fn target(&self, url: &WebhookUrl) -> Result<(&Broker, Route), String> {
        let parsed = Url::parse(url.as_str()).map_err(|e| e.to_string())?;
        let route = route_of(&parsed)?;
        let broker = self.brokers.allowed(&parsed, "RabbitMQ")?;
        Ok((broker, route))
    }

    /// A new connection to `broker`'s virtual host, at the address the guard allowed.
    async fn connect(&self, broker: &Broker, vhost: &str) -> Result<Connection, AttemptReport> {
        let address = brokers::address_of(&self.egress, broker).await?;
        let tls = broker.scheme == "amqps";
        let user = (
            broker.user.clone().unwrap_or_else(|| "guest".into()),
            broker.password.clone().unwrap_or_else(|| "guest".into()),
        );
        // TLS checks the certificate against the broker's name; the name resolved to the
        // address the guard judged a moment ago.
        let host = if tls {
            broker.host.clone()
        } else {
            address.ip().to_string()
        };
        let uri = super::uri(tls, host, address.port(), user, vhost.to_owned());
        let properties = ConnectionProperties::default().with_connection_name("webhookd".into());
        let tls_config = OwnedTLSConfig {
            identity: None,
            cert_chain: self.extra_roots.clone(),
        };
        let runtime = lapin::runtime::default_runtime().map_err(|_| {
            failed(
                AttemptDetail::ConnectionFailed,
                "no async runtime for the RabbitMQ client".into(),
            )
        })?;
        match tokio::time::timeout(
            self.connect_timeout,
            Connection::connect_uri_with_config(uri, properties, tls_config, runtime),
        )
        .await
        {
            Ok(Ok(connection)) => Ok(connection),
            // What a TLS handshake refuses (an unknown authority, another name) comes back as
            // invalid data.
            Ok(Err(e))
                if tls
                    && matches!(e.kind(), ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::InvalidData) =>
            {
                Err(failed(
                    AttemptDetail::TlsFailed,
                    "the TLS handshake with the RabbitMQ broker failed (is its certificate \
                     signed by a trusted authority, for the broker's name?)"
                        .into(),
                ))
            }
            Ok(Err(e)) => Err(failed(
                AttemptDetail::ConnectionFailed,
                format!("cannot connect to the RabbitMQ broker: {}", describe(&e)),
            )),
            Err(_) => Err(failed(
                AttemptDetail::Timeout,
                "no connection to the RabbitMQ broker within the connect timeout".into(),
            )),
        }
    }

    /// The confirm channel for `route` on `broker`: the kept one, or a new one (on a new
    /// connection when the kept one is closed).
    async fn channel(&self, broker: &Broker, route: &Route) -> Result<Channel, AttemptReport> {
        let key = format!("{broker:?}/{}", route.vhost);
        let slot = {
            let mut links = self
                .links
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(links.entry(key).or_default())
        };
        let mut kept = slot.lock().await;
        if let Some(link) = kept.as_mut() {
            if !link.connection.status().connected() {
                *kept = None;
            } else if let Some(channel) = link.channels.get(&route.exchange) {
                if channel.status().connected() {
                    return Ok(channel.clone());
                }
                link.channels.remove(&route.exchange);
            }
        }
        let link = match kept.as_mut() {
            Some(link) => link,
            None => kept.insert(Link {
                connection: self.connect(broker, &route.vhost).await?,
                channels: HashMap::new(),
            }),
        };
        let made = async {
            let channel = link.connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(channel)
        };
        match made.await {
            Ok(channel) => {
                link.channels.retain(|_, kept| kept.status().connected());
                if link.channels.len() >= MAX_KEPT_CHANNELS {
                    let evicted = link.channels.keys().next().cloned();
                    if let Some(old) = evicted.and_then(|name| link.channels.remove(&name)) {
                        // Its publishes in flight still get their confirmations first.
                        tokio::spawn(async move {
                            let _ = old.wait_for_confirms().await;
                            let _ = old.close(200, "webhookd keeps fewer channels".into()).await;
                        });
                    }
                }
                link.channels
                    .insert(route.exchange.clone(), channel.clone());
                Ok(channel)
            }
            Err(e) => {
                *kept = None;
                Err(broker_error(&e, route, "opening a channel"))
            }
        }
    }

    async fn publish(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
    ) -> Result<AttemptReport, AttemptReport> {
        let (broker, route) = self.target(url).map_err(brokers::refused)?;
        let channel = self.channel(broker, &route).await?;
        let mut headers = FieldTable::default();
        let mut properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_timestamp(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            );
        for (name, value) in &message.headers {
            if name.eq_ignore_ascii_case("content-type") {
                properties = properties.with_content_type(short(value));
                continue;
            }
            if name.eq_ignore_ascii_case("webhook-id") {
                properties = properties.with_message_id(short(value));
            }
            headers.insert(
                short(name),
                AMQPValue::LongString(LongString::from(value.as_bytes())),
            );
        }
        let confirm = channel
            .basic_publish(
                short(&route.exchange),
                short(&route.routing_key),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties.with_headers(headers),
            )
            .await
            .map_err(|e| broker_error(&e, &route, "publish"))?;
        let confirmation = confirm
            .await
            .map_err(|e| broker_error(&e, &route, "confirmation"))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(AttemptReport {
                response_excerpt: Some(format!("confirmed by exchange {:?}", route.exchange)),
                ..AttemptReport::of(AttemptDetail::Accepted, Duration::ZERO)
            }),
            Confirmation::Ack(Some(returned)) => Err(AttemptReport {
                outcome: AttemptOutcome::Rejected,
                error: Some(format!(
                    "no queue is bound to exchange {:?} for routing key {:?} (the broker \
                         returned the message: {} {})",
                    route.exchange, route.routing_key, returned.reply_code, returned.reply_text
                )),
                ..AttemptReport::of(AttemptDetail::Declined, Duration::ZERO)
            }),
            Confirmation::Nack(_) => Err(failed(
                AttemptDetail::Declined,
                "the broker did not take the message (negative confirmation)".into(),
            )),
            Confirmation::NotRequested => Err(failed(
                AttemptDetail::Declined,
                "the channel is not in confirm mode".into(),
            )),
        }
    }
}

#[async_trait]
impl Destination for AmqpDestination {
    async fn send(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
        timeout: Duration,
    ) -> AttemptReport {
        brokers::within(timeout, "confirmation", self.publish(url, message)).await
    }

    fn check_target(&self, url: &WebhookUrl) -> Result<(), String> {
        self.target(url).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_vhost_exchange_and_routing_key() {
        let route = |url: &str| route_of(&Url::parse(url).unwrap());
        assert_eq!(
            route("amqp://h/tenants?exchange=events&routing_key=a.b").unwrap(),
            Route {
                vhost: "tenants".into(),
                exchange: "events".into(),
                routing_key: "a.b".into(),
            }
        );
        assert_eq!(
            route("amqp://h?exchange=&routing_key=q").unwrap(),
            Route {
                vhost: "/".into(),
                exchange: String::new(),
                routing_key: "q".into(),
            }
        );
        for bad in [
            "amqp://h/v",
            "amqp://h/v?exchange=",
            "amqp://h/v?exchange=e&queue=q",
            "amqp://h/a/b?exchange=e",
        ] {
            assert!(route(bad).is_err(), "{bad}");
        }
        let long = format!("amqp://h/v?exchange={}", "e".repeat(256));
        assert!(route(&long).unwrap_err().contains("255"));
    }
}
