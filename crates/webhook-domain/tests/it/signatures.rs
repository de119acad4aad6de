//! Standard Webhooks signatures, and the headers of an outbound message.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;
use time::macros::datetime;
use webhook_domain::{
    CustomHeaders, OutboundMessage, SignatureError, SigningKeys, SigningSecret, WebhookScope, sign,
    verify,
};

use crate::fixtures::{NOW, NOW_UNIX, tutorial_event, webhook};

struct Vector {
    secret: &'static str,
    msg_id: &'static str,
    timestamp: i64,
    body: &'static str,
    signature: &'static str,
}

/// The two test vectors from `compat.md`, verbatim.
const VECTORS: [Vector; 2] = [
    Vector {
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: 1614265330,
        body: r#"{"test": 2432232314}"#,
        signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    },
    Vector {
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        msg_id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        timestamp: 1649367553,
        body: r#"{"email":"test@example.com","username":"test_user"}"#,
        signature: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    },
];

const TOLERANCE: i64 = 300;

impl Vector {
    fn secret(&self) -> SigningSecret {
        SigningSecret::parse(self.secret).unwrap()
    }

    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.timestamp).unwrap()
    }

    /// Verifies `header` for this vector with some parts replaced.
    fn verify_with(
        &self,
        secret: &SigningSecret,
        msg_id: &str,
        timestamp: i64,
        body: &str,
        header: &str,
    ) -> Result<(), SignatureError> {
        verify(
            std::slice::from_ref(secret),
            msg_id,
            timestamp,
            body.as_bytes(),
            header,
            self.now(),
            TOLERANCE,
        )
    }

    fn verify_header(&self, header: &str) -> Result<(), SignatureError> {
        self.verify_with(
            &self.secret(),
            self.msg_id,
            self.timestamp,
            self.body,
            header,
        )
    }
}

#[test]
fn standard_webhooks_vectors_sign_and_verify() {
    for v in &VECTORS {
        let signed = sign(&v.secret(), v.msg_id, v.timestamp, v.body.as_bytes());
        assert_eq!(signed, v.signature, "{}", v.msg_id);
        assert_eq!(v.verify_header(v.signature), Ok(()), "{}", v.msg_id);
        // The whsec_ prefix is optional when parsing.
        let bare = SigningSecret::parse(v.secret.trim_start_matches("whsec_")).unwrap();
        assert_eq!(bare, v.secret());
        assert_eq!(bare.expose(), v.secret);
    }
}

#[test]
fn tampering_with_body_id_or_timestamp_is_detected() {
    for v in &VECTORS {
        let s = v.secret();
        let sig = v.signature;
        let no_match = Err(SignatureError::NoMatch);
        let body_changes = [
            format!("{} ", v.body),
            format!(" {}", v.body),
            v.body.replacen('t', "T", 1),
            v.body[..v.body.len() - 1].to_owned(),
            String::new(),
        ];
        for body in &body_changes {
            assert_ne!(body, v.body);
            assert_eq!(
                v.verify_with(&s, v.msg_id, v.timestamp, body, sig),
                no_match,
                "{body}"
            );
        }
        for id in [
            format!("{}x", v.msg_id),
            v.msg_id.to_uppercase(),
            String::new(),
        ] {
            assert_eq!(
                v.verify_with(&s, &id, v.timestamp, v.body, sig),
                no_match,
                "{id}"
            );
        }
        for ts in [v.timestamp - 1, v.timestamp + 1] {
            assert_eq!(
                v.verify_with(&s, v.msg_id, ts, v.body, sig),
                no_match,
                "{ts}"
            );
        }
    }
}

#[test]
fn a_wrong_secret_is_rejected() {
    let others = [
        SigningSecret::parse(VECTORS[1].secret).unwrap(),
        SigningSecret::from_bytes(&[7; 32]).unwrap(),
    ];
    let v = &VECTORS[0];
    for other in &others {
        let got = v.verify_with(other, v.msg_id, v.timestamp, v.body, v.signature);
        assert_eq!(got, Err(SignatureError::NoMatch));
    }
    // Any one of several secrets may match.
    let secrets = [others[1].clone(), v.secret()];
    let got = verify(
        &secrets,
        v.msg_id,
        v.timestamp,
        v.body.as_bytes(),
        v.signature,
        v.now(),
        TOLERANCE,
    );
    assert_eq!(got, Ok(()));
}

#[test]
fn a_header_with_several_signatures_is_accepted_when_one_matches() {
    let v = &VECTORS[0];
    let wrong = VECTORS[1].signature;
    for header in [
        format!("{wrong} {}", v.signature),
        format!("{} {wrong}", v.signature),
        format!("v1,AAAA {wrong} {} v2,whatever", v.signature),
        format!("v1a,xyz  {}", v.signature),
    ] {
        assert_eq!(v.verify_header(&header), Ok(()), "{header}");
    }
}

#[test]
fn garbage_headers_are_rejected() {
    let v = &VECTORS[0];
    let good = v.signature.trim_start_matches("v1,");
    let raw = STANDARD.decode(good).unwrap();
    let truncated = format!("v1,{}", STANDARD.encode(&raw[..16]));
    let extended = format!("v1,{}", STANDARD.encode([raw.as_slice(), b"x"].concat()));
    for header in [
        String::new(),
        " ".to_owned(),
        "garbage".to_owned(),
        "v1,".to_owned(),
        "v1,!!!!".to_owned(),
        "v1,not base64 at all".to_owned(),
        good.to_owned(),
        format!("v2,{good}"),
        format!("v1, {good}"),
        format!("v1,{good}x"),
        truncated,
        extended,
        VECTORS[1].signature.to_owned(),
    ] {
        assert_eq!(
            v.verify_header(&header),
            Err(SignatureError::NoMatch),
            "{header:?}"
        );
    }
}

#[test]
fn timestamps_outside_the_tolerance_are_rejected() {
    let v = &VECTORS[0];
    let s = SigningSecret::parse(v.secret).unwrap();
    for (now_offset, expected) in [
        (0, Ok(())),
        (300, Ok(())),
        (-300, Ok(())),
        (
            301,
            Err(SignatureError::TimestampOutOfTolerance {
                skew_secs: 301,
                tolerance_secs: 300,
            }),
        ),
        (
            -301,
            Err(SignatureError::TimestampOutOfTolerance {
                skew_secs: -301,
                tolerance_secs: 300,
            }),
        ),
    ] {
        let now = OffsetDateTime::from_unix_timestamp(v.timestamp + now_offset).unwrap();
        let got = verify(
            std::slice::from_ref(&s),
            v.msg_id,
            v.timestamp,
            v.body.as_bytes(),
            v.signature,
            now,
            TOLERANCE,
        );
        assert_eq!(got, expected, "now = ts + {now_offset}");
    }
}

#[test]
fn extreme_timestamps_are_rejected_not_panicking() {
    let v = &VECTORS[0];
    for timestamp in [i64::MIN, i64::MIN + 1, -i64::MAX + 1_000, i64::MAX] {
        let got = std::panic::catch_unwind(|| {
            v.verify_with(&v.secret(), v.msg_id, timestamp, v.body, v.signature)
        });
        assert!(
            matches!(got, Ok(Err(SignatureError::TimestampOutOfTolerance { .. }))),
            "timestamp {timestamp}: {got:?}"
        );
    }
}

fn message(
    keys: Option<SigningKeys>,
    headers: CustomHeaders,
    now: OffsetDateTime,
) -> OutboundMessage {
    let mut hook = webhook(WebhookScope::Global);
    hook.signing_keys = keys;
    hook.custom_headers = headers;
    OutboundMessage::build(&tutorial_event(), &hook, now)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const EVENT_ID: &str = "cb8d4e96-30f0-4892-863f-44d49d634211";

#[test]
fn an_unsigned_message_has_exactly_the_standard_headers() {
    // Sub-second parts of `now` are dropped from webhook-timestamp.
    let now = NOW + time::Duration::milliseconds(750);
    let m = message(None, CustomHeaders::default(), now);
    assert_eq!(m.body, tutorial_event().to_json_bytes());
    let ts = NOW_UNIX.to_string();
    assert_eq!(
        m.headers,
        pairs(&[
            ("content-type", "application/json"),
            ("webhook-id", EVENT_ID),
            ("webhook-timestamp", &ts),
        ])
    );
    assert_eq!(m.header("webhook-signature"), None);
}

#[test]
fn a_signed_message_carries_a_signature_over_its_own_body() {
    let secret = SigningSecret::parse(VECTORS[0].secret).unwrap();
    let custom = CustomHeaders::new(pairs(&[
        ("X-Tenant", "acme"),
        ("Authorization", "Bearer s3cret"),
    ]))
    .unwrap();
    let m = message(Some(SigningKeys::new(secret.clone())), custom, NOW);
    let ts = NOW_UNIX.to_string();
    let signature = sign(&secret, EVENT_ID, NOW_UNIX, &m.body);
    assert_eq!(
        m.headers,
        pairs(&[
            ("content-type", "application/json"),
            ("webhook-id", EVENT_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &signature),
            ("Authorization", "Bearer s3cret"),
            ("X-Tenant", "acme"),
        ])
    );
    // A receiver verifies using only what it got.
    let id = m.header("Webhook-Id").unwrap();
    let timestamp: i64 = m.header("WEBHOOK-TIMESTAMP").unwrap().parse().unwrap();
    let header = m.header("webhook-signature").unwrap();
    assert_eq!(
        verify(&[secret], id, timestamp, &m.body, header, NOW, TOLERANCE),
        Ok(())
    );
    // Debug shows header names, never their values.
    let shown = format!("{m:?}");
    assert!(
        shown.contains("Authorization") && !shown.contains("s3cret"),
        "{shown}"
    );
}

#[test]
fn during_a_rotation_both_secrets_sign_and_each_verifies() {
    let old = SigningSecret::from_bytes(&[1; 32]).unwrap();
    let new = SigningSecret::from_bytes(&[2; 32]).unwrap();
    let rotated_at = datetime!(2026-02-28 12:00 UTC);
    let keys = SigningKeys::new(old.clone()).rotate(
        new.clone(),
        rotated_at,
        Duration::from_secs(2 * 86_400),
    );
    let m = message(Some(keys.clone()), CustomHeaders::default(), NOW);
    let header = m.header("webhook-signature").unwrap();
    assert_eq!(header.split(' ').count(), 2);
    for secret in [&new, &old] {
        let got = verify(
            std::slice::from_ref(secret),
            EVENT_ID,
            NOW_UNIX,
            &m.body,
            header,
            NOW,
            TOLERANCE,
        );
        assert_eq!(got, Ok(()));
    }
    // Once the grace period is over, only the new secret signs.
    let after = rotated_at + time::Duration::days(2);
    let m = message(Some(keys), CustomHeaders::default(), after);
    let header = m.header("webhook-signature").unwrap();
    let ts = after.unix_timestamp();
    assert_eq!(
        verify(&[new], EVENT_ID, ts, &m.body, header, after, TOLERANCE),
        Ok(())
    );
    assert_eq!(
        verify(&[old], EVENT_ID, ts, &m.body, header, after, TOLERANCE),
        Err(SignatureError::NoMatch)
    );
}
