//! `EventType::parse`: exactly the four Identus names and the names matching
//! `^[A-Za-z][A-Za-z0-9._-]{0,127}$` are accepted, an accepted name reads back unchanged (text,
//! `Display`, JSON), and a refusal quotes a bounded part of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_domain::EventType;
use webhook_domain::limits::MAX_EVENT_TYPE_LEN;

/// The pattern written out a second time, independently of the parser, as the oracle.
fn matches_pattern(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() <= MAX_EVENT_TYPE_LEN
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
}

const IDENTUS_NAMES: [&str; 4] = [
    "ConnectionUpdated",
    "IssueCredentialRecordUpdated",
    "PresentationUpdated",
    "DIDStatusUpdated",
];

fuzz_target!(|name: &str| {
    match EventType::parse(name) {
        Ok(parsed) => {
            assert!(matches_pattern(name), "accepted {name:?}");
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.to_string(), name);
            assert_eq!(EventType::parse(parsed.as_str()).as_ref(), Ok(&parsed));
            assert_eq!(
                matches!(parsed, EventType::Custom(_)),
                !IDENTUS_NAMES.contains(&name),
                "{name:?} became {parsed:?}"
            );
            let json = serde_json::to_string(&parsed).expect("an event type serialises");
            let back: EventType = serde_json::from_str(&json).expect("its JSON parses");
            assert_eq!(back, parsed);
        }
        Err(error) => {
            assert!(!matches_pattern(name), "refused {name:?}: {error}");
            let message = error.to_string();
            assert!(message.starts_with("type: "), "{message}");
            // The input is cut to 64 characters, each escaped to at most 10 (`\u{10ffff}`).
            assert!(message.len() <= 64 * 10 + 300, "{} bytes", message.len());
        }
    }
});
