//! RabbitMQ (AMQP 0-9-1): a destination (`amqp://host:port/vhost?exchange=E&routing_key=K`
//! targets, persistent messages with publisher confirms) and an event source (a queue, manual
//! acknowledgements, a prefetch limit). Each is one registration: [`DESTINATION`] in the
//! registry's `DESTINATIONS`, [`SOURCE`] in `EVENT_SOURCES`.

mod destination;
mod source;

use std::sync::Arc;

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};

use webhook_ports::{Destination, SourceKind};

use crate::DestinationKind;

/// Targets `amqp://` and `amqps://` on a broker of `transport.brokers`.
pub(crate) const DESTINATION: DestinationKind = DestinationKind {
    name: "RabbitMQ",
    schemes: &["amqp", "amqps"],
    open: |config| {
        let destination = destination::AmqpDestination::new(config)?;
        Ok(Arc::new(destination) as Arc<dyn Destination>)
    },
};

/// `amqp://user:password@host:5672/vhost?queue=events`.
pub(crate) const SOURCE: SourceKind = SourceKind {
    name: "RabbitMQ",
    schemes: &["amqp", "amqps"],
    example: "amqp://guest:guest@127.0.0.1:5672/%2f?queue=webhookd-events",
    open: source::AmqpSource::open,
};

/// The virtual host a URL's path names: empty or `/` is the default vhost `/`; otherwise the
/// one percent-decoded path segment (`/%2f` is `/` too).
fn vhost_of(url: &url::Url) -> Result<String, String> {
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    if path.is_empty() {
        return Ok("/".to_owned());
    }
    if path.contains('/') {
        return Err(
            "the URL's path is one virtual host (write %2f for \"/\"): amqp://host:5672/vhost"
                .into(),
        );
    }
    crate::brokers::percent_decode(path)
        .ok_or_else(|| "the virtual host is not valid percent-encoded UTF-8".to_owned())
}

/// Where a connection goes: the broker's `host` (a name or an address) and `port`, signed in
/// as `user`, on virtual host `vhost`, over TLS when `tls`.
fn uri(tls: bool, host: String, port: u16, user: (String, String), vhost: String) -> AMQPUri {
    let (username, password) = user;
    AMQPUri {
        scheme: if tls {
            AMQPScheme::AMQPS
        } else {
            AMQPScheme::AMQP
        },
        authority: AMQPAuthority {
            userinfo: AMQPUserInfo { username, password },
            host,
            port,
        },
        vhost,
        query: AMQPQueryString::default(),
    }
}

/// A broker error in words, without the data it may carry.
fn describe(error: &lapin::Error) -> String {
    use lapin::ErrorKind;
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => amqp.get_message().as_str().to_owned(),
        ErrorKind::IOError(io) => format!("connection: {}", io.kind()),
        ErrorKind::InvalidChannelState(..) | ErrorKind::InvalidChannel(_) => {
            "the channel is closed".into()
        }
        ErrorKind::InvalidConnectionState(_) => "the connection is closed".into(),
        ErrorKind::MissingHeartbeatError => "the broker stopped answering heartbeats".into(),
        ErrorKind::ChannelsLimitReached => "no channel left on the connection".into(),
        _ => "the broker connection failed".into(),
    }
}

/// `vhost` percent-encoded as one path segment of an AMQP URI.
fn vhost_segment(vhost: &str) -> String {
    vhost
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_names_the_vhost() {
        for (url, vhost) in [
            ("amqp://h", "/"),
            ("amqp://h/", "/"),
            ("amqp://h/%2f", "/"),
            ("amqp://h/tenant-a", "tenant-a"),
            ("amqp://h/a%20b?queue=q", "a b"),
        ] {
            assert_eq!(
                vhost_of(&url::Url::parse(url).unwrap()).unwrap(),
                vhost,
                "{url}"
            );
        }
        assert!(vhost_of(&url::Url::parse("amqp://h/a/b").unwrap()).is_err());
        assert_eq!(vhost_segment("/"), "%2F");
        assert_eq!(vhost_segment("tenant-a"), "tenant-a");
    }
}
