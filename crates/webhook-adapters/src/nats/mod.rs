//! NATS JetStream: a destination (`nats://host:port/subject` targets, published with
//! JetStream's acknowledgement) and an event source (a durable pull consumer on a stream).
//! Each is one registration: [`DESTINATION`] in the registry's `DESTINATIONS`, [`SOURCE`] in
//! `EVENT_SOURCES`.

mod destination;
mod source;

use std::sync::Arc;

use webhook_ports::{Destination, SourceKind};

use crate::DestinationKind;

/// Targets `nats://host:port/subject` on a broker of `transport.brokers`.
pub(crate) const DESTINATION: DestinationKind = DestinationKind {
    name: "NATS JetStream",
    schemes: &["nats"],
    open: |config| {
        let destination = destination::NatsDestination::new(config)?;
        Ok(Arc::new(destination) as Arc<dyn Destination>)
    },
};

/// `nats://user:password@host:4222/STREAM?consumer=webhookd&subject=events.>`.
pub(crate) const SOURCE: SourceKind = SourceKind {
    name: "NATS JetStream",
    schemes: &["nats"],
    example: "nats://127.0.0.1:4222/EVENTS?consumer=webhookd&wallet_from=subject:2",
    open: source::NatsSource::open,
};
