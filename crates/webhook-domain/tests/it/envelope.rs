//! The event envelope on the wire: exact bytes, parsing back, and what parsing refuses.

use serde_json::{Value, json};
use webhook_domain::{Event, EventType, WalletId};

use crate::fixtures::{event_id, tutorial_data, tutorial_event, tutorial_ts};

/// The tutorial's example event as webhookd sends it: compact, envelope fields in the order
/// id, ts, type, data, walletId. serde_json (without `preserve_order`) keeps `data` in a
/// `BTreeMap`, so the keys inside `data` come out sorted, not in the tutorial's order.
const TUTORIAL_BODY: &str = concat!(
    r#"{"id":"cb8d4e96-30f0-4892-863f-44d49d634211","#,
    r#""ts":"2023-07-06T12:01:19.769427Z","#,
    r#""type":"ConnectionUpdated","#,
    r#""data":{"#,
    r#""connectionId":"c10787cf-99bb-47f4-99bb-1fdcca32b673","#,
    r#""createdAt":"2023-07-06T12:01:19.760126Z","#,
    r#""invitation":{"#,
    r#""from":"did:peer:2.Ez6LS...jIiXX0","#,
    r#""id":"c10787cf-99bb-47f4-99bb-1fdcca32b673","#,
    r#""invitationUrl":"https://my.domain.com/path?_oob=eyJpZCI6...bXX19","#,
    r#""type":"https://didcomm.org/out-of-band/2.0/invitation"},"#,
    r#""kind":"Connection","#,
    r#""label":"Connect with Alice","#,
    r#""role":"Inviter","#,
    r#""self":"c10787cf-99bb-47f4-99bb-1fdcca32b673","#,
    r#""state":"InvitationGenerated"},"#,
    r#""walletId":"00000000-0000-0000-0000-000000000000"}"#,
);

/// The same event as the tutorial prints it (pretty, `data` keys in their original order).
const TUTORIAL_PRETTY: &str = r#"{
  "id": "cb8d4e96-30f0-4892-863f-44d49d634211",
  "ts": "2023-07-06T12:01:19.769427Z",
  "type": "ConnectionUpdated",
  "data": {
    "connectionId": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
    "label": "Connect with Alice",
    "role": "Inviter",
    "state": "InvitationGenerated",
    "invitation": {
      "id": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
      "type": "https://didcomm.org/out-of-band/2.0/invitation",
      "from": "did:peer:2.Ez6LS...jIiXX0",
      "invitationUrl": "https://my.domain.com/path?_oob=eyJpZCI6...bXX19"
    },
    "createdAt": "2023-07-06T12:01:19.760126Z",
    "self": "c10787cf-99bb-47f4-99bb-1fdcca32b673",
    "kind": "Connection"
  },
  "walletId": "00000000-0000-0000-0000-000000000000"
}"#;

fn body(event: &Event) -> String {
    String::from_utf8(event.to_json_bytes()).unwrap()
}

/// The tutorial body with one top-level member replaced, removed (`None`) or added.
fn tutorial_with(key: &str, value: Option<Value>) -> String {
    let mut envelope: serde_json::Map<String, Value> = serde_json::from_str(TUTORIAL_BODY).unwrap();
    match value {
        Some(v) => envelope.insert(key.to_owned(), v),
        None => envelope.remove(key),
    };
    Value::Object(envelope).to_string()
}

#[test]
fn tutorial_event_is_sent_as_exact_compact_json() {
    let event = tutorial_event();
    assert_eq!(body(&event), TUTORIAL_BODY);
    assert_eq!(event.id(), event_id());
    assert_eq!(event.ts(), tutorial_ts());
    assert_eq!(event.event_type(), &EventType::ConnectionUpdated);
    assert_eq!(event.data(), &tutorial_data());
    assert_eq!(event.wallet_id(), WalletId::DEFAULT);
}

#[test]
fn envelope_parses_back_to_the_same_event() {
    for text in [TUTORIAL_BODY, TUTORIAL_PRETTY] {
        let parsed: Event = serde_json::from_str(text).unwrap();
        assert_eq!(parsed, tutorial_event());
        assert_eq!(body(&parsed), TUTORIAL_BODY, "re-serialised from {text}");
    }
}

#[test]
fn unknown_top_level_fields_are_refused() {
    for (key, value) in [
        ("extra", json!(1)),
        ("wallet_id", json!("00000000-0000-0000-0000-000000000000")),
        ("Type", json!("ConnectionUpdated")),
        ("metadata", json!({})),
    ] {
        let text = tutorial_with(key, Some(value));
        let err = serde_json::from_str::<Event>(&text).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{key}: {err}");
    }
}

#[test]
fn each_envelope_field_is_required() {
    for key in ["id", "ts", "type", "data", "walletId"] {
        let text = tutorial_with(key, None);
        let err = serde_json::from_str::<Event>(&text).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{key}: {err}");
    }
}

#[test]
fn malformed_envelope_values_are_refused() {
    for (key, value) in [
        ("id", json!("not-a-uuid")),
        ("walletId", json!(0)),
        ("ts", json!("yesterday")),
        ("ts", json!("2023-07-06 12:01:19")),
        ("ts", json!("2023-07-06T12:01:19")),
        ("type", json!("1ConnectionUpdated")),
        ("type", json!("")),
    ] {
        let text = tutorial_with(key, Some(value.clone()));
        assert!(
            serde_json::from_str::<Event>(&text).is_err(),
            "{key}={value}"
        );
    }
}

#[test]
fn ts_is_normalised_to_utc_microseconds_with_z() {
    for (given, sent) in [
        (
            "2023-07-06T14:01:19.769427+02:00",
            "2023-07-06T12:01:19.769427Z",
        ),
        (
            "2023-07-06T07:31:19.769427-04:30",
            "2023-07-06T12:01:19.769427Z",
        ),
        (
            "2023-07-06T12:01:19.769427999Z",
            "2023-07-06T12:01:19.769427Z",
        ),
        ("2023-07-06T12:01:19Z", "2023-07-06T12:01:19.000000Z"),
        ("2023-07-06T12:01:19.5+00:00", "2023-07-06T12:01:19.500000Z"),
    ] {
        let parsed: Event = serde_json::from_str(&tutorial_with("ts", Some(json!(given)))).unwrap();
        assert_eq!(parsed.ts().to_string(), sent, "{given}");
        let expected = TUTORIAL_BODY.replace("2023-07-06T12:01:19.769427Z", sent);
        assert_eq!(body(&parsed), expected, "{given}");
    }
}

#[test]
fn a_custom_event_type_passes_data_through_untouched() {
    let payloads = [
        json!({"anything": [1, 2.5, null, true], "state": "NotAnIdentusState", "nested": {"b": 1, "a": 2}}),
        json!([1, "two", null]),
        json!("just a string"),
        json!(42),
        json!(null),
        json!({}),
    ];
    for data in payloads {
        let event = Event::new(
            event_id(),
            tutorial_ts(),
            EventType::parse("acme.order_created-v2").unwrap(),
            data.clone(),
            WalletId::DEFAULT,
        )
        .unwrap();
        assert_eq!(event.data(), &data);
        let expected = format!(
            r#"{{"id":"cb8d4e96-30f0-4892-863f-44d49d634211","ts":"2023-07-06T12:01:19.769427Z","type":"acme.order_created-v2","data":{data},"walletId":"00000000-0000-0000-0000-000000000000"}}"#
        );
        assert_eq!(body(&event), expected);
        let parsed: Event = serde_json::from_str(&expected).unwrap();
        assert_eq!(parsed, event);
    }
}

#[test]
fn a_known_type_with_invalid_data_is_refused_when_parsed() {
    let mut data = tutorial_data();
    data["state"] = json!("Bogus");
    let err = serde_json::from_str::<Event>(&tutorial_with("data", Some(data))).unwrap_err();
    assert!(err.to_string().starts_with("data.state:"), "{err}");
}

#[test]
fn type_names_are_case_sensitive_so_a_wrong_case_name_is_a_custom_type() {
    let text = tutorial_with("type", Some(json!("connectionUpdated")))
        .replace("InvitationGenerated", "whatever");
    let parsed: Event = serde_json::from_str(&text).unwrap();
    assert_eq!(
        parsed.event_type(),
        &EventType::Custom("connectionUpdated".into())
    );
    assert_eq!(parsed.data()["state"], "whatever");
}

/// Found by the `event_envelope` fuzz target: a number with more digits than an `f64` holds
/// was read with serde_json's fast, approximate float parsing, so the body sent parsed back
/// to a neighbouring float and a stored event did not read back as itself.
#[test]
fn long_numbers_in_data_survive_a_round_trip() {
    let long = format!("{}2.0", "5".repeat(106));
    let text = tutorial_with("type", Some(json!("acme.measured"))).replacen(
        "\"data\":{",
        &format!("\"data\":{{\"reading\":{long},"),
        1,
    );
    let event: Event = serde_json::from_str(&text).unwrap();
    let sent = body(&event);
    let again: Event = serde_json::from_str(&sent).unwrap();
    assert_eq!(again, event, "{sent}");
    assert_eq!(body(&again), sent);
}
