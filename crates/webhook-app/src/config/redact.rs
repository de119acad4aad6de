//! Secrets masked for printing: the one place that decides what `webhookd config` and the
//! `Debug` of the Identus settings show in place of a key, a token or a password. It never
//! changes the settings in use: it works on copies.

use std::fmt;

use anyhow::Context;

use crate::config::schema::{IdentusSettings, Settings};

impl fmt::Debug for IdentusSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = self.redacted();
        f.debug_struct("IdentusSettings")
            .field("global_webhook_url", &masked.global_webhook_url)
            .field("global_webhook_api_key", &masked.global_webhook_api_key)
            .field("default_wallet_enabled", &masked.default_wallet_enabled)
            .field(
                "default_wallet_webhook_url",
                &masked.default_wallet_webhook_url,
            )
            .field(
                "default_wallet_webhook_api_key",
                &masked.default_wallet_webhook_api_key,
            )
            .field(
                "default_wallet_auth_api_key",
                &masked.default_wallet_auth_api_key,
            )
            .field("admin_token", &masked.admin_token)
            .finish()
    }
}

impl IdentusSettings {
    fn redacted(&self) -> IdentusSettings {
        let mask = |value: &Option<String>| value.as_ref().map(|v| mask_secret(v));
        let url = |value: &Option<String>| value.as_deref().map(redact_url);
        IdentusSettings {
            global_webhook_url: url(&self.global_webhook_url),
            global_webhook_api_key: mask(&self.global_webhook_api_key),
            default_wallet_enabled: self.default_wallet_enabled,
            default_wallet_webhook_url: url(&self.default_wallet_webhook_url),
            default_wallet_webhook_api_key: mask(&self.default_wallet_webhook_api_key),
            default_wallet_auth_api_key: mask(&self.default_wallet_auth_api_key),
            admin_token: mask(&self.admin_token),
        }
    }
}

/// What stands for a secret in printed settings.
pub(super) const MASK: &str = "****";

/// A set secret becomes [`MASK`]; an empty one (meaning unset) stays empty.
fn mask_secret(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        MASK.to_owned()
    }
}

/// The URL with the password of its user info, and a `password=` query parameter, masked:
/// `postgres://app:****@db:5432/hooks`.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let mut out = scheme;
    match before_query.rsplit_once('@') {
        Some((user_info, host)) => {
            match user_info.split_once(':') {
                Some((user, _password)) => out.push_str(&format!("{user}:{MASK}")),
                None => out.push_str(user_info),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                    format!("{name}={MASK}")
                }
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

impl Settings {
    /// A copy with every secret masked: the Identus API keys and admin token become `****`,
    /// and so do the passwords in `database_url`, in the webhook, source and broker URLs.
    pub(crate) fn redacted(&self) -> Settings {
        let mut masked = self.clone();
        masked.database_url = redact_url(&self.database_url);
        masked.sources = self.sources.iter().map(|url| redact_url(url)).collect();
        masked.transport.brokers = self
            .transport
            .brokers
            .iter()
            .map(|url| redact_url(url))
            .collect();
        masked.identus = self.identus.redacted();
        masked
    }

    /// The settings as a TOML file that `--config` accepts, secrets masked
    /// ([`Self::redacted`]).
    ///
    /// # Errors
    /// When a value has no TOML form (a data directory that is not UTF-8).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(&self.redacted()).context("the settings cannot be written as TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::environment::env;

    #[test]
    fn secrets_are_masked_in_printed_settings_and_in_debug() {
        let s = Settings::build(
            None,
            &env(&[
                ("ADMIN_TOKEN", "admin-1"),
                ("DEFAULT_WALLET_AUTH_API_KEY", "wallet-2"),
                ("GLOBAL_WEBHOOK_API_KEY", "global-3"),
                ("DEFAULT_WALLET_WEBHOOK_API_KEY", "default-4"),
                (
                    "GLOBAL_WEBHOOK_URL",
                    "https://hook:url-5@receiver.example/in",
                ),
                ("DEFAULT_WALLET_WEBHOOK_URL", ""),
                ("WEBHOOKD_DATABASE_URL", "postgres://app:db-6@db:5432/hooks"),
            ]),
        )
        .unwrap();
        let printed = s.to_toml().unwrap();
        let debug = format!("{:?}", s.identus);
        for secret in [
            "admin-1",
            "wallet-2",
            "global-3",
            "default-4",
            "url-5",
            "db-6",
        ] {
            assert!(!printed.contains(secret), "{secret}: {printed}");
            assert!(!debug.contains(secret), "{secret}: {debug}");
        }
        assert!(printed.contains("admin_token = \"****\""), "{printed}");
        assert!(
            printed.contains("https://hook:****@receiver.example/in"),
            "{printed}"
        );
        assert!(
            printed.contains("postgres://app:****@db:5432/hooks"),
            "{printed}"
        );
        // An empty value means unset, and stays visible as such.
        assert!(
            printed.contains("default_wallet_webhook_url = \"\""),
            "{printed}"
        );
        // Masking does not change the settings in use.
        assert_eq!(s.identus.admin_token.as_deref(), Some("admin-1"));
    }

    #[test]
    fn urls_keep_everything_but_the_password() {
        for (url, masked) in [
            (
                "postgres://app:pw@db:5432/hooks",
                "postgres://app:****@db:5432/hooks",
            ),
            ("postgres://app@db/hooks", "postgres://app@db/hooks"),
            (
                "postgresql://db/hooks?user=app&password=pw&sslmode=require",
                "postgresql://db/hooks?user=app&password=****&sslmode=require",
            ),
            (
                "postgres://a:p%40ss@db/h?password=x",
                "postgres://a:****@db/h?password=****",
            ),
            ("sqlite://data/webhookd.db", "sqlite://data/webhookd.db"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), masked, "{url}");
        }
    }
}
