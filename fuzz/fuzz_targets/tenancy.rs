//! Wallet names and API keys: a name is accepted exactly when it has 1 to 128 characters and no
//! control character, a key exactly when it has 1 to 256 visible ASCII characters; a stored key
//! hash matches its own key and no other, and `Debug` never shows a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_domain::{ApiKey, ApiKeyHash, ApiKeyTag, WalletName};

fuzz_target!(|input: (&str, &str, [u8; 16])| {
    let (text, other, salt) = input;

    let name_ok = (1..=128).contains(&text.chars().count()) && !text.chars().any(char::is_control);
    match WalletName::new(text) {
        Ok(name) => {
            assert!(name_ok, "accepted {text:?}");
            assert_eq!(name.as_str(), text);
        }
        Err(_) => assert!(!name_ok, "refused {text:?}"),
    }

    let key_ok = (1..=256).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
    let Ok(key) = ApiKey::parse(text) else {
        assert!(!key_ok, "refused {text:?}");
        return;
    };
    assert!(key_ok, "accepted {text:?}");
    assert_eq!(key.expose(), text);
    let debug = format!("{key:?}");
    assert!(
        debug.contains(text) == "ApiKey(<redacted>)".contains(text),
        "{debug}"
    );

    let hash = ApiKeyHash::new(&key, salt);
    assert!(hash.matches(&key));
    assert_eq!(hash.tag, ApiKeyTag::of(&key));
    if let Ok(other) = ApiKey::parse(other) {
        assert_eq!(hash.matches(&other), other == key, "{other:?}");
        assert_eq!(ApiKeyTag::of(&other) == hash.tag, other == key);
    }
});
