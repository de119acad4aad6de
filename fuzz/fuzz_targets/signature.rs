//! Standard Webhooks signatures: a signature we make verifies (alone, among other header parts,
//! and from every active key after a rotation), a changed body or id does not, the timestamp
//! tolerance is enforced, and an arbitrary `webhook-signature` header verifies only when one of
//! its space-separated parts is exactly the signature we would make.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use webhook_domain::{SignatureError, SigningKeys, SigningSecret, sign, verify};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    key: &'a [u8],
    next_key: [u8; 32],
    msg_id: &'a str,
    timestamp: i64,
    body: &'a [u8],
    header: &'a str,
    /// The receiver's clock, as seconds after `timestamp` (clamped to what `time` represents).
    skew: i32,
    tolerance: u16,
}

fuzz_target!(|input: Input<'_>| {
    let secret = match SigningSecret::from_bytes(input.key) {
        Ok(secret) => secret,
        Err(_) => {
            assert!(!(24..=64).contains(&input.key.len()));
            return;
        }
    };
    let tolerance = i64::from(input.tolerance);
    let Ok(now) =
        OffsetDateTime::from_unix_timestamp(input.timestamp.saturating_add(i64::from(input.skew)))
    else {
        return;
    };
    let skew = now.unix_timestamp().saturating_sub(input.timestamp);
    let in_time = skew.unsigned_abs() <= tolerance.unsigned_abs();
    let check = |header: &str, msg_id: &str, body: &[u8]| {
        verify(
            std::slice::from_ref(&secret),
            msg_id,
            input.timestamp,
            body,
            header,
            now,
            tolerance,
        )
    };

    let ours = sign(&secret, input.msg_id, input.timestamp, input.body);
    let with_noise = format!("{} {ours}", input.header);
    for header in [ours.as_str(), with_noise.as_str()] {
        let result = check(header, input.msg_id, input.body);
        if in_time {
            assert_eq!(result, Ok(()), "{header:?}");
        } else {
            assert!(
                matches!(result, Err(SignatureError::TimestampOutOfTolerance { .. })),
                "skew {skew} tolerance {tolerance}: {result:?}"
            );
            return;
        }
    }

    let mut other_body = input.body.to_vec();
    other_body.push(b'!');
    assert_eq!(
        check(&ours, input.msg_id, &other_body),
        Err(SignatureError::NoMatch)
    );
    let other_id = format!("{}x", input.msg_id);
    assert_eq!(
        check(&ours, &other_id, input.body),
        Err(SignatureError::NoMatch)
    );

    let arbitrary = check(input.header, input.msg_id, input.body);
    assert_eq!(
        arbitrary.is_ok(),
        input.header.split(' ').any(|part| part == ours),
        "{:?} against {ours}",
        input.header
    );

    // After a rotation both keys sign, and each verifies the header on its own.
    let next = SigningSecret::from_bytes(&input.next_key).expect("32 bytes is a valid key");
    let keys = SigningKeys::new(secret.clone()).rotate(
        next.clone(),
        now,
        std::time::Duration::from_secs(60),
    );
    let header = keys.signature_header(input.msg_id, input.timestamp, input.body, now);
    for key in [&secret, &next] {
        let result = verify(
            std::slice::from_ref(key),
            input.msg_id,
            input.timestamp,
            input.body,
            &header,
            now,
            tolerance,
        );
        assert_eq!(result, Ok(()), "{header}");
    }
});
