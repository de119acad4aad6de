//! The built-in defaults: every setting's value when neither the file nor the environment
//! sets it, as the TOML the loader reads first. `docs/configuration.md` documents each of them
//! (checked below). No setting's meaning or check lives here.

pub(super) const DEFAULTS: &str = r#"
listen = "127.0.0.1:8080"
role = "all"
base_path = "/cloud-agent"
data_dir = "data"
database_url = ""
database_pool_size = 10
migrate_on_start = true
max_webhooks_per_wallet = 10
sources = []

[api]
max_body_bytes = 262144
max_json_depth = 32
max_batch_events = 1000
secret_rotation_grace_secs = 86400
auth_failure_limit = 20
auth_failure_window_ms = 60000
max_attempts_per_delivery = 100

[console]
enabled = true

[dispatcher]
batch_size = 128
lease_ms = 60000
attempt_timeout_ms = 5000
poll_interval_ms = 1000
max_in_flight = 2048
min_in_flight_per_target = 1
initial_in_flight_per_target = 16
max_in_flight_per_target = 1024
breaker_failure_threshold = 5
breaker_open_ms = 30000
record_batch = 64
record_delay_ms = 20
shutdown_grace_ms = 10000

[transport]
ssrf_guard = true
allowed_cidrs = []
connect_timeout_ms = 2000
brokers = []

[retention]
max_age_hours = 720
interval_secs = 600
batch_size = 100

[identus]
default_wallet_enabled = true
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::environment::IDENTUS_VARIABLES;

    /// Every setting of the built-in defaults, and every Identus variable, has its row in
    /// docs/configuration.md.
    #[test]
    fn every_setting_is_documented() {
        let doc = include_str!("../../../../docs/configuration.md");
        let mut section = String::new();
        for line in DEFAULTS.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("{name}.");
            } else if let Some((key, _)) = line.split_once(" = ") {
                let setting = format!("`{section}{key}`");
                assert!(
                    doc.contains(&setting),
                    "docs/configuration.md lacks {setting}"
                );
            }
        }
        for (variable, key) in IDENTUS_VARIABLES {
            assert!(
                doc.contains(&format!("| `{key}` | `{variable}` |")),
                "{variable}"
            );
        }
        assert!(doc.contains("`default_retry_policy`"));
    }
}
