//! Deliveries to a NATS JetStream subject: `nats://host:port/subject`. Each message is
//! published with JetStream's acknowledgement, its headers the HTTP request's (the Standard
//! Webhooks signature among them) and `Nats-Msg-Id` the event id, so that the stream drops a
//! message sent again after an attempt whose acknowledgement was lost.
//!
//! One client per broker, kept and reconnected by the client itself. It connects only to a
//! broker of `transport.brokers`, at the address the SSRF guard allowed, and ignores the other
//! servers a broker advertises (they were never checked).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_trait::async_trait;
use tokio::sync::Mutex;
use url::Url;
use webhook_domain::{AttemptDetail, AttemptOutcome, OutboundMessage, WebhookUrl};
use webhook_ports::{AttemptReport, Destination};

use crate::brokers::{self, Broker, BrokerList};
use crate::{Egress, TransportConfig};

/// The header JetStream de-duplicates on.
const MESSAGE_ID: &str = "Nats-Msg-Id";

pub(crate) struct NatsDestination {
    brokers: BrokerList,
    egress: Egress,
    connect_timeout: Duration,
    /// One client per broker (scheme, host, port), made at its first attempt, each
    /// behind a lock of its own, so that connecting to one broker (up to the connect timeout)
    /// holds up no attempt to another.
    clients: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<jetstream::Context>>>>>,
}

impl std::fmt::Debug for NatsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsDestination")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

/// The subject a target URL names: its path without the leading `/`, a dot-separated list of
/// non-empty tokens without wildcards or white space.
pub(crate) fn subject_of(url: &Url) -> Result<String, String> {
    if url.query().is_some() {
        return Err("a nats:// target takes no query; write nats://host:port/subject".into());
    }
    let subject = url.path().trim_start_matches('/');
    if subject.is_empty() {
        return Err("a nats:// target needs a subject: nats://host:port/subject".into());
    }
    if subject.len() > 255 {
        return Err("the subject is longer than 255 characters".into());
    }
    if subject.split('.').any(|token| {
        token.is_empty()
            || token == "*"
            || token == ">"
            || token
                .chars()
                .any(|c| c.is_whitespace() || c == '/' || c == '%' || c.is_control())
    }) {
        return Err(format!(
            "subject {subject:?} is not a subject to publish to: dot-separated tokens, none \
             empty, no wildcards (* or >), no white space, '/' or '%'"
        ));
    }
    Ok(subject.to_owned())
}

impl NatsDestination {
    pub(crate) fn new(config: &TransportConfig) -> Result<Self, String> {
        Ok(Self {
            brokers: BrokerList::parse(&config.brokers, &["nats"])?,
            egress: config.egress(),
            connect_timeout: config.connect_timeout,
            clients: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The target's broker and subject, or why it cannot be sent to.
    fn target(&self, url: &WebhookUrl) -> Result<(&Broker, String), String> {
        let parsed = Url::parse(url.as_str()).map_err(|e| e.to_string())?;
        let subject = subject_of(&parsed)?;
        let broker = self.brokers.allowed(&parsed, "NATS")?;
        Ok((broker, subject))
    }

    /// The broker's client: the kept one, or a new connection through the guard.
    async fn client(&self, broker: &Broker) -> Result<jetstream::Context, AttemptReport> {
        let slot = {
            let mut clients = self
                .clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(clients.entry(format!("{broker:?}")).or_default())
        };
        let mut kept = slot.lock().await;
        if let Some(client) = kept.as_ref() {
            return Ok(client.clone());
        }
        let address = brokers::address_of(&self.egress, broker).await?;
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(self.connect_timeout)
            .ignore_discovered_servers()
            .name("webhookd");
        if let Some(user) = &broker.user {
            options = options
                .user_and_password(user.clone(), broker.password.clone().unwrap_or_default());
        }
        let client = options
            .connect(format!("nats://{address}"))
            .await
            .map_err(|e| AttemptReport {
                error: Some(format!("cannot connect to the NATS broker: {}", e.kind())),
                ..AttemptReport::of(AttemptDetail::ConnectionFailed, Duration::ZERO)
            })?;
        Ok(kept.insert(jetstream::new(client)).clone())
    }

    async fn publish(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
    ) -> Result<AttemptReport, AttemptReport> {
        let (broker, subject) = self.target(url).map_err(brokers::refused)?;
        let context = self.client(broker).await?;
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &message.headers {
            headers.append(name.as_str(), value.as_str());
            if name.eq_ignore_ascii_case("webhook-id") {
                headers.insert(MESSAGE_ID, value.as_str());
            }
        }
        let failed = |kind: PublishErrorKind, stage: &str| {
            let (outcome, detail) = match kind {
                // No stream captures the subject: the target as configured cannot take it.
                PublishErrorKind::StreamNotFound => {
                    (AttemptOutcome::Rejected, AttemptDetail::Declined)
                }
                PublishErrorKind::MaxPayloadExceeded => {
                    (AttemptOutcome::Rejected, AttemptDetail::Declined)
                }
                PublishErrorKind::TimedOut => (
                    AttemptOutcome::RetryLater { not_before: None },
                    AttemptDetail::Timeout,
                ),
                PublishErrorKind::BrokenPipe => (
                    AttemptOutcome::RetryLater { not_before: None },
                    AttemptDetail::ConnectionFailed,
                ),
                _ => (
                    AttemptOutcome::RetryLater { not_before: None },
                    AttemptDetail::Declined,
                ),
            };
            let why = match kind {
                PublishErrorKind::StreamNotFound => {
                    format!("no JetStream stream captures subject {subject:?}")
                }
                other => format!("{stage}: {other}"),
            };
            AttemptReport {
                outcome,
                detail,
                duration: Duration::ZERO,
                response_excerpt: None,
                error: Some(why),
            }
        };
        let pending = context
            .publish_with_headers(subject.clone(), headers, message.body.clone().into())
            .await
            .map_err(|e| failed(e.kind(), "publish"))?;
        let ack = pending
            .await
            .map_err(|e| failed(e.kind(), "acknowledgement"))?;
        Ok(AttemptReport {
            response_excerpt: Some(format!(
                "stream {} sequence {}{}",
                ack.stream,
                ack.sequence,
                if ack.duplicate { " (duplicate)" } else { "" }
            )),
            ..AttemptReport::of(AttemptDetail::Accepted, Duration::ZERO)
        })
    }
}

#[async_trait]
impl Destination for NatsDestination {
    async fn send(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
        timeout: Duration,
    ) -> AttemptReport {
        brokers::within(timeout, "acknowledgement", self.publish(url, message)).await
    }

    fn check_target(&self, url: &WebhookUrl) -> Result<(), String> {
        self.target(url).map(|_| ())
    }
}
