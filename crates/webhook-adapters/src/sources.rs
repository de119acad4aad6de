//! The event sources built into webhookd, by URL scheme: what the app offers for the `sources`
//! setting before any extension registers its own. A new source is a module of this crate that
//! implements `webhook_ports::EventSource`, with a `SourceKind` of its own, and one line in
//! [`EVENT_SOURCES`].
//!
//! Besides these, events come in through the REST API and the CLI, which call the publishing
//! service directly. It must hold only sources that go through `webhook_ports::PublishEvents`,
//! never one that writes to storage itself.

use webhook_ports::SourceKind;

/// Every event source built in.
pub const EVENT_SOURCES: &[SourceKind] = &[crate::nats::SOURCE, crate::amqp::SOURCE];
