//! Fresh randomness from the operating system, for keys, secrets and jitter.

use anyhow::Context;
use webhook_domain::{ApiKey, Jitter, SigningSecret};

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the operating system gave no random bytes: {e}"))?;
    Ok(bytes)
}

pub(crate) fn api_key() -> anyhow::Result<ApiKey> {
    Ok(ApiKey::from_random(random()?))
}

pub(crate) fn salt() -> anyhow::Result<[u8; 16]> {
    random()
}

pub(crate) fn signing_secret() -> anyhow::Result<SigningSecret> {
    let bytes: [u8; 32] = random()?;
    SigningSecret::from_bytes(&bytes).context("a 32-byte secret is always valid")
}

/// A jitter sample; without randomness the full delay is used, which is still correct.
pub(crate) fn jitter() -> Jitter {
    random::<8>()
        .map(|b| Jitter::from_bits(u64::from_le_bytes(b)))
        .unwrap_or(Jitter::MAX)
}
