//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, several space-separated while a secret is being rotated.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";
/// Fewest secret bytes accepted.
pub const MIN_SECRET_BYTES: usize = 24;
/// Most secret bytes accepted.
pub const MAX_SECRET_BYTES: usize = 64;

/// A signing key: 24 to 64 random bytes, written `whsec_<base64>`. `Debug` never shows it, and
/// `==` compares in constant time (for secrets of equal length).
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SigningSecret {}

/// Why a secret or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error(
        "secret: must be whsec_ followed by base64 of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
    )]
    InvalidSecret,
    #[error(
        "webhook-timestamp: is {skew_secs} s away from now; at most {tolerance_secs} s is allowed"
    )]
    TimestampOutOfTolerance { skew_secs: i64, tolerance_secs: i64 },
    #[error("webhook-signature: no v1 signature matches any of the secrets")]
    NoMatch,
}

impl SigningSecret {
    /// Parses `whsec_<base64>` (the prefix may be left out).
    ///
    /// # Errors
    /// [`SignatureError::InvalidSecret`] for bad base64 or a length out of bounds.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SignatureError::InvalidSecret)?;
        Self::from_bytes(&bytes)
    }

    /// Wraps raw key bytes, typically fresh random ones from the caller.
    ///
    /// # Errors
    /// [`SignatureError::InvalidSecret`] when there are fewer than 24 or more than 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SignatureError::InvalidSecret);
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The secret in its shareable form. Handle with care: this is the key itself.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl Serialize for SigningSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expose())
    }
}

impl<'de> Deserialize<'de> for SigningSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        SigningSecret::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One signature, `v1,<base64>`.
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(msg_id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Checks a `webhook-signature` header against one or more secrets, in constant time per
/// comparison, and that `timestamp` is within `tolerance_secs` of `now`.
///
/// # Errors
/// [`SignatureError::TimestampOutOfTolerance`] or [`SignatureError::NoMatch`].
pub fn verify(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
    now: OffsetDateTime,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    // The timestamp comes from a header: saturate rather than overflow on hostile values.
    let skew_secs = now.unix_timestamp().saturating_sub(timestamp);
    if skew_secs.unsigned_abs() > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::TimestampOutOfTolerance {
            skew_secs,
            tolerance_secs,
        });
    }
    let candidates: Vec<Vec<u8>> = signature_header
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let matched = secrets.iter().any(|secret| {
        candidates.iter().any(|candidate| {
            secret
                .mac(msg_id, timestamp, body)
                .verify_slice(candidate)
                .is_ok()
        })
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// A former secret that keeps signing until `until`, so receivers can switch over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiringSecret {
    pub secret: SigningSecret,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// A target's signing keys: the current one and any still in their grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeys {
    current: SigningSecret,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retiring: Vec<RetiringSecret>,
}

impl SigningKeys {
    pub fn new(current: SigningSecret) -> Self {
        Self {
            current,
            retiring: Vec::new(),
        }
    }

    pub fn current(&self) -> &SigningSecret {
        &self.current
    }

    /// Makes `next` the current secret; the old one keeps signing until `now + grace`.
    /// Secrets whose grace period is over are dropped.
    pub fn rotate(
        &self,
        next: SigningSecret,
        now: OffsetDateTime,
        grace: std::time::Duration,
    ) -> Self {
        let mut retiring: Vec<RetiringSecret> = self
            .retiring
            .iter()
            .filter(|r| r.until > now)
            .cloned()
            .collect();
        retiring.push(RetiringSecret {
            secret: self.current.clone(),
            until: crate::add_saturating(now, grace),
        });
        Self {
            current: next,
            retiring,
        }
    }

    /// The secrets that sign at `now`: the current one first.
    pub fn active(&self, now: OffsetDateTime) -> impl Iterator<Item = &SigningSecret> {
        std::iter::once(&self.current).chain(
            self.retiring
                .iter()
                .filter(move |r| r.until > now)
                .map(|r| &r.secret),
        )
    }

    /// The `webhook-signature` value: one signature per active secret, space-separated.
    pub fn signature_header(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        now: OffsetDateTime,
    ) -> String {
        self.active(now)
            .map(|secret| sign(secret, msg_id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let s = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(s.expose(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(SigningSecret::parse("whsec_short").is_err());
        assert!(SigningSecret::parse("whsec_!!!!").is_err());
        assert!(SigningSecret::from_bytes(&[7; 23]).is_err());
        assert!(SigningSecret::from_bytes(&[7; 65]).is_err());
        assert_eq!(format!("{s:?}"), "SigningSecret(<redacted>)");
    }

    #[test]
    fn rotation_signs_with_both_secrets_during_the_grace_period() {
        let old = SigningSecret::from_bytes(&[1; 32]).unwrap();
        let new = SigningSecret::from_bytes(&[2; 32]).unwrap();
        let now = datetime!(2026-01-01 00:00 UTC);
        let keys = SigningKeys::new(old.clone()).rotate(
            new.clone(),
            now,
            std::time::Duration::from_secs(3600),
        );
        let header = keys.signature_header("msg", 1, b"{}", now);
        assert_eq!(header.split(' ').count(), 2);
        for secret in [&old, &new] {
            verify(
                std::slice::from_ref(secret),
                "msg",
                1,
                b"{}",
                &header,
                datetime!(1970-01-01 00:00:01 UTC),
                300,
            )
            .unwrap();
        }
        let later = now + time::Duration::hours(2);
        assert_eq!(
            keys.signature_header("msg", 1, b"{}", later)
                .split(' ')
                .count(),
            1
        );
    }

    /// A signature that differs from the right one at its first byte, at its last byte, or in
    /// length is refused by `verify` (HMAC's constant-time `verify_slice`); so is a secret that
    /// differs likewise, under `==` (constant-time too).
    #[test]
    fn secret_comparisons_refuse_every_near_miss() {
        let secret = SigningSecret::from_bytes(&[5; 32]).unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1000).unwrap();
        let right = secret.mac("m", 1000, b"x").finalize().into_bytes().to_vec();
        let check = |tag: &[u8]| {
            let header = format!("v1,{}", STANDARD.encode(tag));
            verify(
                std::slice::from_ref(&secret),
                "m",
                1000,
                b"x",
                &header,
                now,
                300,
            )
        };
        assert_eq!(check(&right), Ok(()));
        let mut first = right.clone();
        first[0] ^= 1;
        let mut last = right.clone();
        *last.last_mut().unwrap() ^= 1;
        let shorter = &right[..right.len() - 1];
        let longer = [&right[..], &[0]].concat();
        for (name, tag) in [
            ("first byte", &first[..]),
            ("last byte", &last[..]),
            ("shorter", shorter),
            ("longer", &longer[..]),
        ] {
            assert_eq!(check(tag), Err(SignatureError::NoMatch), "{name}");
        }

        let mut bytes = [5u8; 32];
        assert_eq!(secret, SigningSecret::from_bytes(&bytes).unwrap());
        bytes[0] = 6;
        assert_ne!(
            secret,
            SigningSecret::from_bytes(&bytes).unwrap(),
            "first byte"
        );
        let mut bytes = [5u8; 32];
        bytes[31] = 6;
        assert_ne!(
            secret,
            SigningSecret::from_bytes(&bytes).unwrap(),
            "last byte"
        );
        assert_ne!(
            secret,
            SigningSecret::from_bytes(&[5; 33]).unwrap(),
            "longer"
        );
    }

    #[test]
    fn verify_checks_the_timestamp_tolerance() {
        let s = SigningSecret::from_bytes(&[3; 32]).unwrap();
        let sig = sign(&s, "m", 1000, b"x");
        let now = OffsetDateTime::from_unix_timestamp(1000 + 301).unwrap();
        assert!(matches!(
            verify(&[s], "m", 1000, b"x", &sig, now, 300),
            Err(SignatureError::TimestampOutOfTolerance { .. })
        ));
    }
}
