//! Webhook targets: a validated URL, validated custom headers, an optional event-type filter,
//! signing keys and retry policy, and whether the target is enabled.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;
use url::Url;

use crate::{Event, EventType, RetryPolicy, SigningKeys, WalletId, WebhookId};

/// The longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// `"a"`, `"a or b"`, `"a, b or c"`: the schemes to name in an error.
fn one_of(schemes: &[&str]) -> String {
    match schemes {
        [] => "a scheme that some destination serves".to_owned(),
        [only] => (*only).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// An absolute URL with a host and no userinfo or fragment, of a scheme some destination serves
/// (`http` and `https` unless the caller names others). It keeps the text exactly as given
/// (Identus answers with the URL as registered), and its parsed form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WebhookUrl {
    text: String,
    parsed: Url,
}

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookUrlError {
    #[error("url: is {len} bytes long; the limit is {MAX_URL_LEN}")]
    TooLong { len: usize },
    #[error("url: contains whitespace or a control character; percent-encode it")]
    InvalidCharacter,
    #[error("url: is not a valid absolute URL ({reason})")]
    Malformed { reason: String },
    #[error("url: scheme {scheme:?} is not allowed; use {allowed}")]
    Scheme { scheme: String, allowed: String },
    #[error("url: has no host; give one such as https://example.com/hook")]
    MissingHost,
    #[error("url: must not contain a user name or password; send credentials in customHeaders")]
    Userinfo,
    #[error("url: must not contain a #fragment; it is never sent to the server")]
    Fragment,
}

impl WebhookUrl {
    /// The schemes [`Self::parse`] accepts: the HTTP destination's.
    pub const HTTP_SCHEMES: &'static [&'static str] = &["http", "https"];

    /// Parses and validates an `http` or `https` target URL.
    ///
    /// # Errors
    /// A [`WebhookUrlError`] that says what is wrong and what would be right.
    pub fn parse(text: &str) -> Result<Self, WebhookUrlError> {
        Self::parse_with_schemes(text, Self::HTTP_SCHEMES)
    }

    /// Parses and validates a target URL whose scheme is one of `schemes` (lower case, as the
    /// URL standard spells a parsed scheme): the schemes that the configured destinations serve.
    ///
    /// # Errors
    /// A [`WebhookUrlError`] that says what is wrong and what would be right.
    pub fn parse_with_schemes(text: &str, schemes: &[&str]) -> Result<Self, WebhookUrlError> {
        Self::parse_where(text, Some(schemes))
    }

    /// Parses a target URL read back from storage, whatever its scheme: it was checked against
    /// the destinations of its day when it was registered, and a destination that is gone since
    /// is the dispatcher's to report, not a reason to refuse the stored webhook.
    ///
    /// # Errors
    /// As [`Self::parse`], but never [`WebhookUrlError::Scheme`].
    pub fn parse_stored(text: &str) -> Result<Self, WebhookUrlError> {
        Self::parse_where(text, None)
    }

    fn parse_where(text: &str, schemes: Option<&[&str]>) -> Result<Self, WebhookUrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(WebhookUrlError::TooLong { len: text.len() });
        }
        // The URL standard silently strips or drops these; refuse them so that what is stored is
        // exactly what the user sent.
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(WebhookUrlError::InvalidCharacter);
        }
        let url = Url::parse(text).map_err(|e| WebhookUrlError::Malformed {
            reason: e.to_string(),
        })?;
        if let Some(schemes) = schemes.filter(|s| !s.contains(&url.scheme())) {
            return Err(WebhookUrlError::Scheme {
                scheme: url.scheme().chars().take(32).collect(),
                allowed: one_of(schemes),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(WebhookUrlError::MissingHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookUrlError::Userinfo);
        }
        if url.fragment().is_some() {
            return Err(WebhookUrlError::Fragment);
        }
        Ok(Self {
            text: text.to_owned(),
            parsed: url,
        })
    }

    /// The URL's scheme, in lower case: which destination sends to it.
    pub fn scheme(&self) -> &str {
        self.parsed.scheme()
    }

    /// The URL as registered.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_https(&self) -> bool {
        self.parsed.scheme() == "https"
    }

    /// The host as written in the URL (a name, an IPv4 address, or a bracketed IPv6 address).
    pub fn host(&self) -> &str {
        self.parsed.host_str().unwrap_or_default()
    }

    /// The host as an IP address when it is one, in any spelling the URL standard reads as an
    /// address (`127.1`, `0x7f000001`, `2130706433`, `[::ffff:127.0.0.1]`); `None` for a name.
    pub fn ip_host(&self) -> Option<std::net::IpAddr> {
        match self.parsed.host()? {
            url::Host::Ipv4(v4) => Some(v4.into()),
            url::Host::Ipv6(v6) => Some(v6.into()),
            url::Host::Domain(_) => None,
        }
    }

    /// The port, or the scheme's default port.
    pub fn port(&self) -> u16 {
        self.parsed.port_or_known_default().unwrap_or(80)
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.as_str())
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        WebhookUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Most custom headers one webhook may carry.
pub const MAX_CUSTOM_HEADERS: usize = 32;
/// Longest header name, in bytes.
pub const MAX_HEADER_NAME_LEN: usize = 128;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 4096;
/// Largest sum of names and values, in bytes.
pub const MAX_HEADERS_TOTAL_LEN: usize = 16 * 1024;

/// Header names that webhookd sets itself or that would break HTTP framing.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "user-agent",
];

/// Headers sent with every request to one target, such as `Authorization`. Values may hold
/// credentials, so `Debug` never shows them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct CustomHeaders(BTreeMap<String, String>);

/// Why a set of custom headers was refused. Each variant names the header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CustomHeadersError {
    #[error("customHeaders: {count} headers given; the limit is {MAX_CUSTOM_HEADERS}")]
    TooMany { count: usize },
    #[error(
        "customHeaders: the headers add up to {len} bytes; the limit is {MAX_HEADERS_TOTAL_LEN}"
    )]
    TooLarge { len: usize },
    #[error(
        "customHeaders: {name:?} is not a valid header name; use 1 to {MAX_HEADER_NAME_LEN} \
         letters, digits or !#$%&'*+-.^_`|~"
    )]
    InvalidName { name: String },
    #[error("customHeaders.{name}: the value contains CR, LF, NUL or another control character")]
    InvalidValue { name: String },
    #[error("customHeaders.{name}: the value is longer than {MAX_HEADER_VALUE_LEN} bytes")]
    ValueTooLong { name: String },
    #[error("customHeaders.{name}: is set by webhookd itself and cannot be overridden")]
    Reserved { name: String },
    #[error("customHeaders.{name}: is given twice (header names are case-insensitive)")]
    Duplicate { name: String },
}

impl CustomHeaders {
    /// Validates header names (RFC 7230 tokens, not reserved) and values (no control
    /// characters but tab), and the count and size limits.
    ///
    /// # Errors
    /// The first [`CustomHeadersError`] found.
    pub fn new(
        headers: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, CustomHeadersError> {
        let mut map = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut total = 0usize;
        for (name, value) in headers {
            if map.len() == MAX_CUSTOM_HEADERS {
                return Err(CustomHeadersError::TooMany {
                    count: MAX_CUSTOM_HEADERS + 1,
                });
            }
            let shown: String = name.chars().take(MAX_HEADER_NAME_LEN).collect();
            if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN || !name.bytes().all(is_tchar) {
                return Err(CustomHeadersError::InvalidName { name: shown });
            }
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
                return Err(CustomHeadersError::Reserved { name });
            }
            if value.len() > MAX_HEADER_VALUE_LEN {
                return Err(CustomHeadersError::ValueTooLong { name });
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(CustomHeadersError::InvalidValue { name });
            }
            if !seen.insert(lower) {
                return Err(CustomHeadersError::Duplicate { name });
            }
            total += name.len() + value.len();
            if total > MAX_HEADERS_TOTAL_LEN {
                return Err(CustomHeadersError::TooLarge { len: total });
            }
            map.insert(name, value);
        }
        Ok(Self(map))
    }

    /// One `Authorization: Bearer <token>` header, as Identus sends for env-configured targets.
    ///
    /// # Errors
    /// [`CustomHeadersError::InvalidValue`] when the token holds control characters.
    pub fn bearer(token: &str) -> Result<Self, CustomHeadersError> {
        Self::new([("Authorization".to_owned(), format!("Bearer {token}"))])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, without values: safe to log.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl TryFrom<BTreeMap<String, String>> for CustomHeaders {
    type Error = CustomHeadersError;

    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        CustomHeaders::new(map)
    }
}

impl From<CustomHeaders> for BTreeMap<String, String> {
    fn from(headers: CustomHeaders) -> Self {
        headers.0
    }
}

impl fmt::Debug for CustomHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Which events a target receives; `None` on a webhook means every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventTypeFilter(BTreeSet<EventType>);

impl EventTypeFilter {
    pub fn new(types: impl IntoIterator<Item = EventType>) -> Self {
        Self(types.into_iter().collect())
    }

    pub fn accepts(&self, event_type: &EventType) -> bool {
        self.0.contains(event_type)
    }

    pub fn iter(&self) -> impl Iterator<Item = &EventType> {
        self.0.iter()
    }
}

/// Whose events a target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "walletId", rename_all = "camelCase")]
pub enum WebhookScope {
    /// Only this wallet's events.
    Wallet(WalletId),
    /// Every wallet's events (`GLOBAL_WEBHOOK_URL`).
    Global,
}

/// A registered target. Every field is a validated value, so any `Webhook` is a valid one.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: WebhookId,
    pub scope: WebhookScope,
    pub url: WebhookUrl,
    pub custom_headers: CustomHeaders,
    /// `None`: every event type.
    pub event_types: Option<EventTypeFilter>,
    /// `None`: requests are not signed.
    pub signing_keys: Option<SigningKeys>,
    /// `None`: the service's default policy.
    pub retry_policy: Option<RetryPolicy>,
    pub enabled: bool,
    /// Strict ordering: one attempt at a time, in publish order; a delivery waits until every
    /// earlier one to this target is final (delivered, exhausted or cancelled).
    pub ordered: bool,
    /// `None`: as fast as the target answers, within the in-flight limits.
    pub rate_limit: Option<RateLimit>,
    pub created_at: OffsetDateTime,
    /// Which version of its settings and state this is: 1 when created, one more at every
    /// change that storage makes. A change is written only over the revision it was read at, so
    /// that two read-modify-writes of one webhook cannot undo each other.
    pub revision: u64,
}

/// The most attempts per second a target gets, from 1 to [`RateLimit::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RateLimit(std::num::NonZeroU32);

/// A rate limit out of range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rateLimit: must be between 1 and {max} attempts per second, got {0}", max = RateLimit::MAX)]
pub struct RateLimitError(pub u32);

impl RateLimit {
    pub const MAX: u32 = 10_000;

    /// # Errors
    /// [`RateLimitError`] outside 1 to [`RateLimit::MAX`].
    pub fn per_second(per_second: u32) -> Result<Self, RateLimitError> {
        std::num::NonZeroU32::new(per_second)
            .filter(|n| n.get() <= Self::MAX)
            .map(Self)
            .ok_or(RateLimitError(per_second))
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The least time between the starts of two attempts at the target: 1/*r* seconds for *r*
    /// attempts per second, rounded down to the nanosecond.
    pub fn spacing(self) -> Duration {
        Duration::from_secs(1) / self.get()
    }
}

impl TryFrom<u32> for RateLimit {
    type Error = RateLimitError;

    fn try_from(per_second: u32) -> Result<Self, Self::Error> {
        Self::per_second(per_second)
    }
}

impl From<RateLimit> for u32 {
    fn from(limit: RateLimit) -> u32 {
        limit.get()
    }
}

impl Webhook {
    /// An enabled target for every event type, unsigned, unordered and unlimited, with the
    /// default retry policy, at revision 1.
    pub fn new(
        id: WebhookId,
        scope: WebhookScope,
        url: WebhookUrl,
        custom_headers: CustomHeaders,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            scope,
            url,
            custom_headers,
            event_types: None,
            signing_keys: None,
            retry_policy: None,
            enabled: true,
            ordered: false,
            rate_limit: None,
            created_at,
            revision: 1,
        }
    }

    /// Whether `other` has the same settings and state: everything but the id, the creation
    /// time and the revision.
    pub fn same_settings(&self, other: &Webhook) -> bool {
        let aligned = Webhook {
            id: other.id,
            created_at: other.created_at,
            revision: other.revision,
            ..self.clone()
        };
        aligned == *other
    }

    /// The retry policy its deliveries follow: its own, or the service's `default`.
    pub fn effective_retry_policy<'a>(&'a self, default: &'a RetryPolicy) -> &'a RetryPolicy {
        self.retry_policy.as_ref().unwrap_or(default)
    }

    /// Whether this target must get a delivery for `event`: it is enabled, its scope covers
    /// the event's wallet, and its filter (if any) accepts the event's type.
    pub fn wants(&self, event: &Event) -> bool {
        let in_scope = match self.scope {
            WebhookScope::Global => true,
            WebhookScope::Wallet(wallet) => wallet == event.wallet_id(),
        };
        let type_ok = self
            .event_types
            .as_ref()
            .is_none_or(|filter| filter.accepts(event.event_type()));
        self.enabled && in_scope && type_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_spaces_attempt_starts_evenly_over_a_second() {
        let spacing = |r| RateLimit::per_second(r).unwrap().spacing();
        assert_eq!(spacing(1), Duration::from_secs(1));
        assert_eq!(spacing(4), Duration::from_millis(250));
        assert_eq!(spacing(3), Duration::from_nanos(333_333_333));
        assert_eq!(spacing(RateLimit::MAX), Duration::from_micros(100));
    }

    #[test]
    fn keeps_the_url_as_registered() {
        let url = WebhookUrl::parse("http://localhost:9095").unwrap();
        assert_eq!(url.as_str(), "http://localhost:9095");
        assert_eq!((url.host(), url.port()), ("localhost", 9095));
    }

    #[test]
    fn accepts_plain_http_and_https_urls() {
        for ok in [
            "http://localhost:9095",
            "https://example.com/hooks?x=1",
            "http://127.0.0.1:8080/a/b",
            "http://[::1]:9000/",
        ] {
            assert!(WebhookUrl::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn accepts_the_schemes_the_caller_names_and_says_which_they_are() {
        let schemes = ["http", "https", "memory"];
        let url = WebhookUrl::parse_with_schemes("memory://inbox/a", &schemes).unwrap();
        assert_eq!((url.scheme(), url.host()), ("memory", "inbox"));
        assert_eq!(
            WebhookUrl::parse_with_schemes("MEMORY://inbox", &schemes)
                .unwrap()
                .scheme(),
            "memory",
            "schemes are compared as the URL standard lowers them"
        );
        let refused = WebhookUrl::parse_with_schemes("nats://broker/subject", &schemes);
        assert_eq!(
            refused.unwrap_err().to_string(),
            "url: scheme \"nats\" is not allowed; use http, https or memory"
        );
        assert!(matches!(
            WebhookUrl::parse("memory://inbox"),
            Err(WebhookUrlError::Scheme { .. })
        ));
        assert_eq!(
            WebhookUrl::parse_stored("nats://broker/subject")
                .unwrap()
                .scheme(),
            "nats"
        );
        // The other rules hold whatever the scheme.
        assert_eq!(
            WebhookUrl::parse_with_schemes("memory://u:p@inbox", &schemes).unwrap_err(),
            WebhookUrlError::Userinfo
        );
        assert_eq!(
            WebhookUrl::parse_stored("nats://broker/s#x").unwrap_err(),
            WebhookUrlError::Fragment
        );
    }

    #[test]
    fn refuses_bad_urls_with_the_reason() {
        let cases: &[(&str, WebhookUrlError)] = &[
            (
                "ftp://example.com",
                WebhookUrlError::Scheme {
                    scheme: "ftp".into(),
                    allowed: "http or https".into(),
                },
            ),
            ("https://user:pw@example.com", WebhookUrlError::Userinfo),
            ("https://example.com/a b", WebhookUrlError::InvalidCharacter),
            (" https://example.com", WebhookUrlError::InvalidCharacter),
            (
                "https://example.com/\r\n",
                WebhookUrlError::InvalidCharacter,
            ),
            ("https://example.com/#frag", WebhookUrlError::Fragment),
            (
                "file:///etc/passwd",
                WebhookUrlError::Scheme {
                    scheme: "file".into(),
                    allowed: "http or https".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(WebhookUrl::parse(input).unwrap_err(), *expected, "{input}");
        }
        assert!(matches!(
            WebhookUrl::parse("not a url"),
            Err(WebhookUrlError::InvalidCharacter)
        ));
        assert!(matches!(
            WebhookUrl::parse("example.com"),
            Err(WebhookUrlError::Malformed { .. })
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            WebhookUrl::parse(&long),
            Err(WebhookUrlError::TooLong { .. })
        ));
        let msg = WebhookUrl::parse("ftp://x").unwrap_err().to_string();
        assert_eq!(msg, "url: scheme \"ftp\" is not allowed; use http or https");
    }

    fn headers(pairs: &[(&str, &str)]) -> Result<CustomHeaders, CustomHeadersError> {
        CustomHeaders::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn validates_custom_headers() {
        assert!(headers(&[("Authorization", "Bearer x"), ("X-Trace", "a\tb")]).is_ok());
        let name = |n: &str| n.to_string();
        let cases: Vec<(Vec<(&str, &str)>, CustomHeadersError)> = vec![
            (
                vec![("Bad Name", "v")],
                CustomHeadersError::InvalidName {
                    name: name("Bad Name"),
                },
            ),
            (
                vec![("", "v")],
                CustomHeadersError::InvalidName { name: name("") },
            ),
            (
                vec![("X-A", "a\r\nInjected: 1")],
                CustomHeadersError::InvalidValue { name: name("X-A") },
            ),
            (
                vec![("X-A", "a\0")],
                CustomHeadersError::InvalidValue { name: name("X-A") },
            ),
            (
                vec![("Content-Type", "text/plain")],
                CustomHeadersError::Reserved {
                    name: name("Content-Type"),
                },
            ),
            (
                vec![("host", "evil")],
                CustomHeadersError::Reserved { name: name("host") },
            ),
            (
                vec![("Webhook-Signature", "v1,x")],
                CustomHeadersError::Reserved {
                    name: name("Webhook-Signature"),
                },
            ),
            (
                vec![("X-A", "1"), ("x-a", "2")],
                CustomHeadersError::Duplicate { name: name("x-a") },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(headers(&input).unwrap_err(), expected, "{input:?}");
        }
        let many: Vec<(String, String)> = (0..=MAX_CUSTOM_HEADERS)
            .map(|i| (format!("X-{i}"), "v".to_string()))
            .collect();
        assert!(matches!(
            CustomHeaders::new(many),
            Err(CustomHeadersError::TooMany { .. })
        ));
        let long = "v".repeat(MAX_HEADER_VALUE_LEN + 1);
        assert!(matches!(
            headers(&[("X-A", &long)]),
            Err(CustomHeadersError::ValueTooLong { .. })
        ));
    }

    #[test]
    fn a_target_follows_its_own_retry_policy_or_the_default() {
        let at = time::macros::datetime!(2026-11-28 12:00 UTC);
        let hook = Webhook::new(
            WebhookId::from_uuid(uuid::Uuid::nil()),
            WebhookScope::Global,
            WebhookUrl::parse("https://a.example/hook").unwrap(),
            CustomHeaders::default(),
            at,
        );
        let default = RetryPolicy::identus();
        assert_eq!(hook.effective_retry_policy(&default), &default);
        let own = RetryPolicy::new(
            crate::Backoff::Fixed {
                interval: Duration::from_secs(1),
            },
            2,
            None,
        )
        .unwrap();
        let with_own = Webhook {
            retry_policy: Some(own.clone()),
            ..hook
        };
        assert_eq!(with_own.effective_retry_policy(&default), &own);
    }

    #[test]
    fn same_settings_looks_past_the_id_creation_time_and_revision() {
        let at = time::macros::datetime!(2026-11-28 12:00 UTC);
        let hook = Webhook::new(
            WebhookId::from_uuid(uuid::Uuid::nil()),
            WebhookScope::Global,
            WebhookUrl::parse("https://a.example/hook").unwrap(),
            CustomHeaders::bearer("one").unwrap(),
            at,
        );
        let twin = Webhook {
            id: WebhookId::from_uuid(uuid::Uuid::from_u128(7)),
            created_at: at + time::Duration::DAY,
            revision: 9,
            ..hook.clone()
        };
        assert!(hook.same_settings(&twin));
        let changed = [
            Webhook {
                url: WebhookUrl::parse("https://b.example/hook").unwrap(),
                ..twin.clone()
            },
            Webhook {
                custom_headers: CustomHeaders::bearer("two").unwrap(),
                ..twin.clone()
            },
            Webhook {
                enabled: false,
                ..twin.clone()
            },
            Webhook {
                scope: WebhookScope::Wallet(WalletId::DEFAULT),
                ..twin
            },
        ];
        for other in changed {
            assert!(!hook.same_settings(&other), "{other:?}");
        }
    }

    #[test]
    fn debug_never_shows_header_values() {
        let h = CustomHeaders::bearer("s3cret-token").unwrap();
        let shown = format!("{h:?}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("Authorization"));
    }

    #[test]
    fn custom_headers_serialise_as_a_json_object() {
        let h = headers(&[("X-B", "2"), ("X-A", "1")]).unwrap();
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"X-A":"1","X-B":"2"}"#
        );
        let bad: Result<CustomHeaders, _> = serde_json::from_str(r#"{"Host":"x"}"#);
        assert!(bad.is_err());
    }
}
