//! Identifiers (UUID newtypes) and the state names read back from storage: an accepted id
//! writes one canonical form (36 characters, lower case, hyphenated) that parses back to it,
//! text and JSON accept the same inputs, and a state name parses only from its own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_domain::{CancelReason, DeliveryStateKind, EventId, JobState, JobStopReason, WalletId};

fuzz_target!(|text: &str| {
    let parsed = text.parse::<EventId>();
    let from_json = serde_json::from_value::<EventId>(serde_json::Value::String(text.to_owned()));
    assert_eq!(parsed.as_ref().ok(), from_json.as_ref().ok(), "{text:?}");
    if let Ok(id) = parsed {
        let canonical = id.to_string();
        assert_eq!(canonical.len(), 36, "{canonical}");
        assert!(
            canonical
                .chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{canonical}"
        );
        assert_eq!(canonical.parse::<EventId>().ok(), Some(id));
        // Every id type reads the same text as the same UUID.
        let wallet: WalletId = text.parse().expect("the same text is a wallet id");
        assert_eq!(wallet.as_uuid(), id.as_uuid());
        assert_eq!(wallet == WalletId::DEFAULT, id.as_uuid().is_nil());
    }

    if let Some(kind) = DeliveryStateKind::parse(text) {
        assert_eq!(kind.as_str(), text);
    }
    if let Some(reason) = CancelReason::parse(text) {
        assert_eq!(reason.as_str(), text);
    }
    if let Some(state) = JobState::parse(text, None) {
        assert_eq!(state.as_str(), text);
        assert_eq!(state.stop_reason(), None);
    }
    if let Some(reason) = JobStopReason::parse(text) {
        assert_eq!(reason.as_str(), text);
    }
    // A stored job state is two columns: its name, and the reason of a stopped job.
    if let Some((name, reason)) = text.split_once('\n')
        && let Some(state) = JobState::parse(name, Some(reason))
    {
        assert_eq!(state.as_str(), name);
        assert_eq!(state.stop_reason().map(JobStopReason::as_str), Some(reason));
    }
});
