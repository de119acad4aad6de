//! The event envelope `{id, ts, type, data, walletId}` and the validation of its type and data.
//!
//! The four Identus event types have their `data` checked (the id field is present, the state
//! field holds a state Identus defines); other type names are allowed for extension and their
//! `data` is passed through untouched.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::{EventId, Timestamp, WalletId};

/// One notification, exactly as receivers get it. The same `id` goes to every target and every
/// retry, so receivers can de-duplicate on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEvent")]
pub struct Event {
    id: EventId,
    ts: Timestamp,
    #[serde(rename = "type")]
    event_type: EventType,
    data: serde_json::Value,
    #[serde(rename = "walletId")]
    wallet_id: WalletId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: EventId,
    ts: Timestamp,
    #[serde(rename = "type")]
    event_type: EventType,
    data: serde_json::Value,
    #[serde(rename = "walletId")]
    wallet_id: WalletId,
}

impl TryFrom<RawEvent> for Event {
    type Error = EventError;

    fn try_from(raw: RawEvent) -> Result<Self, Self::Error> {
        Event::new(raw.id, raw.ts, raw.event_type, raw.data, raw.wallet_id)
    }
}

impl Event {
    /// Builds an event, validating `data` when the type is one of the four Identus types.
    ///
    /// # Errors
    /// [`EventError::Data`] naming the offending field when a known type's `data` is invalid.
    pub fn new(
        id: EventId,
        ts: Timestamp,
        event_type: EventType,
        data: serde_json::Value,
        wallet_id: WalletId,
    ) -> Result<Self, EventError> {
        event_type.validate_data(&data)?;
        Ok(Self {
            id,
            ts,
            event_type,
            data,
            wallet_id,
        })
    }

    pub fn id(&self) -> EventId {
        self.id
    }

    pub fn ts(&self) -> Timestamp {
        self.ts
    }

    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    pub fn data(&self) -> &serde_json::Value {
        &self.data
    }

    pub fn wallet_id(&self) -> WalletId {
        self.wallet_id
    }

    /// The compact JSON body that is sent, in envelope field order.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a tree of strings, numbers and JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    #[error(transparent)]
    Type(#[from] EventTypeError),
    #[error(transparent)]
    Data(#[from] EventDataError),
}

impl EventError {
    /// The path of the field at fault, such as `type` or `data.state`.
    pub fn field(&self) -> String {
        match self {
            EventError::Type(_) => "type".to_owned(),
            EventError::Data(e) => e.field(),
        }
    }
}

/// The kind of an event: one of the four Identus types, or a validated custom name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    ConnectionUpdated,
    IssueCredentialRecordUpdated,
    PresentationUpdated,
    DidStatusUpdated,
    /// A name matching `^[A-Za-z][A-Za-z0-9._-]{0,127}$` that is not one of the four above.
    Custom(String),
}

/// The longest custom event type name accepted.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// A custom event type name that does not match `^[A-Za-z][A-Za-z0-9._-]{0,127}$`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "type: {shown:?} is not a valid event type; use one of ConnectionUpdated, \
     IssueCredentialRecordUpdated, PresentationUpdated, DIDStatusUpdated, or a name matching \
     ^[A-Za-z][A-Za-z0-9._-]{{0,127}}$"
)]
pub struct EventTypeError {
    shown: String,
}

impl EventType {
    /// Parses a type name. The four Identus names are case-sensitive, as Identus sends them.
    ///
    /// # Errors
    /// [`EventTypeError`] when the name is empty, too long, or has a character outside the pattern.
    pub fn parse(name: &str) -> Result<Self, EventTypeError> {
        Ok(match name {
            "ConnectionUpdated" => EventType::ConnectionUpdated,
            "IssueCredentialRecordUpdated" => EventType::IssueCredentialRecordUpdated,
            "PresentationUpdated" => EventType::PresentationUpdated,
            "DIDStatusUpdated" => EventType::DidStatusUpdated,
            other => {
                let mut chars = other.chars();
                let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
                let rest_ok =
                    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if !first_ok || !rest_ok || other.len() > MAX_EVENT_TYPE_LEN {
                    return Err(EventTypeError {
                        shown: shorten(other),
                    });
                }
                EventType::Custom(other.to_owned())
            }
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            EventType::ConnectionUpdated => "ConnectionUpdated",
            EventType::IssueCredentialRecordUpdated => "IssueCredentialRecordUpdated",
            EventType::PresentationUpdated => "PresentationUpdated",
            EventType::DidStatusUpdated => "DIDStatusUpdated",
            EventType::Custom(name) => name,
        }
    }

    /// Checks `data` against the rules of a known type; custom types accept any JSON.
    ///
    /// # Errors
    /// [`EventDataError`] naming the first field at fault.
    pub fn validate_data(&self, data: &serde_json::Value) -> Result<(), EventDataError> {
        let Some(schema) = self.schema() else {
            return Ok(());
        };
        let Some(object) = data.as_object() else {
            return Err(EventDataError::NotAnObject {
                event_type: schema.type_name,
            });
        };
        let string_field = |field: &'static str| -> Result<Option<&str>, EventDataError> {
            match object.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(EventDataError::NotAString { field }),
            }
        };
        let require = |field: &'static str| -> Result<&str, EventDataError> {
            match string_field(field)? {
                Some(s) if !s.is_empty() => Ok(s),
                _ => Err(EventDataError::MissingField {
                    event_type: schema.type_name,
                    field,
                }),
            }
        };
        let one_of = |field: &'static str, value: &str, allowed: &[&str]| {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(EventDataError::UnknownValue {
                    field,
                    value: shorten(value),
                    allowed: allowed.join(", "),
                })
            }
        };
        require(schema.id_field)?;
        let state = require(schema.state_field)?;
        one_of(schema.state_field, state, schema.states)?;
        if let Some((role_field, roles)) = schema.role
            && let Some(role) = string_field(role_field)?
        {
            one_of(role_field, role, roles)?;
        }
        Ok(())
    }

    fn schema(&self) -> Option<&'static DataSchema> {
        match self {
            EventType::ConnectionUpdated => Some(&CONNECTION),
            EventType::IssueCredentialRecordUpdated => Some(&ISSUE_CREDENTIAL),
            EventType::PresentationUpdated => Some(&PRESENTATION),
            EventType::DidStatusUpdated => Some(&DID_STATUS),
            EventType::Custom(_) => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = EventTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::parse(s)
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        EventType::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// A known event type's `data` that breaks its rules. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventDataError {
    #[error("data: must be a JSON object for {event_type} events")]
    NotAnObject { event_type: &'static str },
    #[error("data.{field}: is required for {event_type} events and must be a non-empty string")]
    MissingField {
        event_type: &'static str,
        field: &'static str,
    },
    #[error("data.{field}: must be a string")]
    NotAString { field: &'static str },
    #[error("data.{field}: {value:?} is not allowed; expected one of {allowed}")]
    UnknownValue {
        field: &'static str,
        value: String,
        allowed: String,
    },
}

impl EventDataError {
    /// The path of the field at fault, such as `data.state`.
    pub fn field(&self) -> String {
        match self {
            EventDataError::NotAnObject { .. } => "data".to_owned(),
            EventDataError::MissingField { field, .. }
            | EventDataError::NotAString { field }
            | EventDataError::UnknownValue { field, .. } => format!("data.{field}"),
        }
    }
}

/// The deepest nesting of objects and arrays in a JSON text (brackets inside strings do not
/// count), read before parsing so that a text too deep is refused without building it: the
/// limit on event data that every inbound path applies. Malformed text gets some number; the
/// parser refuses it afterwards.
pub fn json_nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

struct DataSchema {
    type_name: &'static str,
    id_field: &'static str,
    state_field: &'static str,
    states: &'static [&'static str],
    role: Option<(&'static str, &'static [&'static str])>,
}

const CONNECTION: DataSchema = DataSchema {
    type_name: "ConnectionUpdated",
    id_field: "connectionId",
    state_field: "state",
    states: &[
        "InvitationGenerated",
        "InvitationReceived",
        "InvitationExpired",
        "ConnectionRequestPending",
        "ConnectionRequestSent",
        "ConnectionRequestReceived",
        "ConnectionResponsePending",
        "ConnectionResponseSent",
        "ConnectionResponseReceived",
        "ProblemReportPending",
        "ProblemReportSent",
        "ProblemReportReceived",
    ],
    role: Some(("role", &["Inviter", "Invitee"])),
};

const ISSUE_CREDENTIAL: DataSchema = DataSchema {
    type_name: "IssueCredentialRecordUpdated",
    id_field: "recordId",
    state_field: "protocolState",
    states: &[
        "OfferPending",
        "OfferSent",
        "OfferReceived",
        "RequestPending",
        "RequestGenerated",
        "RequestSent",
        "RequestReceived",
        "CredentialPending",
        "CredentialGenerated",
        "CredentialSent",
        "CredentialReceived",
        "ProblemReportPending",
        "ProblemReportSent",
        "ProblemReportReceived",
        "InvitationGenerated",
        "InvitationExpired",
    ],
    role: Some(("role", &["Issuer", "Holder"])),
};

const PRESENTATION: DataSchema = DataSchema {
    type_name: "PresentationUpdated",
    id_field: "presentationId",
    state_field: "status",
    states: &[
        "ProposalPending",
        "ProposalSent",
        "ProposalReceived",
        "ProposalRejected",
        "RequestPending",
        "RequestSent",
        "RequestReceived",
        "RequestRejected",
        "ProblemReportPending",
        "ProblemReportSent",
        "ProblemReportReceived",
        "PresentationPending",
        "PresentationGenerated",
        "PresentationSent",
        "PresentationReceived",
        "PresentationVerified",
        "PresentationVerificationFailed",
        "PresentationAccepted",
        "PresentationRejected",
        "InvitationGenerated",
        "InvitationExpired",
    ],
    role: Some(("role", &["Verifier", "Prover"])),
};

const DID_STATUS: DataSchema = DataSchema {
    type_name: "DIDStatusUpdated",
    id_field: "did",
    state_field: "status",
    states: &["CREATED", "PUBLICATION_PENDING", "PUBLISHED"],
    role: None,
};

/// Keeps error messages short when the offending input is long.
fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_brackets_outside_strings_only() {
        assert_eq!(json_nesting_depth(br#"{"a": 1}"#), 1);
        assert_eq!(json_nesting_depth(br#"{"a": [[{"b": {}}]]}"#), 5);
        assert_eq!(json_nesting_depth(br#"{"a": "[[[[{{{{\"[["}"#), 1);
        assert_eq!(json_nesting_depth(b"3"), 0);
    }
}
