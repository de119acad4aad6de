//! `WebhookUrl::parse`: an accepted URL is kept exactly as given, is http or https with a host,
//! no userinfo and no fragment, and re-parses to the same value (also as JSON); and the
//! normalised form the URL standard makes of it (what an HTTP client sends) is accepted too,
//! naming the same scheme, host and port, unless normalising made it longer than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_domain::limits::MAX_URL_LEN;
use webhook_domain::{WebhookUrl, WebhookUrlError};

fuzz_target!(|text: &str| {
    let url = match WebhookUrl::parse(text) {
        Ok(url) => url,
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("url: "), "{message}");
            return;
        }
    };
    assert_eq!(url.as_str(), text);
    assert!(text.len() <= MAX_URL_LEN);
    assert!(!text.chars().any(|c| c.is_whitespace() || c.is_control()));
    assert!(!url.host().is_empty(), "{text:?} has an empty host");
    assert_eq!(WebhookUrl::parse(url.as_str()).as_ref(), Ok(&url));
    let json = serde_json::to_string(&url).expect("a URL serialises");
    assert_eq!(
        serde_json::from_str::<WebhookUrl>(&json).ok().as_ref(),
        Some(&url)
    );

    let standard = url::Url::parse(text).expect("an accepted URL is a URL");
    assert_eq!(url.is_https(), standard.scheme() == "https");
    assert_eq!(Some(url.port()), standard.port_or_known_default());
    let normalised = standard.as_str();
    match WebhookUrl::parse(normalised) {
        Ok(again) => {
            assert_eq!(again.host(), url.host(), "{text:?} -> {normalised:?}");
            assert_eq!(again.port(), url.port(), "{text:?} -> {normalised:?}");
            assert_eq!(again.is_https(), url.is_https());
        }
        Err(WebhookUrlError::TooLong { .. }) => {}
        Err(error) => panic!("{text:?} normalises to {normalised:?}, refused: {error}"),
    }
});
