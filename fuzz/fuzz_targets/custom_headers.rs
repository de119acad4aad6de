//! `CustomHeaders::new`: it accepts a list exactly when an independent check of the rules does
//! (token names of 1 to 128 bytes, none reserved or `webhook-*`, none twice ignoring case;
//! values of at most 4096 bytes without control characters but tab; at most 32 headers and
//! 16 KiB in all), every accepted header is one the `http` crate (which hyper sends with)
//! accepts as it is, and the set reads back unchanged, also through JSON.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use webhook_domain::CustomHeaders;
use webhook_domain::limits::{
    MAX_CUSTOM_HEADERS, MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN, MAX_HEADERS_TOTAL_LEN,
};

/// Set by webhookd itself or part of HTTP framing: never a custom header.
const RESERVED: [&str; 13] = [
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

fn is_token(name: &str) -> bool {
    (1..=MAX_HEADER_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn acceptable(headers: &[(String, String)]) -> bool {
    let mut seen = BTreeSet::new();
    let total: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    headers.len() <= MAX_CUSTOM_HEADERS
        && total <= MAX_HEADERS_TOTAL_LEN
        && headers.iter().all(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            is_token(name)
                && !RESERVED.contains(&lower.as_str())
                && !lower.starts_with("webhook-")
                && value.len() <= MAX_HEADER_VALUE_LEN
                && value.chars().all(|c| c == '\t' || !c.is_control())
                && seen.insert(lower)
        })
}

fuzz_target!(|headers: Vec<(String, String)>| {
    let result = CustomHeaders::new(headers.clone());
    assert_eq!(
        result.is_ok(),
        acceptable(&headers),
        "{headers:?} gave {result:?}"
    );
    let Ok(accepted) = result else {
        return;
    };
    assert_eq!(accepted.len(), headers.len());
    let mut given = headers.clone();
    given.sort();
    let read: Vec<(String, String)> = accepted
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(read, given);
    for (name, value) in accepted.iter() {
        http::HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("http refuses the name {name:?}: {e}"));
        http::HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("http refuses the value of {name:?}: {e}"));
    }
    let json = serde_json::to_string(&accepted).expect("headers serialise");
    let back: CustomHeaders = serde_json::from_str(&json).expect("their JSON parses");
    assert_eq!(back, accepted);
});
