//! The broker event sources (NATS JetStream, RabbitMQ) against the shared source contract, on
//! the machine's real servers: each source on a stream or queue of its own, built from
//! `EVENT_SOURCES` by scheme as the app builds it, and the broker's own counts read back to
//! tell what was acknowledged. A missing server fails the tests.

use std::sync::Mutex;
use std::time::Duration;

use webhook_adapters::EVENT_SOURCES;
use webhook_ports::SourceKind;
use webhook_ports::contract::source::{Message, SourceRig, Unsettled};

use crate::brokers::{rabbitmqctl, reachable, tag};

/// The registered source serving `scheme`.
fn kind(scheme: &str) -> SourceKind {
    *EVENT_SOURCES
        .iter()
        .find(|kind| kind.schemes.contains(&scheme))
        .unwrap_or_else(|| panic!("no event source serves {scheme}"))
}

/// The value of `name` in the query of `url`.
fn parameter(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_owned()
}

mod nats {
    use super::*;
    use async_nats::HeaderMap;
    use async_nats::jetstream::{self, stream};

    const SERVER: &str = "127.0.0.1:4222";
    const CONSUMER: &str = "contract";
    /// The broker forgets a `Nats-Msg-Id` after this (its shortest), so that the same message
    /// can be put again, and delivered twice, in a test.
    const DUPLICATE_WINDOW: Duration = Duration::from_millis(100);

    struct NatsRig {
        js: jetstream::Context,
        /// The streams made for sources, deleted when the rig is dropped.
        streams: Mutex<Vec<String>>,
    }

    async fn rig() -> NatsRig {
        reachable(SERVER, "NATS");
        let client = async_nats::connect(SERVER).await.unwrap();
        NatsRig {
            js: jetstream::new(client),
            streams: Mutex::new(Vec::new()),
        }
    }

    impl Drop for NatsRig {
        fn drop(&mut self) {
            let js = self.js.clone();
            let streams = std::mem::take(self.streams.get_mut().unwrap());
            // Dropped inside the test's runtime: delete on a thread of its own.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    for name in streams {
                        let _ = js.delete_stream(&name).await;
                    }
                });
            })
            .join()
            .unwrap();
        }
    }

    /// The stream of a source URL (`nats://host:port/STREAM?...`).
    fn stream_of(url: &str) -> String {
        let path = url.split_once('?').unwrap().0;
        path.rsplit('/').next().unwrap().to_owned()
    }

    fn subject_of(stream: &str) -> String {
        format!("{}.in", stream.to_lowercase())
    }

    #[async_trait::async_trait]
    impl SourceRig for NatsRig {
        fn kind(&self) -> SourceKind {
            kind("nats")
        }

        async fn source_url(&self, batch: usize) -> String {
            let name = format!("CONTRACTSRC{}", tag());
            let config = stream::Config {
                name: name.clone(),
                subjects: vec![subject_of(&name)],
                max_age: Duration::from_secs(600),
                duplicate_window: DUPLICATE_WINDOW,
                ..stream::Config::default()
            };
            self.js.create_stream(config).await.unwrap();
            self.streams.lock().unwrap().push(name.clone());
            format!("nats://{SERVER}/{name}?consumer={CONSUMER}&batch={batch}")
        }

        async fn put(&self, source: &str, messages: &[Message]) {
            let subject = subject_of(&stream_of(source));
            for message in messages {
                let mut headers = HeaderMap::new();
                if let Some(id) = &message.id {
                    headers.insert("Nats-Msg-Id", id.as_str());
                }
                for (name, value) in &message.headers {
                    headers.insert(name.as_str(), value.as_str());
                }
                // A message put again is dropped as a duplicate until the broker forgets its
                // id: put it until it is kept.
                for attempt in 1.. {
                    let ack = self
                        .js
                        .publish_with_headers(
                            subject.clone(),
                            headers.clone(),
                            message.body.clone().into(),
                        )
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                    if !ack.duplicate {
                        break;
                    }
                    assert!(attempt < 100, "the broker keeps dropping {message:?}");
                    tokio::time::sleep(DUPLICATE_WINDOW).await;
                }
            }
        }

        async fn unsettled(&self, source: &str) -> Unsettled {
            let stream = self.js.get_stream(stream_of(source)).await.unwrap();
            match stream.consumer_info(CONSUMER).await {
                Ok(info) => Unsettled {
                    undelivered: usize::try_from(info.num_pending).unwrap(),
                    unacknowledged: info.num_ack_pending,
                },
                // The source has not made its consumer yet: nothing was delivered.
                Err(_) => Unsettled {
                    undelivered: usize::try_from(stream.get_info().await.unwrap().state.messages)
                        .unwrap(),
                    unacknowledged: 0,
                },
            }
        }
    }

    webhook_ports::source_contract_suite!(rig);
}

mod amqp {
    use super::*;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
    use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

    const SERVER: &str = "127.0.0.1:5672";

    struct AmqpRig {
        /// A vhost of its own, deleted when the rig is dropped.
        vhost: String,
        _connection: Connection,
        /// In confirm mode: a put returns once the broker holds the messages.
        channel: Channel,
    }

    async fn rig() -> AmqpRig {
        reachable(SERVER, "RabbitMQ");
        let vhost = format!("webhookd-source-contract-{}", tag());
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let connection = Connection::connect(
            &format!("amqp://guest:guest@{SERVER}/{vhost}"),
            ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        AmqpRig {
            vhost,
            _connection: connection,
            channel,
        }
    }

    impl Drop for AmqpRig {
        fn drop(&mut self) {
            rabbitmqctl(&["delete_vhost", &self.vhost]);
        }
    }

    #[async_trait::async_trait]
    impl SourceRig for AmqpRig {
        fn kind(&self) -> SourceKind {
            kind("amqp")
        }

        async fn source_url(&self, batch: usize) -> String {
            let queue = format!("contract-{}", tag());
            self.channel
                .queue_declare(
                    ShortString::from(queue.as_str()),
                    QueueDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            format!(
                "amqp://guest:guest@{SERVER}/{}?queue={queue}&prefetch={batch}",
                self.vhost
            )
        }

        async fn put(&self, source: &str, messages: &[Message]) {
            let queue = parameter(source, "queue");
            let mut confirms = Vec::with_capacity(messages.len());
            for message in messages {
                let mut properties = BasicProperties::default();
                if let Some(id) = &message.id {
                    properties = properties.with_message_id(ShortString::from(id.as_str()));
                }
                let mut headers = FieldTable::default();
                for (name, value) in &message.headers {
                    headers.insert(
                        ShortString::from(name.as_str()),
                        AMQPValue::LongString(LongString::from(value.as_bytes())),
                    );
                }
                let confirm = self
                    .channel
                    .basic_publish(
                        ShortString::from(""),
                        ShortString::from(queue.as_str()),
                        BasicPublishOptions::default(),
                        &message.body,
                        properties.with_headers(headers),
                    )
                    .await
                    .unwrap();
                confirms.push(confirm);
            }
            for confirm in confirms {
                assert!(matches!(confirm.await.unwrap(), Confirmation::Ack(None)));
            }
        }

        async fn unsettled(&self, source: &str) -> Unsettled {
            let queue = parameter(source, "queue");
            let listed = rabbitmqctl(&[
                "list_queues",
                "-p",
                &self.vhost,
                "-q",
                "--no-table-headers",
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ]);
            let row: Vec<&str> = listed
                .lines()
                .map(|line| line.split_whitespace().collect::<Vec<_>>())
                .find(|row| row.first() == Some(&queue.as_str()))
                .unwrap_or_else(|| panic!("queue {queue} not listed: {listed}"));
            Unsettled {
                undelivered: row[1].parse().unwrap(),
                unacknowledged: row[2].parse().unwrap(),
            }
        }
    }

    webhook_ports::source_contract_suite!(rig);
}
