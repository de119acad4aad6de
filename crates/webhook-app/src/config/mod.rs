//! Configuration: built-in defaults, then an optional TOML file, then environment variables
//! (`WEBHOOKD_*` for our settings, with `__` between nested names, and the Identus names as
//! they are). This is the only module that reads the environment.
//!
//! This file loads: it layers the sources and hands the result to the checks. The rest is
//! split by concern: `schema` (the settings and what they stand for), `defaults`,
//! `environment` (which variables are settings), `validate`, `redact` (secrets masked for
//! printing) and `failures` (one-line messages naming the setting and its source). None of
//! them may import this file back: they name each other directly.

mod defaults;
mod environment;
mod failures;
mod redact;
mod schema;
mod validate;

use std::path::Path;

pub(crate) use schema::RetentionSettings;
pub use schema::{
    ApiSettings, ConsoleSettings, DispatcherSettings, IdentusSettings, Role, Settings,
    TransportSettings,
};

use defaults::DEFAULTS;
use environment::IDENTUS_VARIABLES;
use failures::Sources;

impl Settings {
    /// The built-in defaults alone: what a test starts from.
    pub fn defaults() -> anyhow::Result<Self> {
        Self::build(None, &[])
    }

    /// Defaults, then `file` (TOML) if given, then the process environment.
    ///
    /// # Errors
    /// One line naming the setting, where its value came from and what is allowed.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::build(file, &env)
    }

    fn build(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Self> {
        let sources = Sources { file, env };
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from_str(
                &read_toml(path)?,
                config::FileFormat::Toml,
            ));
        }
        let ours: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| environment::names_a_setting(k))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("WEBHOOKD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("transport.allowed_cidrs")
                .with_list_parse_key("transport.brokers")
                .with_list_parse_key("sources")
                .source(Some(ours)),
        );
        for (variable, key) in IDENTUS_VARIABLES {
            if let Some((_, value)) = env.iter().find(|(k, _)| k == variable) {
                builder = builder
                    .set_override(*key, value.clone())
                    .map_err(|e| sources.explain(e))?;
            }
        }
        let settings: Settings = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| sources.explain(e))?;
        settings.validate().map_err(|e| sources.locate(&e))?;
        Ok(settings)
    }
}

/// The configuration file's text, checked to be TOML so that a syntax error is one line.
fn read_toml(path: &Path) -> anyhow::Result<String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("configuration file {shown}: cannot be read: {e}"))?;
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            format!(" at line {line}, column {column}")
        });
        anyhow::bail!(
            "configuration file {shown}: not valid TOML{at}: {}",
            e.message().trim()
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use webhook_domain::RetryPolicy;

    use super::*;
    use crate::config::environment::env;
    use crate::database::Database;

    #[test]
    fn defaults_are_identus_compatible() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.base_path, "/cloud-agent");
        assert_eq!(s.default_retry_policy, RetryPolicy::identus());
        assert_eq!(s.dispatcher.attempt_timeout(), Duration::from_secs(5));
        assert!(s.identus.default_wallet_enabled);
        assert_eq!(
            s.database().unwrap(),
            Database::parse("sqlite://data/webhookd.db").unwrap()
        );
        assert!(s.migrate_on_start);
        assert_eq!(
            s.retention.max_age(),
            Some(Duration::from_secs(30 * 24 * 3600))
        );
    }

    #[test]
    fn a_file_can_replace_the_default_retry_policy() {
        // The built-in default must not merge into the file's table (it once left its `name`
        // behind and the file was refused).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("webhookd.toml");
        std::fs::write(
            &file,
            r#"default_retry_policy = { kind = "fixed", intervalMs = 100, maxAttempts = 20 }"#,
        )
        .unwrap();
        let s = Settings::build(Some(&file), &[]).unwrap();
        assert_eq!(
            s.default_retry_policy,
            RetryPolicy::new(
                webhook_domain::Backoff::Fixed {
                    interval: Duration::from_millis(100)
                },
                20,
                None
            )
            .unwrap()
        );
    }

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
