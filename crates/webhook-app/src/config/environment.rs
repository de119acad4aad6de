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
