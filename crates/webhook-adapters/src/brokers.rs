//! The message brokers an operator lets tenants name as targets (`transport.brokers`), and how
//! a broker destination reaches one: only a listed broker, only at an address the SSRF guard
//! allows, with the credentials of the operator's entry (a target URL never carries any).
//!
//! What it must not do: put a broker's credentials into an error text or a log line, or hand a
//! destination an address the guard refused.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;
use webhook_ports::AttemptReport;

use crate::{Egress, EgressError};
use webhook_domain::AttemptDetail;

/// One broker of `transport.brokers`: where it is and how to sign in.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Broker {
    /// The scheme of its entry (`nats`, `amqp`, `amqps`).
    pub(crate) scheme: String,
    /// In lower case, as the URL standard writes it (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// A value whose `Debug` shows nothing: a source's credentials, kept out of any `Debug` of
/// the struct holding them.
pub(crate) struct Secret<T>(pub(crate) T);

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

/// The listed brokers of some schemes: what one destination may reach.
#[derive(Debug, Clone, Default)]
pub(crate) struct BrokerList(Vec<Broker>);

/// The default port of a broker scheme.
pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "nats" => Some(4222),
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        _ => None,
    }
}

/// The host of a parsed URL as the guard and the list compare it: lower case, IPv6 without
/// brackets.
pub(crate) fn host_of(url: &Url) -> Option<String> {
    Some(match url.host()? {
        url::Host::Domain(name) => name.to_ascii_lowercase(),
        url::Host::Ipv4(v4) => v4.to_string(),
        url::Host::Ipv6(v6) => v6.to_string(),
    })
}

impl BrokerList {
    /// The entries of `entries` whose scheme is one of `schemes`; the others belong to another
    /// destination.
    ///
    /// # Errors
    /// When an entry of these schemes is not a broker URL; the message names the entry without
    /// its credentials.
    pub(crate) fn parse(entries: &[String], schemes: &[&str]) -> Result<Self, String> {
        let mut brokers = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let Ok(url) = Url::parse(entry) else {
                let scheme = entry.split_once("://").map_or("", |(s, _)| s);
                if schemes.contains(&scheme) {
                    return Err(format!(
                        "transport.brokers: an entry of scheme {scheme:?} is not a URL; write \
                         {scheme}://user:password@host:port"
                    ));
                }
                continue;
            };
            if !schemes.contains(&url.scheme()) {
                continue;
            }
            let scheme = url.scheme().to_owned();
            let Some(host) = host_of(&url).filter(|h| !h.is_empty()) else {
                return Err(format!(
                    "transport.brokers: a {scheme} entry has no host; write \
                     {scheme}://user:password@host:port"
                ));
            };
            let port = url
                .port()
                .or_else(|| default_port(&scheme))
                .unwrap_or_default();
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| {
                    format!("transport.brokers: the {scheme} entry for {host}:{port} has credentials that are not valid percent-encoded UTF-8")
                })
            };
            let user = match url.username() {
                "" => None,
                name => Some(decode(name)?),
            };
            let password = url.password().map(decode).transpose()?;
            brokers.push(Broker {
                scheme,
                host,
                port,
                user,
                password,
            });
        }
        Ok(Self(brokers))
    }

    /// The listed broker that `target` (a parsed target URL) names, by scheme, host and port.
    pub(crate) fn find(&self, target: &Url) -> Option<&Broker> {
        let host = host_of(target)?;
        let port = target.port().or_else(|| default_port(target.scheme()))?;
        self.0
            .iter()
            .find(|b| b.scheme == target.scheme() && b.host == host && b.port == port)
    }

    /// The listed broker that `target` names, or why a target may not name it (`kind` is
    /// the broker's kind in words, as "RabbitMQ").
    pub(crate) fn allowed(&self, target: &Url, kind: &str) -> Result<&Broker, String> {
        self.find(target).ok_or_else(|| {
            if self.is_empty() {
                format!(
                    "no {kind} broker is allowed on this instance; an operator lists one in \
                     transport.brokers"
                )
            } else {
                format!(
                    "broker {}:{} is not one this instance may publish to; an operator lists \
                     brokers in transport.brokers",
                    host_of(target).unwrap_or_default(),
                    target
                        .port()
                        .or_else(|| default_port(target.scheme()))
                        .unwrap_or_default()
                )
            }
        })
    }

    /// Whether no broker of these schemes is listed.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The report of a broker attempt: `publish`'s, or a timeout's (`unanswered` says what did
/// not come) when it took longer than `timeout`; its duration measured here.
pub(crate) async fn within(
    timeout: Duration,
    unanswered: &str,
    publish: impl std::future::Future<Output = Result<AttemptReport, AttemptReport>>,
) -> AttemptReport {
    let started = std::time::Instant::now();
    let report = match tokio::time::timeout(timeout, publish).await {
        Ok(Ok(report) | Err(report)) => report,
        Err(_) => AttemptReport {
            error: Some(format!("no {unanswered} within the attempt's timeout")),
            ..AttemptReport::of(AttemptDetail::Timeout, Duration::ZERO)
        },
    };
    AttemptReport {
        duration: started.elapsed(),
        ..report
    }
}

/// Why a target cannot be sent to before anything is connected.
pub(crate) fn refused(error: String) -> AttemptReport {
    AttemptReport {
        error: Some(error),
        ..AttemptReport::of(AttemptDetail::AddressRefused, Duration::ZERO)
    }
}

/// The address to connect to for `broker`: resolved and judged by the guard.
///
/// # Errors
/// The attempt's report: refused by policy when the guard refused every address, a connection
/// failure when the name does not resolve.
pub(crate) async fn address_of(
    egress: &Egress,
    broker: &Broker,
) -> Result<SocketAddr, AttemptReport> {
    match egress.resolve(&broker.host, broker.port).await {
        Ok(addresses) => match addresses.first() {
            Some(address) => Ok(*address),
            None => Err(AttemptReport {
                error: Some("the broker's name resolved to no address".into()),
                ..AttemptReport::of(AttemptDetail::ConnectionFailed, Duration::ZERO)
            }),
        },
        Err(EgressError::Refused(why)) => Err(refused(format!("broker address refused: {why}"))),
        Err(EgressError::Lookup(_)) => Err(AttemptReport {
            error: Some("the broker's name did not resolve".into()),
            ..AttemptReport::of(AttemptDetail::ConnectionFailed, Duration::ZERO)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str], schemes: &[&str]) -> Result<BrokerList, String> {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        BrokerList::parse(&entries, schemes)
    }

    #[test]
    fn a_target_finds_its_broker_by_scheme_host_and_port() {
        let brokers = list(
            &[
                "nats://app:s%40cret@Broker.Example:4223",
                "amqp://guest:guest@127.0.0.1",
                "https://not-a-broker",
            ],
            &["nats", "amqp"],
        )
        .unwrap();
        let nats = brokers
            .find(&Url::parse("nats://broker.example:4223/a.b").unwrap())
            .unwrap();
        assert_eq!(nats.user.as_deref(), Some("app"));
        assert_eq!(nats.password.as_deref(), Some("s@cret"));
        assert!(
            brokers
                .find(&Url::parse("nats://broker.example/a.b").unwrap())
                .is_none(),
            "another port"
        );
        let amqp = brokers
            .find(&Url::parse("amqp://127.0.0.1:5672/%2f?exchange=e").unwrap())
            .unwrap();
        assert_eq!(amqp.port, 5672);
        assert!(
            brokers
                .find(&Url::parse("amqps://127.0.0.1/%2f?exchange=e").unwrap())
                .is_none(),
            "another scheme"
        );
        assert_eq!(format!("{nats:?}"), "nats://broker.example:4223");
    }

    #[test]
    fn a_bad_entry_is_refused_without_its_credentials() {
        let why = list(&["nats://user:pw@"], &["nats"]).unwrap_err();
        assert!(why.starts_with("transport.brokers: "), "{why}");
        assert!(!why.contains("pw"), "{why}");
        // Entries of other schemes are another destination's.
        assert!(list(&["amqp://user:pw@"], &["nats"]).unwrap().is_empty());
    }
}
