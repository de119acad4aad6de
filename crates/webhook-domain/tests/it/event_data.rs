//! Validation of the four Identus event types' `data`, and of event type names. The state lists
//! are copied from `compat.md`, not from the source, so a drift in either shows up here.

use serde_json::{Value, json};
use webhook_domain::{Event, EventError, EventType, WalletId};

use crate::fixtures::{event_id, tutorial_data, tutorial_ts};

struct Schema {
    name: &'static str,
    id: &'static str,
    state: &'static str,
    states: &'static [&'static str],
    roles: &'static [&'static str],
}

const SCHEMAS: [Schema; 4] = [
    Schema {
        name: "ConnectionUpdated",
        id: "connectionId",
        state: "state",
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
        roles: &["Inviter", "Invitee"],
    },
    Schema {
        name: "IssueCredentialRecordUpdated",
        id: "recordId",
        state: "protocolState",
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
        roles: &["Issuer", "Holder"],
    },
    Schema {
        name: "PresentationUpdated",
        id: "presentationId",
        state: "status",
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
        roles: &["Verifier", "Prover"],
    },
    Schema {
        name: "DIDStatusUpdated",
        id: "did",
        state: "status",
        states: &["CREATED", "PUBLICATION_PENDING", "PUBLISHED"],
        roles: &[],
    },
];

/// Builds an event of `event_type` with `data_json` and checks it is accepted, or refused with
/// an error naming `expected`'s field path (and a message that starts with that path).
fn check(event_type: &str, data_json: &str, expected: Result<(), &str>) {
    let ty = EventType::parse(event_type).unwrap();
    let data: Value = serde_json::from_str(data_json).unwrap();
    let built = Event::new(
        event_id(),
        tutorial_ts(),
        ty.clone(),
        data.clone(),
        WalletId::DEFAULT,
    );
    let got = built.as_ref().map(|_| ()).map_err(EventError::field);
    assert_eq!(
        got.as_ref().map(|_| ()).map_err(String::as_str),
        expected,
        "{event_type} {data_json}"
    );
    if let Err(e) = &built {
        let message = e.to_string();
        assert!(
            message.starts_with(&format!("{}:", e.field())),
            "message {message:?} should start with the field path"
        );
    }
    let validated = ty.validate_data(&data).map_err(|e| e.field());
    assert_eq!(
        validated, got,
        "validate_data disagrees: {event_type} {data_json}"
    );
}

/// `{"<id>": "<id value>", "<state>": "<state value>"}` plus `extra` members.
fn data(s: &Schema, id: Value, state: Value, extra: &[(&str, Value)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert(s.id.to_owned(), id);
    map.insert(s.state.to_owned(), state);
    for (k, v) in extra {
        map.insert((*k).to_owned(), v.clone());
    }
    Value::Object(map).to_string()
}

/// `data` with the given members only.
fn only(members: &[(&str, Value)]) -> String {
    Value::Object(
        members
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
    .to_string()
}

fn path(field: &str) -> String {
    format!("data.{field}")
}

#[test]
fn state_lists_match_compat_md() {
    let counts: Vec<usize> = SCHEMAS.iter().map(|s| s.states.len()).collect();
    assert_eq!(counts, [12, 16, 21, 3]);
}

#[test]
fn every_listed_state_is_accepted() {
    for s in &SCHEMAS {
        for state in s.states {
            check(s.name, &data(s, json!("id-1"), json!(state), &[]), Ok(()));
        }
    }
    check("ConnectionUpdated", &tutorial_data().to_string(), Ok(()));
}

#[test]
fn the_id_field_is_required_and_must_be_a_non_empty_string() {
    for s in &SCHEMAS {
        let state = json!(s.states[0]);
        let id = path(s.id);
        check(s.name, &only(&[(s.state, state.clone())]), Err(&id));
        for bad in [json!(""), json!(null)] {
            check(
                s.name,
                &only(&[(s.id, bad), (s.state, state.clone())]),
                Err(&id),
            );
        }
        for not_a_string in [json!(42), json!(true), json!(["x"]), json!({"id": "x"})] {
            check(s.name, &data(s, not_a_string, state.clone(), &[]), Err(&id));
        }
        // The id is checked before the state: both wrong names the id.
        check(s.name, &only(&[(s.state, json!("Bogus"))]), Err(&id));
        // Any non-empty string will do, even a single space.
        check(s.name, &data(s, json!(" "), state, &[]), Ok(()));
    }
}

#[test]
fn the_state_field_must_hold_a_listed_state_exactly() {
    for s in &SCHEMAS {
        let field = path(s.state);
        let id = json!("id-1");
        check(s.name, &only(&[(s.id, id.clone())]), Err(&field));
        let mut bad_values = vec![
            json!(null),
            json!(""),
            json!("Bogus"),
            json!(format!(" {}", s.states[0])),
            json!(format!("{}\n", s.states[0])),
        ];
        for state in s.states {
            for wrong_case in [state.to_lowercase(), state.to_uppercase()] {
                if wrong_case != *state {
                    bad_values.push(json!(wrong_case));
                }
            }
        }
        for not_a_string in [json!(1), json!(false), json!([s.states[0]]), json!({})] {
            bad_values.push(not_a_string);
        }
        for bad in bad_values {
            check(s.name, &data(s, id.clone(), bad, &[]), Err(&field));
        }
    }
    // A state from another type's list, or under another type's field name, is refused.
    check(
        "ConnectionUpdated",
        &only(&[("connectionId", json!("c")), ("state", json!("OfferSent"))]),
        Err("data.state"),
    );
    check(
        "PresentationUpdated",
        &only(&[
            ("presentationId", json!("p")),
            ("status", json!("PUBLISHED")),
        ]),
        Err("data.status"),
    );
    check(
        "ConnectionUpdated",
        &only(&[
            ("connectionId", json!("c")),
            ("status", json!("InvitationGenerated")),
        ]),
        Err("data.state"),
    );
    // The tutorial writes "Published"; Identus sends "PUBLISHED".
    check(
        "DIDStatusUpdated",
        &only(&[
            ("did", json!("did:prism:1")),
            ("status", json!("Published")),
        ]),
        Err("data.status"),
    );
}

#[test]
fn the_role_is_optional_but_must_be_a_listed_role_when_given() {
    for s in SCHEMAS.iter().filter(|s| !s.roles.is_empty()) {
        let (id, state) = (json!("id-1"), json!(s.states[0]));
        check(s.name, &data(s, id.clone(), state.clone(), &[]), Ok(()));
        check(
            s.name,
            &data(s, id.clone(), state.clone(), &[("role", json!(null))]),
            Ok(()),
        );
        for role in s.roles {
            check(
                s.name,
                &data(s, id.clone(), state.clone(), &[("role", json!(role))]),
                Ok(()),
            );
        }
        let mut bad_roles = vec![json!("Bogus"), json!(""), json!(7), json!([s.roles[0]])];
        bad_roles.extend(s.roles.iter().map(|r| json!(r.to_lowercase())));
        for bad in bad_roles {
            check(
                s.name,
                &data(s, id.clone(), state.clone(), &[("role", bad)]),
                Err("data.role"),
            );
        }
    }
    // DIDStatusUpdated has no role: any value is passed through.
    let did = &SCHEMAS[3];
    check(
        did.name,
        &data(
            did,
            json!("did:prism:1"),
            json!("PUBLISHED"),
            &[("role", json!(5))],
        ),
        Ok(()),
    );
}

#[test]
fn data_of_a_known_type_must_be_an_object() {
    for s in &SCHEMAS {
        for not_an_object in ["[]", "null", r#""text""#, "1", "true", r#"[{"state":"x"}]"#] {
            check(s.name, not_an_object, Err("data"));
        }
    }
}

#[test]
fn extra_fields_are_allowed() {
    for s in &SCHEMAS {
        let extra = [
            ("thid", json!("t")),
            ("metaRetries", json!(5)),
            ("nested", json!({"a": [1]})),
        ];
        check(
            s.name,
            &data(s, json!("id-1"), json!(s.states[0]), &extra),
            Ok(()),
        );
    }
}

#[test]
fn custom_types_accept_any_data() {
    for name in [
        "acme.thing",
        "connectionupdated",
        "CONNECTIONUPDATED",
        "DidStatusUpdated",
    ] {
        for any in [
            "[]",
            "null",
            "{}",
            r#"{"state":"Bogus","connectionId":7}"#,
            "3.5",
        ] {
            check(name, any, Ok(()));
        }
    }
}

#[test]
fn a_type_error_names_the_type_field() {
    let err = EventError::from(EventType::parse("1bad").unwrap_err());
    assert_eq!(err.field(), "type");
    assert!(err.to_string().starts_with("type: \"1bad\""), "{err}");
}

/// Parses `name` and checks the result: `Some(t)` accepted as `t`, `None` refused.
fn check_type(name: &str, expected: Option<EventType>) {
    let got = EventType::parse(name);
    assert_eq!(got.clone().ok(), expected, "{name:?}");
    match got {
        Ok(t) => {
            assert_eq!(t.as_str(), name);
            assert_eq!(t.to_string(), name);
            assert_eq!(name.parse::<EventType>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), t);
        }
        Err(e) => {
            assert!(e.to_string().starts_with("type: "), "{e}");
            assert!(
                e.to_string().contains("^[A-Za-z][A-Za-z0-9._-]{0,127}$"),
                "{e}"
            );
            let json = serde_json::to_string(name).unwrap();
            assert!(
                serde_json::from_str::<EventType>(&json).is_err(),
                "{name:?}"
            );
        }
    }
}

#[test]
fn event_type_names() {
    let custom = |s: &str| Some(EventType::Custom(s.to_owned()));
    let max = format!("A{}", "b".repeat(127));
    let too_long = format!("A{}", "b".repeat(128));
    let rows: Vec<(&str, Option<EventType>)> = vec![
        ("ConnectionUpdated", Some(EventType::ConnectionUpdated)),
        (
            "IssueCredentialRecordUpdated",
            Some(EventType::IssueCredentialRecordUpdated),
        ),
        ("PresentationUpdated", Some(EventType::PresentationUpdated)),
        ("DIDStatusUpdated", Some(EventType::DidStatusUpdated)),
        ("connectionupdated", custom("connectionupdated")),
        ("DidStatusUpdated", custom("DidStatusUpdated")),
        ("a", custom("a")),
        ("Z", custom("Z")),
        ("acme.order_created-v2", custom("acme.order_created-v2")),
        ("x0.9_-", custom("x0.9_-")),
        (&max, custom(&max)),
        (&too_long, None),
        ("", None),
        ("1abc", None),
        ("9", None),
        ("_abc", None),
        ("-abc", None),
        (".abc", None),
        (" abc", None),
        ("abc ", None),
        ("a b", None),
        ("a\tb", None),
        ("abc\n", None),
        ("a/b", None),
        ("a:b", None),
        ("a+b", None),
        ("évènement", None),
        ("aé", None),
        ("ConnectionUpdated\u{200b}", None),
        ("Ａbc", None),
    ];
    assert_eq!(max.len(), 128);
    for (name, expected) in rows {
        check_type(name, expected);
    }
}

#[test]
fn long_refused_names_are_shortened_in_the_message() {
    let name = format!("1{}", "x".repeat(500));
    let message = EventType::parse(&name).unwrap_err().to_string();
    assert!(!message.contains(&name));
    assert!(message.len() < 400, "{message}");
}
