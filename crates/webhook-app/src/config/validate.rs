//! What each setting may hold beyond its type (ranges, shapes, how settings relate), checked
//! once after loading. Each failure is one line that starts with the setting's name, which the
//! loader completes with the variable or file that set it.

use crate::config::redact::MASK;
use crate::config::schema::Settings;

/// The longest retention, in hours: about 114 years, far beyond any use and far from the
/// largest duration a timer can hold.
const MAX_AGE_HOURS: f64 = 1_000_000.0;

impl Settings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if !(self.base_path.is_empty()
            || (self.base_path.starts_with('/') && !self.base_path.ends_with('/')))
        {
            anyhow::bail!(
                "base_path: {:?} must be empty or start with / and not end with /",
                self.base_path
            );
        }
        if self.console.enabled
            && (self.base_path == "/console" || self.base_path.starts_with("/console/"))
        {
            anyhow::bail!(
                "base_path: {:?} collides with the web console, served at /console; choose \
                 another base_path or set console.enabled = false",
                self.base_path
            );
        }
        if self.dispatcher.batch_size == 0 {
            anyhow::bail!("dispatcher.batch_size: must be at least 1, got 0");
        }
        if self.dispatcher.max_in_flight == 0 {
            anyhow::bail!("dispatcher.max_in_flight: must be at least 1, got 0");
        }
        if self.dispatcher.max_in_flight_per_target == 0 {
            anyhow::bail!("dispatcher.max_in_flight_per_target: must be at least 1, got 0");
        }
        if self.dispatcher.min_in_flight_per_target == 0 {
            anyhow::bail!("dispatcher.min_in_flight_per_target: must be at least 1, got 0");
        }
        if self.dispatcher.min_in_flight_per_target > self.dispatcher.max_in_flight_per_target {
            anyhow::bail!(
                "dispatcher.min_in_flight_per_target: must be at most dispatcher.max_in_flight_per_target ({}), got {}",
                self.dispatcher.max_in_flight_per_target,
                self.dispatcher.min_in_flight_per_target
            );
        }
        if self.dispatcher.record_batch == 0 {
            anyhow::bail!("dispatcher.record_batch: must be at least 1, got 0");
        }
        if self.dispatcher.attempt_timeout_ms == 0 {
            anyhow::bail!("dispatcher.attempt_timeout_ms: must be at least 1, got 0");
        }
        if self.dispatcher.lease_ms <= self.dispatcher.attempt_timeout_ms {
            anyhow::bail!(
                "dispatcher.lease_ms: must be longer than dispatcher.attempt_timeout_ms ({}), got {}",
                self.dispatcher.attempt_timeout_ms,
                self.dispatcher.lease_ms
            );
        }
        if self.transport.connect_timeout_ms == 0 {
            anyhow::bail!("transport.connect_timeout_ms: must be at least 1, got 0");
        }
        self.transport.address_policy()?;
        if self.database_pool_size == 0 {
            anyhow::bail!("database_pool_size: must be at least 1, got 0");
        }
        if self.retention.batch_size == 0 {
            anyhow::bail!("retention.batch_size: must be at least 1, got 0");
        }
        let hours = self.retention.max_age_hours;
        if !(0.0..=MAX_AGE_HOURS).contains(&hours) {
            anyhow::bail!(
                "retention.max_age_hours: must be from 0 (keep everything) to {MAX_AGE_HOURS}, \
                 got {hours}"
            );
        }
        if self.retention.interval_secs == 0 {
            anyhow::bail!("retention.interval_secs: must be at least 1, got 0");
        }
        if self.api.max_body_bytes < 1024 {
            anyhow::bail!(
                "api.max_body_bytes: must be at least 1024, got {}",
                self.api.max_body_bytes
            );
        }
        if !(2..=128).contains(&self.api.max_json_depth) {
            anyhow::bail!(
                "api.max_json_depth: must be between 2 and 128, got {}",
                self.api.max_json_depth
            );
        }
        if self.api.max_batch_events == 0 {
            anyhow::bail!("api.max_batch_events: must be at least 1, got 0");
        }
        if self.api.max_attempts_per_delivery == 0 {
            anyhow::bail!("api.max_attempts_per_delivery: must be at least 1, got 0");
        }
        if !(1..=86_400_000).contains(&self.api.auth_failure_window_ms) {
            anyhow::bail!(
                "api.auth_failure_window_ms: must be between 1 and 86400000 (a day), got {}",
                self.api.auth_failure_window_ms
            );
        }
        if self.max_webhooks_per_wallet == 0 {
            anyhow::bail!("max_webhooks_per_wallet: must be at least 1, got 0");
        }
        // A file written by `webhookd config` holds masks, not secrets: never take one as a key.
        for (key, value) in [
            (
                "identus.global_webhook_api_key",
                &self.identus.global_webhook_api_key,
            ),
            (
                "identus.default_wallet_webhook_api_key",
                &self.identus.default_wallet_webhook_api_key,
            ),
            (
                "identus.default_wallet_auth_api_key",
                &self.identus.default_wallet_auth_api_key,
            ),
            ("identus.admin_token", &self.identus.admin_token),
        ] {
            if value.as_deref() == Some(MASK) {
                anyhow::bail!(
                    "{key}: {MASK:?} is what `webhookd config` prints in place of a secret; set the secret itself"
                );
            }
        }
        self.database()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::environment::env;

    #[test]
    fn invalid_settings_fail_with_the_setting_named() {
        let err = Settings::build(None, &env(&[("WEBHOOKD_LISTEN", "nowhere")])).unwrap_err();
        assert!(format!("{err:#}").contains("listen"), "{err:#}");
        let err = Settings::build(None, &env(&[("WEBHOOKD_BASE_PATH", "api/")])).unwrap_err();
        assert!(format!("{err:#}").contains("base_path"), "{err:#}");
        let err = Settings::build(
            None,
            &env(&[("WEBHOOKD_DATABASE_URL", "oracle://u:p@host/db")]),
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("database_url") && err.contains("oracle") && !err.contains("u:p"),
            "{err}"
        );
        let err = Settings::build(
            None,
            &env(&[("WEBHOOKD_API__MAX_ATTEMPTS_PER_DELIVERY", "0")]),
        )
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "api.max_attempts_per_delivery: must be at least 1, got 0 \
             (from WEBHOOKD_API__MAX_ATTEMPTS_PER_DELIVERY)"
        );
    }

    #[test]
    fn a_base_path_under_the_console_needs_the_console_off() {
        let err =
            Settings::build(None, &env(&[("WEBHOOKD_BASE_PATH", "/console/api")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("collides with the web console"),
            "{err:#}"
        );
        let off = Settings::build(
            None,
            &env(&[
                ("WEBHOOKD_BASE_PATH", "/console"),
                ("WEBHOOKD_CONSOLE__ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert!(!off.console.enabled);
        // A name that merely starts with the same letters is another path.
        Settings::build(None, &env(&[("WEBHOOKD_BASE_PATH", "/consoles")])).unwrap();
    }
}
