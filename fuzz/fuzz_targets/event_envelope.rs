//! The event envelope `{id, ts, type, data, walletId}` as JSON: whatever parses is a valid
//! event whose compact form (what receivers get) parses back to the same event, carries exactly
//! the five envelope fields, and writes `ts` in the envelope's fixed format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_domain::Event;

fuzz_target!(|json: &[u8]| {
    let Ok(event) = serde_json::from_slice::<Event>(json) else {
        return;
    };
    event
        .event_type()
        .validate_data(event.data())
        .expect("a parsed event has valid data for its type");

    let sent = event.to_json_bytes();
    let again: Event = serde_json::from_slice(&sent).expect("the sent envelope parses");
    assert_eq!(again, event);
    assert_eq!(again.to_json_bytes(), sent, "serialising is deterministic");

    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&sent).expect("the envelope is a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data", "id", "ts", "type", "walletId"]);

    let ts = object["ts"].as_str().expect("ts is a string");
    assert_eq!(ts.len(), "2023-07-06T12:01:19.769427Z".len(), "{ts}");
    assert!(ts.ends_with('Z'), "{ts}");
    assert_eq!(object["id"].as_str(), Some(event.id().to_string().as_str()));
    assert_eq!(object["type"].as_str(), Some(event.event_type().as_str()));
});
