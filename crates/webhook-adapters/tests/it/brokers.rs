//! The broker destinations (NATS JetStream, RabbitMQ) against the shared destination contract,
//! on the machine's real servers: each target a stream or queue of its own, read back by a real
//! consumer. A target that never answers is a listener on 127.0.0.1 that accepts and stays
//! silent; the guarded destination runs the default SSRF policy, which refuses loopback.
//!
//! What a broker cannot answer is not asked of it: it never says "gone", and it refuses only
//! what it never took (a missing stream or exchange, tested end to end in the app's tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use webhook_adapters::{DESTINATIONS, TransportConfig};
use webhook_domain::AttemptOutcome;
use webhook_domain::{AddressPolicy, IpRange, OutboundMessage, WebhookUrl};
use webhook_ports::Destination;
use webhook_ports::contract::destination::{Answer, DestinationRig, sample_message};

/// The registered destination serving `scheme`, built with `brokers` listed; `guarded` keeps
/// the default address policy (loopback refused), else loopback is allowed.
fn destination(scheme: &str, brokers: Vec<String>, guarded: bool) -> Arc<dyn Destination> {
    let mut config = TransportConfig {
        brokers,
        // Long, so that an attempt to a silent broker stays in its connect for the whole of
        // `a_silent_broker_holds_up_no_other`; the contract's attempts have short timeouts.
        connect_timeout: Duration::from_secs(60),
        ..TransportConfig::default()
    };
    if !guarded {
        config.address_policy = AddressPolicy::new(vec![IpRange::parse("127.0.0.0/8").unwrap()]);
    }
    let kind = DESTINATIONS
        .iter()
        .find(|kind| kind.schemes.contains(&scheme))
        .unwrap_or_else(|| panic!("no destination serves {scheme}"));
    (kind.open)(&config).unwrap()
}

/// A listener on 127.0.0.1 that accepts connections and never says a word.
struct Silent {
    address: SocketAddr,
    /// How many connections it accepted.
    accepted: Arc<AtomicUsize>,
}

async fn silent_server() -> Silent {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    Silent { address, accepted }
}

/// An attempt to a broker that never answers holds up no attempt to another broker: while it
/// waits in its connect (the destination's connect timeout is a minute here), an attempt to a
/// healthy broker of the same destination is delivered.
async fn a_silent_broker_holds_up_no_other(rig: &impl DestinationRig, silent: &Silent) {
    let destination = rig.destination(false);
    let stalled = rig.target(Answer::Stall).await;
    let healthy = rig.target(Answer::Take).await;
    let slow = {
        let destination = Arc::clone(&destination);
        tokio::spawn(async move {
            destination
                .send(&stalled, &sample_message(), Duration::from_secs(120))
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while silent.accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attempt never reached the silent broker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = destination
        .send(&healthy, &sample_message(), Duration::from_secs(120))
        .await;
    assert_eq!(report.outcome, AttemptOutcome::Delivered, "{report:?}");
    assert!(
        !slow.is_finished(),
        "the healthy broker's attempt waited for the silent one's: {:?}",
        slow.await
    );
    slow.abort();
}

pub(crate) fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) fn reachable(address: &str, what: &str) {
    if let Err(e) =
        std::net::TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(3))
    {
        panic!("{what} is not reachable at {address}: {e}; `cargo xtask db` starts it");
    }
}

/// Runs `rabbitmqctl` (it manages the local RabbitMQ node) and answers what it printed.
pub(crate) fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (it comes with RabbitMQ)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

mod nats {
    use super::*;
    use async_nats::jetstream::{self, stream};
    use tokio::sync::Mutex;

    const SERVER: &str = "127.0.0.1:4222";

    struct NatsRig {
        js: jetstream::Context,
        silent: Silent,
        /// The streams made for targets, deleted when the rig is dropped.
        streams: Mutex<Vec<String>>,
    }

    async fn rig() -> NatsRig {
        reachable(SERVER, "NATS");
        let client = async_nats::connect(SERVER).await.unwrap();
        NatsRig {
            js: jetstream::new(client),
            silent: silent_server().await,
            streams: Mutex::new(Vec::new()),
        }
    }

    impl Drop for NatsRig {
        fn drop(&mut self) {
            let js = self.js.clone();
            let streams = std::mem::take(self.streams.get_mut());
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

    #[async_trait::async_trait]
    impl DestinationRig for NatsRig {
        fn destination(&self, guarded: bool) -> Arc<dyn Destination> {
            destination(
                "nats",
                vec![
                    format!("nats://{SERVER}"),
                    format!("nats://{}", self.silent.address),
                ],
                guarded,
            )
        }

        async fn target(&self, answer: Answer) -> WebhookUrl {
            let tag = tag();
            let subject = format!("contract{tag}.in");
            let url = match answer {
                Answer::Stall => format!("nats://{}/{subject}", self.silent.address),
                _ => format!("nats://{SERVER}/{subject}"),
            };
            let mut config = stream::Config {
                name: format!("CONTRACT{tag}"),
                subjects: vec![subject.clone()],
                max_age: Duration::from_secs(600),
                ..stream::Config::default()
            };
            if answer == Answer::Unavailable {
                // Full, and refusing new messages until some go.
                config.max_messages = 1;
                config.discard = stream::DiscardPolicy::New;
            }
            self.js.create_stream(config.clone()).await.unwrap();
            self.streams.lock().await.push(config.name);
            if answer == Answer::Unavailable {
                self.js
                    .publish(subject, "filler".into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
            WebhookUrl::parse_with_schemes(&url, &["nats"]).unwrap()
        }

        async fn received(&self, target: &WebhookUrl) -> Vec<OutboundMessage> {
            let subject = target.as_str().rsplit('/').next().unwrap().to_owned();
            let name = format!(
                "CONTRACT{}",
                subject
                    .strip_prefix("contract")
                    .and_then(|s| s.strip_suffix(".in"))
                    .unwrap()
            );
            let stream = self.js.get_stream(&name).await.unwrap();
            let count = stream.get_info().await.unwrap().state.messages;
            let mut messages = Vec::new();
            for sequence in 1..=count {
                let message = stream.get_raw_message(sequence).await.unwrap();
                let headers = message
                    .headers
                    .iter()
                    .flat_map(|(name, values)| {
                        values
                            .iter()
                            .map(move |value| (name.to_string(), value.as_str().to_owned()))
                    })
                    .collect();
                messages.push(OutboundMessage {
                    body: message.payload.to_vec(),
                    headers,
                });
            }
            messages
        }

        fn is_network(&self) -> bool {
            true
        }

        fn can_answer(&self, answer: Answer) -> bool {
            !matches!(answer, Answer::Refuse | Answer::Gone)
        }
    }

    webhook_ports::destination_contract_suite!(rig);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_broker_holds_up_no_other_broker() {
        let rig = rig().await;
        super::a_silent_broker_holds_up_no_other(&rig, &rig.silent).await;
    }
}

mod amqp {
    use std::collections::HashMap;

    use super::*;
    use lapin::options::{BasicGetOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable, ShortString};
    use lapin::{Channel, Connection, ConnectionProperties};
    use tokio::sync::Mutex;

    const SERVER: &str = "127.0.0.1:5672";

    struct AmqpRig {
        vhost: String,
        _connection: Connection,
        channel: Channel,
        silent: Silent,
        /// What each target's queue held, as read so far (reading takes it off the queue).
        taken: Mutex<HashMap<String, Vec<OutboundMessage>>>,
    }

    async fn rig() -> AmqpRig {
        reachable(SERVER, "RabbitMQ");
        let vhost = format!("webhookd-contract-{}", tag());
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let connection = Connection::connect(
            &format!("amqp://guest:guest@{SERVER}/{vhost}"),
            ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let channel = connection.create_channel().await.unwrap();
        AmqpRig {
            vhost,
            _connection: connection,
            channel,
            silent: silent_server().await,
            taken: Mutex::new(HashMap::new()),
        }
    }

    impl Drop for AmqpRig {
        fn drop(&mut self) {
            rabbitmqctl(&["delete_vhost", &self.vhost]);
        }
    }

    fn queue_of(target: &WebhookUrl) -> String {
        target
            .as_str()
            .rsplit_once("routing_key=")
            .unwrap()
            .1
            .to_owned()
    }

    #[async_trait::async_trait]
    impl DestinationRig for AmqpRig {
        fn destination(&self, guarded: bool) -> Arc<dyn Destination> {
            destination(
                "amqp",
                vec![
                    format!("amqp://guest:guest@{SERVER}"),
                    format!("amqp://{}", self.silent.address),
                ],
                guarded,
            )
        }

        async fn target(&self, answer: Answer) -> WebhookUrl {
            let queue = format!("contract-{}", tag());
            let server = match answer {
                Answer::Stall => self.silent.address.to_string(),
                _ => SERVER.to_owned(),
            };
            let mut arguments = FieldTable::default();
            if answer == Answer::Unavailable {
                // Full, and refusing new messages (a negative confirmation) until some go.
                arguments.insert("x-max-length".into(), AMQPValue::LongInt(0));
                arguments.insert(
                    "x-overflow".into(),
                    AMQPValue::LongString("reject-publish".into()),
                );
            }
            self.channel
                .queue_declare(
                    ShortString::from(queue.as_str()),
                    QueueDeclareOptions::default(),
                    arguments,
                )
                .await
                .unwrap();
            let url = format!(
                "amqp://{server}/{}?exchange=&routing_key={queue}",
                self.vhost
            );
            WebhookUrl::parse_with_schemes(&url, &["amqp"]).unwrap()
        }

        async fn received(&self, target: &WebhookUrl) -> Vec<OutboundMessage> {
            let queue = queue_of(target);
            let mut taken = self.taken.lock().await;
            let messages = taken.entry(queue.clone()).or_default();
            while let Some(message) = self
                .channel
                .basic_get(
                    ShortString::from(queue.as_str()),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap()
            {
                let properties = &message.delivery.properties;
                let mut headers = Vec::new();
                if let Some(content_type) = properties.content_type() {
                    headers.push(("content-type".to_owned(), content_type.to_string()));
                }
                for (name, value) in properties.headers().clone().unwrap_or_default().inner() {
                    if let AMQPValue::LongString(text) = value {
                        headers.push((
                            name.to_string(),
                            String::from_utf8(text.as_bytes().to_vec()).unwrap(),
                        ));
                    }
                }
                messages.push(OutboundMessage {
                    body: message.delivery.data.clone(),
                    headers,
                });
            }
            messages.clone()
        }

        fn is_network(&self) -> bool {
            true
        }

        fn can_answer(&self, answer: Answer) -> bool {
            !matches!(answer, Answer::Refuse | Answer::Gone)
        }
    }

    webhook_ports::destination_contract_suite!(rig);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_broker_holds_up_no_other_broker() {
        let rig = rig().await;
        super::a_silent_broker_holds_up_no_other(&rig, &rig.silent).await;
    }
}
