//! `SigningSecret::parse` (`whsec_<base64>`, prefix optional): an accepted secret holds 24 to 64
//! bytes, writes a `whsec_` form that parses back to it (also as JSON), and `Debug` never shows
//! it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_domain::SigningSecret;

fuzz_target!(|text: &str| {
    let Ok(secret) = SigningSecret::parse(text) else {
        return;
    };
    let exposed = secret.expose();
    let encoded = exposed.strip_prefix("whsec_").expect("the whsec_ prefix");
    // Standard base64 with padding: 24 to 64 bytes make 32 to 88 characters.
    assert!((32..=88).contains(&encoded.len()), "{exposed}");
    assert_eq!(SigningSecret::parse(&exposed).as_ref(), Ok(&secret));
    assert_eq!(SigningSecret::parse(encoded).as_ref(), Ok(&secret));
    let json = serde_json::to_string(&secret).expect("a secret serialises");
    assert_eq!(
        serde_json::from_str::<SigningSecret>(&json).ok().as_ref(),
        Some(&secret)
    );
    let debug = format!("{secret:?}");
    assert!(!debug.contains(encoded), "{debug}");
});
