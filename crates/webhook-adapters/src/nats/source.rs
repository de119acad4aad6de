//! Events from a NATS JetStream stream: `nats://user:password@host:port/STREAM?consumer=NAME`,
//! with `subject=` (a filter, default: the whole stream), `batch=` (messages fetched at once,
//! default 100) and the mapping of `inbound` (`wallet`, `wallet_from`, `id_from`).
//!
//! A durable pull consumer with explicit acks: a batch is fetched, its events are published
//! together, and only then is each message acknowledged (published) or terminated (`AckTerm`:
//! it can never be published). Nothing more is fetched while a batch waits for storage, so a
//! slow or absent database holds at most one batch here and the rest stays in the stream. A
//! message redelivered after a crash carries the same stream sequence (or `Nats-Msg-Id`), hence
//! the same event id, and is replayed rather than stored twice.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use async_trait::async_trait;
use futures_util::StreamExt;
use url::Url;
use webhook_ports::{EventSource, PublishEvents, Shutdown, SourceError};

use crate::inbound::{self, Inbound, Mapping, Verdict};

/// Longest a fetch waits for messages before it asks again (and looks at the shutdown).
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// Wait before connecting again, or fetching again after an error.
const RECONNECT: Duration = Duration::from_millis(500);
/// How long the broker waits for an acknowledgement before it delivers a message again.
const ACK_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_BATCH: usize = 100;
const MAX_BATCH: usize = 1000;

#[derive(Debug)]
pub(crate) struct NatsSource {
    /// Where to connect: `nats://host:port`, credentials apart.
    server: String,
    user: Option<(String, crate::brokers::Secret<String>)>,
    stream: String,
    consumer: String,
    subject: Option<String>,
    batch: usize,
    mapping: Mapping,
    /// The source in logs and refusal reports, without credentials.
    name: String,
}

impl NatsSource {
    pub(crate) fn open(url: &str) -> Result<Box<dyn webhook_ports::EventSource>, String> {
        Ok(Box::new(Self::parse(url)?))
    }

    fn parse(url: &str) -> Result<Self, String> {
        let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let host = crate::brokers::host_of(&parsed)
            .filter(|h| !h.is_empty())
            .ok_or("the URL needs the broker's host: nats://host:4222/STREAM?consumer=NAME")?;
        let port = parsed.port().unwrap_or(4222);
        let stream = parsed.path().trim_start_matches('/').to_owned();
        if stream.is_empty() || stream.contains(['/', '.', '*', '>', ' ']) {
            return Err(
                "the URL's path is the stream's name, without '/', '.', '*', '>' or spaces: \
                 nats://host:4222/STREAM?consumer=NAME"
                    .into(),
            );
        }
        let mut consumer = None;
        let mut subject = None;
        let mut batch = DEFAULT_BATCH;
        for (name, value) in parsed.query_pairs() {
            match &*name {
                "consumer" => consumer = Some(value.into_owned()),
                "subject" => subject = Some(value.into_owned()),
                "batch" => {
                    batch = value
                        .parse()
                        .ok()
                        .filter(|b| (1..=MAX_BATCH).contains(b))
                        .ok_or(format!("batch={value:?}: a number from 1 to {MAX_BATCH}"))?;
                }
                _ => {}
            }
        }
        let consumer = consumer
            .filter(|c| !c.is_empty() && !c.contains(['.', '*', '>', ' ']))
            .ok_or("the URL needs consumer=NAME, the durable consumer's name (no '.', '*', '>' or spaces)")?;
        let server = if host.contains(':') {
            format!("nats://[{host}]:{port}")
        } else {
            format!("nats://{host}:{port}")
        };
        let name = format!("{server}/{stream}?consumer={consumer}");
        let mapping = Mapping::of_url(
            &parsed,
            &["consumer", "subject", "batch"],
            format!("nats {server}/{stream}"),
        )?;
        let user = match parsed.username() {
            "" => None,
            user => Some((
                user.to_owned(),
                crate::brokers::Secret(parsed.password().unwrap_or("").to_owned()),
            )),
        };
        Ok(Self {
            server,
            user,
            stream,
            consumer,
            subject,
            batch,
            mapping,
            name,
        })
    }

    /// The durable consumer, once the broker answers and the stream exists.
    async fn consumer(&self) -> Result<jetstream::consumer::PullConsumer, String> {
        let mut options = async_nats::ConnectOptions::new()
            .name("webhookd source")
            .connection_timeout(Duration::from_secs(5));
        if let Some((user, password)) = &self.user {
            options = options.user_and_password(user.clone(), password.0.clone());
        }
        let client = options
            .connect(self.server.as_str())
            .await
            .map_err(|e| format!("cannot connect: {}", e.kind()))?;
        let context = jetstream::new(client);
        let stream = context
            .get_stream(&self.stream)
            .await
            .map_err(|e| format!("stream {:?}: {e}", self.stream))?;
        stream
            .get_or_create_consumer(
                &self.consumer,
                pull::Config {
                    durable_name: Some(self.consumer.clone()),
                    filter_subject: self.subject.clone().unwrap_or_default(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: i64::try_from(self.batch * 2).unwrap_or(i64::MAX),
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(|e| format!("consumer {:?}: {e}", self.consumer))
    }

    /// Fetches one batch and publishes it; `false` at shutdown.
    async fn one_batch(
        &self,
        consumer: &jetstream::consumer::PullConsumer,
        sink: &Arc<dyn PublishEvents>,
        shutdown: &mut Shutdown,
    ) -> Result<bool, String> {
        let fetched = tokio::select! {
            () = &mut *shutdown => return Ok(false),
            fetched = consumer
                .fetch()
                .max_messages(self.batch)
                .expires(FETCH_WAIT)
                .messages() => fetched.map_err(|e| format!("fetch: {e}"))?,
        };
        let messages: Vec<jetstream::Message> = tokio::select! {
            () = &mut *shutdown => return Ok(false),
            all = fetched.collect::<Vec<_>>() => all
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(|e| format!("fetch: {e}"))?,
        };
        if messages.is_empty() {
            return Ok(true);
        }
        let batch = messages
            .iter()
            .map(|message| {
                let (input, message_id) = match message.info() {
                    Ok(info) => (
                        format!(
                            "stream {} sequence {} (subject {})",
                            info.stream, info.stream_sequence, message.subject
                        ),
                        format!("{}:{}", info.stream, info.stream_sequence),
                    ),
                    Err(_) => (format!("subject {}", message.subject), String::new()),
                };
                let header = |name: &str| header(message, name);
                let message_id = header("Nats-Msg-Id").unwrap_or(message_id);
                let item = if message_id.is_empty() {
                    Err("the message has no JetStream metadata to derive its id from".into())
                } else {
                    self.mapping.item(&Inbound {
                        message_id,
                        subject: message.subject.as_str(),
                        header: &header,
                        body: &message.payload,
                    })
                };
                (input, item)
            })
            .collect::<Vec<_>>();
        let inputs: Vec<String> = batch.iter().map(|(input, _)| input.clone()).collect();
        let Some(verdicts) = inbound::publish(sink, &self.name, batch, shutdown).await else {
            return Ok(false);
        };
        for ((message, verdict), input) in messages.iter().zip(verdicts).zip(inputs) {
            // A lost acknowledgement only means the message comes again, and is replayed.
            let acked = match &verdict {
                Verdict::Published => message.ack().await,
                Verdict::Refused(reason) => {
                    tracing::warn!(source = %self.name, %input, %reason, "event source terminated a message it cannot publish");
                    message.ack_with(AckKind::Term).await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(source = %self.name, %input, error = %e, "acknowledgement not sent; the message will come again");
            }
        }
        Ok(true)
    }
}

/// A header's value by name, in any case.
fn header(message: &jetstream::Message, name: &str) -> Option<String> {
    let headers = message.headers.as_ref()?;
    headers
        .iter()
        .find(|(key, _)| AsRef::<str>::as_ref(*key).eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(|value| value.as_str().to_owned())
}

#[async_trait]
impl EventSource for NatsSource {
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
                Ok(consumer) => {
                    tracing::info!(source = %self.name, "consuming");
                    warned = false;
                    loop {
                        match self.one_batch(&consumer, &sink, &mut shutdown).await {
                            Ok(true) => {}
                            Ok(false) => return Ok(()),
                            Err(why) => {
                                tracing::warn!(source = %self.name, error = %why, "fetch failed; fetching again");
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
    fn a_source_never_shows_its_password() {
        let source =
            NatsSource::parse("nats://app:n4ts-s3cret@127.0.0.1:4222/EVENTS?consumer=webhookd")
                .unwrap();
        let shown = format!("{source:?}");
        assert!(!shown.contains("n4ts-s3cret"), "{shown}");
        assert!(shown.contains("\"app\""), "{shown}");
    }
}
