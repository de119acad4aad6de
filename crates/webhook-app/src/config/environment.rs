//! Which environment variables are settings: ours (`WEBHOOKD_*`, `__` between nested names),
//! the Identus names, and the `WEBHOOKD_*` variables that are not settings and so are neither
//! read nor refused (the CLI's, Kubernetes service links, the test support's). It only names
//! variables; the loader reads the environment.

/// The Identus variable names and where they go.
pub(super) const IDENTUS_VARIABLES: &[(&str, &str)] = &[
    ("GLOBAL_WEBHOOK_URL", "identus.global_webhook_url"),
    ("GLOBAL_WEBHOOK_API_KEY", "identus.global_webhook_api_key"),
    ("DEFAULT_WALLET_ENABLED", "identus.default_wallet_enabled"),
    (
        "DEFAULT_WALLET_WEBHOOK_URL",
        "identus.default_wallet_webhook_url",
    ),
    (
        "DEFAULT_WALLET_WEBHOOK_API_KEY",
        "identus.default_wallet_webhook_api_key",
    ),
    (
        "DEFAULT_WALLET_AUTH_API_KEY",
        "identus.default_wallet_auth_api_key",
    ),
    ("ADMIN_TOKEN", "identus.admin_token"),
];

/// Variables with the `WEBHOOKD_` prefix that are not settings: the CLI reads them.
const CLI_VARIABLES: &[&str] = &["WEBHOOKD_CONFIG", "WEBHOOKD_LOG_FORMAT"];

/// Whether `name` is one of the variables Kubernetes (and Docker links) set for a service
/// called `webhookd` (`WEBHOOKD_SERVICE_HOST`, `WEBHOOKD_PORT_8080_TCP_ADDR`, ...). No setting
/// starts with `service_` or `port`, so they are ignored rather than refused as unknown.
fn is_service_link(name: &str) -> bool {
    let rest = &name["WEBHOOKD_".len()..];
    rest.starts_with("SERVICE_") || rest == "PORT" || rest.starts_with("PORT_")
}

/// Whether `name` is a variable of the test support (`WEBHOOKD_TEST_PG_URL`,
/// `WEBHOOKD_TEST_SKIP_LOG`), which reaches the `webhookd` that tests start. No setting starts
/// with `test_`, so they are ignored rather than refused as unknown.
fn is_test_support(name: &str) -> bool {
    name.starts_with("WEBHOOKD_TEST_")
}

/// Whether `name` is one of our settings' variables (`WEBHOOKD_*`), rather than another
/// program's variable that shares the prefix.
pub(super) fn names_a_setting(name: &str) -> bool {
    name.starts_with("WEBHOOKD_")
        && !CLI_VARIABLES.contains(&name)
        && !is_service_link(name)
        && !is_test_support(name)
}

/// The variables of a test, as the process environment would hand them over.
#[cfg(test)]
pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::Settings;

    #[test]
    fn environment_overrides_defaults_under_both_naming_schemes() {
        let s = Settings::build(
            None,
            &env(&[
                ("WEBHOOKD_LISTEN", "0.0.0.0:9000"),
                ("WEBHOOKD_DISPATCHER__BATCH_SIZE", "8"),
                ("GLOBAL_WEBHOOK_URL", "http://localhost:9095"),
                ("DEFAULT_WALLET_ENABLED", "false"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.dispatcher.batch_size, 8);
        assert_eq!(
            s.identus.global_webhook_url.as_deref(),
            Some("http://localhost:9095")
        );
        assert!(!s.identus.default_wallet_enabled);
    }

    #[test]
    fn kubernetes_service_links_are_not_settings() {
        let s = Settings::build(
            None,
            &env(&[
                ("WEBHOOKD_SERVICE_HOST", "10.0.0.7"),
                ("WEBHOOKD_SERVICE_PORT", "8080"),
                ("WEBHOOKD_PORT", "tcp://10.0.0.7:8080"),
                ("WEBHOOKD_PORT_8080_TCP_ADDR", "10.0.0.7"),
                ("WEBHOOKD_DISPATCHER__BATCH_SIZE", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(s.dispatcher.batch_size, 7);
        assert!(Settings::build(None, &env(&[("WEBHOOKD_SERVCE_HOST", "x")])).is_err());
    }

    /// The test support's variables (`WEBHOOKD_TEST_PG_URL`, `WEBHOOKD_TEST_SKIP_LOG`) reach
    /// the `webhookd` that tests start, and a developer's shell: they must not stop a start.
    #[test]
    fn test_support_variables_are_not_settings() {
        let s = Settings::build(
            None,
            &env(&[
                ("WEBHOOKD_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432"),
                ("WEBHOOKD_TEST_SKIP_LOG", "/tmp/skipped.tsv"),
                ("WEBHOOKD_DISPATCHER__BATCH_SIZE", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(s.dispatcher.batch_size, 7);
        assert!(Settings::build(None, &env(&[("WEBHOOKD_TESTS", "x")])).is_err());
    }
}
