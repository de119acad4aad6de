//! What the broker sources share: a message's body, headers and subject made into an event by
//! the source's mapping (`{"type", "data"}` in the body, the wallet from the URL, a header or a
//! subject token, the event id from the message's own id), and the publish of a batch of
//! them, repeated while storage is unavailable, that tells which messages to acknowledge and
//! which to refuse.
//!
//! It must not acknowledge anything itself (that is each broker's) and must not buffer more
//! than the batch it was handed: back-pressure is the broker's prefetch, unacknowledged.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;
use webhook_domain::{Event, EventId, EventType, Timestamp, WalletId};
use webhook_ports::{PublishEvents, PublishItem, Refusal, Shutdown};

/// The deepest `data` accepted, as the REST API's default `api.max_json_depth`.
const MAX_JSON_DEPTH: usize = 32;
/// The largest body accepted, as the REST API's default `api.max_body_bytes`.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The first wait before publishing again after storage was unavailable; it doubles up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Where a source takes each message's wallet from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WalletFrom {
    /// Every message goes to this wallet (`wallet=<id>`; the default wallet when not set).
    Fixed(WalletId),
    /// A message header (`wallet_from=header:<name>`).
    Header(String),
    /// A token of the subject or routing key, counted from 1 (`wallet_from=subject:<n>`).
    Token(usize),
}

/// Where a source takes each message's event id from, besides an `id` in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdFrom {
    /// The broker's own id of the message (JetStream's `Nats-Msg-Id`, AMQP's `message-id`),
    /// or, without one, its place in the stream.
    MessageId,
    /// A message header (`id_from=header:<name>`).
    Header(String),
}

/// How a source's messages become events: read from its URL's query.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    pub(crate) wallet: WalletFrom,
    pub(crate) id: IdFrom,
    /// Names the source in ids derived from message ids, so that two sources never derive
    /// the same id from the same message id.
    pub(crate) scope: String,
}

impl Mapping {
    /// The mapping of a source URL: `wallet`, `wallet_from` and `id_from` of its query; other
    /// query parameters are the source's own and left for it, unless they are in neither.
    ///
    /// # Errors
    /// A message saying which parameter is wrong and what would be right.
    pub(crate) fn of_url(url: &Url, own: &[&str], scope: String) -> Result<Self, String> {
        let mut wallet = None;
        let mut id = IdFrom::MessageId;
        for (name, value) in url.query_pairs() {
            match &*name {
                "wallet" => {
                    let parsed = value.parse::<uuid::Uuid>().map_err(|_| {
                        format!("wallet={value:?} is not a wallet id; write a UUID")
                    })?;
                    wallet = Some(WalletFrom::Fixed(WalletId::from_uuid(parsed)));
                }
                "wallet_from" => {
                    wallet = Some(match value.split_once(':') {
                        Some(("header", header)) if !header.is_empty() => {
                            WalletFrom::Header(header.to_owned())
                        }
                        Some(("subject", n)) => match n.parse::<usize>() {
                            Ok(n) if n >= 1 => WalletFrom::Token(n),
                            _ => {
                                return Err(format!(
                                    "wallet_from={value:?}: the token is counted from 1, as in subject:2"
                                ));
                            }
                        },
                        _ => {
                            return Err(format!(
                                "wallet_from={value:?}: write header:<name> or subject:<n>"
                            ));
                        }
                    });
                }
                "id_from" => {
                    id = match value.split_once(':') {
                        Some(("header", header)) if !header.is_empty() => {
                            IdFrom::Header(header.to_owned())
                        }
                        None if value == "message-id" => IdFrom::MessageId,
                        _ => {
                            return Err(format!(
                                "id_from={value:?}: write message-id or header:<name>"
                            ));
                        }
                    };
                }
                other if own.contains(&other) => {}
                other => {
                    let mut known = vec!["wallet", "wallet_from", "id_from"];
                    known.extend(own);
                    return Err(format!(
                        "unknown parameter {other:?}; the known ones are {}",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(Self {
            wallet: wallet.unwrap_or(WalletFrom::Fixed(WalletId::DEFAULT)),
            id,
            scope,
        })
    }
}

/// One message as the mapping reads it.
pub(crate) struct Inbound<'a> {
    /// The broker's id of the message when it has one, else its place (`stream:sequence`).
    pub(crate) message_id: String,
    /// The subject or routing key.
    pub(crate) subject: &'a str,
    /// Its headers' values by name (case-insensitive).
    pub(crate) header: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) body: &'a [u8],
}

/// A message's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(rename = "type")]
    event_type: String,
    data: serde_json::Value,
    /// The event id, when the producer chose one.
    id: Option<uuid::Uuid>,
}

impl Mapping {
    /// The event a message carries, or why it carries none (a reason to refuse it for good).
    pub(crate) fn item(&self, message: &Inbound<'_>) -> Result<PublishItem, String> {
        if message.body.len() > MAX_BODY_BYTES {
            return Err(format!(
                "the body is {} bytes; at most {MAX_BODY_BYTES}",
                message.body.len()
            ));
        }
        let depth = webhook_domain::json_nesting_depth(message.body);
        if depth > MAX_JSON_DEPTH + 1 {
            return Err(format!(
                "the body is nested {depth} deep; at most {MAX_JSON_DEPTH} in data"
            ));
        }
        let body: Body = serde_json::from_slice(message.body).map_err(|e| {
            format!("the body is not an event ({{\"type\": ..., \"data\": ...}}): {e}")
        })?;
        let wallet = match &self.wallet {
            WalletFrom::Fixed(id) => *id,
            WalletFrom::Header(name) => {
                let value = (message.header)(name)
                    .ok_or_else(|| format!("no {name} header names the wallet"))?;
                parse_wallet(&value)
                    .ok_or_else(|| format!("header {name}: {value:?} is not a wallet id"))?
            }
            WalletFrom::Token(n) => {
                let token = message.subject.split('.').nth(n - 1).ok_or_else(|| {
                    format!(
                        "subject {:?} has no token {n} to name the wallet",
                        message.subject
                    )
                })?;
                parse_wallet(token).ok_or_else(|| {
                    format!(
                        "token {n} of subject {:?} is not a wallet id",
                        message.subject
                    )
                })?
            }
        };
        let id = match (body.id, &self.id) {
            (Some(id), _) => EventId::from_uuid(id),
            (None, IdFrom::MessageId) => self.derived_id(&message.message_id),
            (None, IdFrom::Header(name)) => {
                let value = (message.header)(name)
                    .ok_or_else(|| format!("no {name} header gives the event id"))?;
                self.derived_id(&value)
            }
        };
        let event_type = EventType::parse(&body.event_type).map_err(|e| e.to_string())?;
        let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
        let event =
            Event::new(id, now, event_type, body.data, wallet).map_err(|e| e.to_string())?;
        Ok(PublishItem {
            event,
            idempotency: None,
        })
    }

    /// The event id of a message id: a UUID as it is, anything else hashed with the source's
    /// scope, so that reading the same message again gives the same event.
    fn derived_id(&self, message_id: &str) -> EventId {
        if let Ok(uuid) = message_id.parse::<uuid::Uuid>() {
            return EventId::from_uuid(uuid);
        }
        let digest = Sha256::new()
            .chain_update(self.scope.as_bytes())
            .chain_update([0])
            .chain_update(message_id.as_bytes())
            .finalize();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        EventId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
}

fn parse_wallet(text: &str) -> Option<WalletId> {
    text.trim()
        .parse::<uuid::Uuid>()
        .ok()
        .map(WalletId::from_uuid)
}

/// What to do with one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its event is committed (or was before): acknowledge it.
    Published,
    /// It can never be published: refuse it for good (terminate, reject), reported.
    Refused(String),
}

/// Publishes the events of `batch` (each a message's event, or why it has none) and answers
/// one verdict per message, in order; `None` when `shutdown` came before the sink answered or
/// while storage was unavailable (acknowledge nothing then). All valid events go in one
/// publish; when that is refused (an unknown wallet in one of them, say), each goes alone, so
/// one bad message refuses only itself. While storage is unavailable the same events are
/// published again, with the same ids, waiting longer each time.
pub(crate) async fn publish(
    sink: &Arc<dyn PublishEvents>,
    source: &str,
    batch: Vec<(String, Result<PublishItem, String>)>,
    shutdown: &mut Shutdown,
) -> Option<Vec<Verdict>> {
    let items: Vec<PublishItem> = batch
        .iter()
        .filter_map(|(_, item)| item.as_ref().ok().cloned())
        .collect();
    let together = if items.is_empty() {
        Some(Ok(()))
    } else {
        publish_until_answered(sink, items, shutdown)
            .await
            .map(|answer| answer.map(|_| ()))
    }?;
    let mut verdicts = Vec::with_capacity(batch.len());
    for (input, item) in batch {
        let verdict = match (item, &together) {
            (Err(reason), _) => Verdict::Refused(reason),
            (Ok(_), Ok(())) => Verdict::Published,
            (Ok(item), Err(_)) => match publish_until_answered(sink, vec![item], shutdown).await? {
                Ok(()) => Verdict::Published,
                Err(reason) => Verdict::Refused(reason),
            },
        };
        if let Verdict::Refused(reason) = &verdict {
            sink.refused(Refusal {
                source: source.to_owned(),
                input,
                reason: reason.clone(),
            });
        }
        verdicts.push(verdict);
    }
    Some(verdicts)
}

/// One publish, repeated while the error is transient: `Ok` once committed, `Err` with the
/// reason of a refusal for good, `None` at shutdown, also while a publish has not answered: it
/// is abandoned, its messages stay unacknowledged and come again, to be replayed.
async fn publish_until_answered(
    sink: &Arc<dyn PublishEvents>,
    items: Vec<PublishItem>,
    shutdown: &mut Shutdown,
) -> Option<Result<(), String>> {
    let mut wait = FIRST_RETRY;
    loop {
        let answer = tokio::select! {
            () = &mut *shutdown => return None,
            answer = sink.publish(items.clone()) => answer,
        };
        match answer {
            Ok(_) => return Some(Ok(())),
            Err(e) if e.is_transient() => {
                tokio::select! {
                    () = &mut *shutdown => return None,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(MAX_RETRY);
            }
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(query: &str) -> Result<Mapping, String> {
        let url = Url::parse(&format!("nats://h/STREAM?{query}")).unwrap();
        Mapping::of_url(&url, &["consumer"], "nats STREAM".into())
    }

    fn item(mapping: &Mapping, subject: &str, body: &str, id: &str) -> Result<PublishItem, String> {
        let header = |name: &str| {
            name.eq_ignore_ascii_case("Wallet-Id")
                .then(|| "6e3c2a8e-8a4b-4c59-9a53-0f54e4a1c001".to_owned())
        };
        mapping.item(&Inbound {
            message_id: id.into(),
            subject,
            header: &header,
            body: body.as_bytes(),
        })
    }

    #[test]
    fn the_wallet_comes_from_where_the_url_says() {
        let body = r#"{"type":"Custom","data":{}}"#;
        let wallet =
            |m: &Mapping, subject| item(m, subject, body, "1").map(|i| i.event.wallet_id());
        let fixed = mapping("wallet=6e3c2a8e-8a4b-4c59-9a53-0f54e4a1c002").unwrap();
        assert_eq!(
            wallet(&fixed, "a").unwrap().to_string(),
            "6e3c2a8e-8a4b-4c59-9a53-0f54e4a1c002"
        );
        assert_eq!(
            wallet(&mapping("").unwrap(), "a").unwrap(),
            WalletId::DEFAULT
        );
        let header = mapping("wallet_from=header:wallet-id&consumer=c").unwrap();
        assert_eq!(
            wallet(&header, "a").unwrap().to_string(),
            "6e3c2a8e-8a4b-4c59-9a53-0f54e4a1c001"
        );
        let token = mapping("wallet_from=subject:2").unwrap();
        assert_eq!(
            wallet(&token, "events.6e3c2a8e-8a4b-4c59-9a53-0f54e4a1c003.x")
                .unwrap()
                .to_string(),
            "6e3c2a8e-8a4b-4c59-9a53-0f54e4a1c003"
        );
        assert!(wallet(&token, "events").unwrap_err().contains("no token 2"));
        assert!(
            wallet(&token, "events.nope")
                .unwrap_err()
                .contains("not a wallet id")
        );
    }

    #[test]
    fn bad_parameters_are_refused_naming_what_would_be_right() {
        for (query, expected) in [
            ("wallet=x", "is not a wallet id"),
            ("wallet_from=subject:0", "counted from 1"),
            ("wallet_from=queue", "header:<name> or subject:<n>"),
            ("id_from=seq", "message-id or header:<name>"),
            (
                "walet=1",
                "unknown parameter \"walet\"; the known ones are wallet, wallet_from, id_from, consumer",
            ),
        ] {
            let why = mapping(query).unwrap_err();
            assert!(why.contains(expected), "{query}: {why}");
        }
    }

    #[test]
    fn the_same_message_gives_the_same_event_id_and_another_source_another() {
        let body = r#"{"type":"Custom","data":{"n":1}}"#;
        let m = mapping("").unwrap();
        let first = item(&m, "a", body, "STREAM:7").unwrap().event.id();
        assert_eq!(item(&m, "a", body, "STREAM:7").unwrap().event.id(), first);
        assert_ne!(item(&m, "a", body, "STREAM:8").unwrap().event.id(), first);
        let other = Mapping {
            scope: "nats OTHER".into(),
            ..m.clone()
        };
        assert_ne!(
            item(&other, "a", body, "STREAM:7").unwrap().event.id(),
            first
        );
        // A UUID message id, or an id in the body, is the event id itself.
        let uuid = "6e3c2a8e-8a4b-4c59-9a53-0f54e4a1c00f";
        assert_eq!(
            item(&m, "a", body, uuid).unwrap().event.id().to_string(),
            uuid
        );
        let with_id = format!(r#"{{"type":"Custom","data":{{}},"id":"{uuid}"}}"#);
        assert_eq!(
            item(&m, "a", &with_id, "x").unwrap().event.id().to_string(),
            uuid
        );
    }

    #[test]
    fn a_body_that_is_no_event_is_refused_with_its_reason() {
        let m = mapping("").unwrap();
        for (body, expected) in [
            ("not json", "is not an event"),
            (r#"{"type":"Custom"}"#, "missing field `data`"),
            (
                r#"{"type":"Custom","data":{},"extra":1}"#,
                "unknown field `extra`",
            ),
            (r#"{"type":"has space","data":{}}"#, "type"),
            (r#"{"type":"ConnectionUpdated","data":{}}"#, "data"),
        ] {
            let why = item(&m, "a", body, "1").unwrap_err();
            assert!(why.contains(expected), "{body}: {why}");
        }
        let deep = format!(
            r#"{{"type":"Custom","data":{}{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(item(&m, "a", &deep, "1").unwrap_err().contains("nested"));
    }
}
