//! Configuration: built-in defaults, then an optional TOML file, then environment variables
//! (`WEBHOOKD_*` for our settings, with `__` between nested names, and the Identus names as
//! they are). This is the only module that reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use webhook_domain::{AddressPolicy, IpRange, RetryPolicy};

use crate::store::Database;

/// Everything the service can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the REST API listens on.
    pub listen: SocketAddr,
    /// Prefix of every API path; `/cloud-agent` as in the Identus tutorial.
    pub base_path: String,
    /// Where the embedded database lives.
    pub data_dir: PathBuf,
    /// `sqlite://<path>` or `postgres://user:password@host:port/database`; empty means the
    /// SQLite file `<data_dir>/webhookd.db`.
    pub database_url: String,
    /// Most database connections this instance opens.
    pub database_pool_size: u32,
    /// Apply pending migrations when `serve` starts; when false, `serve` refuses to start on
    /// a database that `webhookd migrate` has not brought up to date.
    pub migrate_on_start: bool,
    /// Most webhooks one wallet may register.
    pub max_webhooks_per_wallet: u32,
    /// Applied to targets without a retry policy of their own; Identus's (3 attempts, 5 s
    /// apart) when not set. Not in the built-in defaults table, which a file's table would
    /// otherwise be merged into.
    #[serde(default = "RetryPolicy::identus")]
    pub default_retry_policy: RetryPolicy,
    pub api: ApiSettings,
    pub dispatcher: DispatcherSettings,
    pub transport: TransportSettings,
    pub retention: RetentionSettings,
    /// The Identus environment variables.
    pub identus: IdentusSettings,
}

/// Limits and defaults of the REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted (objects and arrays), in request bodies and event data.
    pub max_json_depth: usize,
    /// Most events in one batch publish.
    pub max_batch_events: usize,
    /// How long a rotated-out signing secret keeps signing, unless the rotation says otherwise.
    pub secret_rotation_grace_secs: u64,
}

impl ApiSettings {
    pub fn secret_rotation_grace(&self) -> Duration {
        Duration::from_secs(self.secret_rotation_grace_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Deliveries claimed (and attempted concurrently) at once.
    pub batch_size: u32,
    /// How long a claim is leased before another dispatcher may take it.
    pub lease_ms: u64,
    /// Limit of one attempt, connect to last byte read.
    pub attempt_timeout_ms: u64,
    /// Longest idle sleep; publishes wake the dispatcher at once.
    pub poll_interval_ms: u64,
    /// Most attempts in flight in this instance, all targets together.
    pub max_in_flight: usize,
    /// Most attempts in flight to one target; its other deliveries wait in the database.
    pub max_in_flight_per_target: usize,
    /// Consecutive failures (timeouts, connection errors, 5xx, 429) that rest a target.
    pub breaker_failure_threshold: u32,
    /// How long a rested target gets no attempts before one probe.
    pub breaker_open_ms: u64,
    /// Outcomes written per database round trip, at most.
    pub record_batch: usize,
    /// Longest an outcome waits for its batch to fill.
    pub record_delay_ms: u64,
    /// At shutdown, how long attempts in flight may finish before their leases are given back.
    pub shutdown_grace_ms: u64,
}

impl DispatcherSettings {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn circuit_breaker(&self) -> webhook_domain::CircuitBreakerConfig {
        webhook_domain::CircuitBreakerConfig {
            failure_threshold: self.breaker_failure_threshold.max(1),
            open_for: Duration::from_millis(self.breaker_open_ms),
        }
    }
}

/// How deliveries connect to their targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSettings {
    /// Refuse targets at loopback, private, link-local and other special-purpose addresses
    /// unless `allowed_cidrs` contains them.
    pub ssrf_guard: bool,
    /// Ranges the SSRF guard lets through anyway, such as `127.0.0.0/8` for local development;
    /// in the environment, comma-separated.
    pub allowed_cidrs: Vec<String>,
    /// Longest wait for the TCP connection, within the attempt's own timeout.
    pub connect_timeout_ms: u64,
}

impl TransportSettings {
    /// The SSRF guard's policy: public addresses, plus `allowed_cidrs`.
    ///
    /// # Errors
    /// When an entry is not a CIDR range; the message names the setting and the entry.
    pub fn address_policy(&self) -> anyhow::Result<AddressPolicy> {
        let allow = self
            .allowed_cidrs
            .iter()
            .map(|entry| entry.trim())
            // An empty environment variable is one empty entry.
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                IpRange::parse(entry).map_err(|e| anyhow::anyhow!("transport.allowed_cidrs: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AddressPolicy::new(allow))
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// How long finished history is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Events whose deliveries are all finished are removed, with their deliveries and
    /// attempts, this many hours after they were published; 0 keeps everything.
    pub max_age_hours: u64,
    /// How often the pruning job runs.
    pub interval_secs: u64,
    /// Events removed per transaction.
    pub batch_size: u32,
}

impl RetentionSettings {
    /// The age past which finished history is removed; `None` when retention is off.
    pub fn max_age(&self) -> Option<Duration> {
        (self.max_age_hours > 0).then(|| Duration::from_secs(self.max_age_hours * 3600))
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

/// The Identus Cloud Agent's webhook settings, under the names Identus reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentusSettings {
    pub global_webhook_url: Option<String>,
    pub global_webhook_api_key: Option<String>,
    pub default_wallet_enabled: bool,
    pub default_wallet_webhook_url: Option<String>,
    pub default_wallet_webhook_api_key: Option<String>,
    pub default_wallet_auth_api_key: Option<String>,
    /// The `x-admin-api-key` value; when unset, one is generated at first start, stored
    /// hashed and printed once.
    pub admin_token: Option<String>,
}

const DEFAULTS: &str = r#"
listen = "127.0.0.1:8080"
base_path = "/cloud-agent"
data_dir = "data"
database_url = ""
database_pool_size = 10
migrate_on_start = true
max_webhooks_per_wallet = 10

[api]
max_body_bytes = 262144
max_json_depth = 32
max_batch_events = 1000
secret_rotation_grace_secs = 86400

[dispatcher]
batch_size = 64
lease_ms = 60000
attempt_timeout_ms = 5000
poll_interval_ms = 1000
max_in_flight = 256
max_in_flight_per_target = 16
breaker_failure_threshold = 5
breaker_open_ms = 30000
record_batch = 64
record_delay_ms = 20
shutdown_grace_ms = 10000

[transport]
ssrf_guard = true
allowed_cidrs = []
connect_timeout_ms = 2000

[retention]
max_age_hours = 720
interval_secs = 600
batch_size = 1000

[identus]
default_wallet_enabled = true
"#;

/// The Identus variable names and where they go.
const IDENTUS_VARIABLES: &[(&str, &str)] = &[
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

impl Settings {
    /// The built-in defaults alone: what a test starts from.
    pub fn defaults() -> anyhow::Result<Self> {
        Self::build(None, &[])
    }

    /// Defaults, then `file` (TOML) if given, then the process environment.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::build(file, &env)
    }

    fn build(file: Option<&std::path::Path>, env: &[(String, String)]) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let ours: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("WEBHOOKD_") && k != "WEBHOOKD_CONFIG")
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("WEBHOOKD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("transport.allowed_cidrs")
                .source(Some(ours)),
        );
        for (variable, key) in IDENTUS_VARIABLES {
            if let Some((_, value)) = env.iter().find(|(k, _)| k == variable) {
                builder = builder
                    .set_override(*key, value.clone())
                    .with_context(|| format!("{variable}: cannot be applied"))?;
            }
        }
        let settings: Settings = builder
            .build()
            .context("configuration: cannot be read")?
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(self.base_path.is_empty()
            || (self.base_path.starts_with('/') && !self.base_path.ends_with('/')))
        {
            anyhow::bail!(
                "base_path: {:?} must be empty or start with / and not end with /",
                self.base_path
            );
        }
        if self.dispatcher.batch_size == 0 {
            anyhow::bail!("dispatcher.batch_size: must be at least 1");
        }
        if self.dispatcher.max_in_flight == 0 || self.dispatcher.max_in_flight_per_target == 0 {
            anyhow::bail!(
                "dispatcher.max_in_flight and dispatcher.max_in_flight_per_target: must be at least 1"
            );
        }
        if self.dispatcher.record_batch == 0 {
            anyhow::bail!("dispatcher.record_batch: must be at least 1");
        }
        if self.dispatcher.attempt_timeout_ms == 0
            || self.dispatcher.lease_ms <= self.dispatcher.attempt_timeout_ms
        {
            anyhow::bail!(
                "dispatcher.lease_ms: must be longer than dispatcher.attempt_timeout_ms (and both above 0)"
            );
        }
        if self.transport.connect_timeout_ms == 0 {
            anyhow::bail!("transport.connect_timeout_ms: must be at least 1");
        }
        self.transport.address_policy()?;
        if self.database_pool_size == 0 {
            anyhow::bail!("database_pool_size: must be at least 1");
        }
        if self.retention.batch_size == 0 || self.retention.interval_secs == 0 {
            anyhow::bail!("retention.batch_size and retention.interval_secs: must be at least 1");
        }
        if self.api.max_body_bytes < 1024 {
            anyhow::bail!("api.max_body_bytes: must be at least 1024");
        }
        if !(2..=128).contains(&self.api.max_json_depth) {
            anyhow::bail!("api.max_json_depth: must be between 2 and 128");
        }
        if self.api.max_batch_events == 0 {
            anyhow::bail!("api.max_batch_events: must be at least 1");
        }
        if self.max_webhooks_per_wallet == 0 {
            anyhow::bail!("max_webhooks_per_wallet: must be at least 1");
        }
        self.database()?;
        Ok(())
    }

    /// The database the URL names: `sqlite://<path>`, `postgres://...` or
    /// `postgresql://...`, or by default the SQLite file `<data_dir>/webhookd.db`.
    ///
    /// # Errors
    /// For any other URL; the message never repeats credentials.
    pub fn database(&self) -> anyhow::Result<Database> {
        let url = self.database_url.trim();
        if url.is_empty() {
            return Ok(Database::Sqlite(self.data_dir.join("webhookd.db")));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                anyhow::bail!(
                    "database_url: sqlite:// needs a file path, as in sqlite://data/webhookd.db"
                );
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_owned()));
        }
        let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
        anyhow::bail!(
            "database_url: the scheme {scheme:?} is not supported; use sqlite://<path> or postgres://user:password@host:port/database"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_identus_compatible() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.base_path, "/cloud-agent");
        assert_eq!(s.default_retry_policy, RetryPolicy::identus());
        assert_eq!(s.dispatcher.attempt_timeout(), Duration::from_secs(5));
        assert!(s.identus.default_wallet_enabled);
        assert_eq!(
            s.database().unwrap(),
            Database::Sqlite(PathBuf::from("data/webhookd.db"))
        );
        assert!(s.migrate_on_start);
        assert_eq!(
            s.retention.max_age(),
            Some(Duration::from_secs(30 * 24 * 3600))
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
    fn the_ssrf_guard_is_on_with_nothing_allowed_by_default() {
        let s = Settings::defaults().unwrap();
        assert!(s.transport.ssrf_guard);
        assert!(s.transport.allowed_cidrs.is_empty());
        assert_eq!(
            s.transport.address_policy().unwrap(),
            AddressPolicy::default()
        );
        assert_eq!(s.transport.connect_timeout(), Duration::from_secs(2));
    }

    #[test]
    fn transport_settings_come_from_the_environment() {
        let s = Settings::build(
            None,
            &env(&[
                ("WEBHOOKD_TRANSPORT__SSRF_GUARD", "false"),
                (
                    "WEBHOOKD_TRANSPORT__ALLOWED_CIDRS",
                    "127.0.0.0/8, ::1,10.1.0.0/16",
                ),
                ("WEBHOOKD_TRANSPORT__CONNECT_TIMEOUT_MS", "750"),
            ]),
        )
        .unwrap();
        assert!(!s.transport.ssrf_guard);
        assert_eq!(s.transport.connect_timeout(), Duration::from_millis(750));
        let allowed: Vec<String> = s
            .transport
            .address_policy()
            .unwrap()
            .allowed()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(allowed, ["127.0.0.0/8", "::1/128", "10.1.0.0/16"]);

        // One range, and an empty variable meaning none.
        for (value, expected) in [("fd00::/8", &["fd00::/8"][..]), ("", &[])] {
            let s = Settings::build(None, &env(&[("WEBHOOKD_TRANSPORT__ALLOWED_CIDRS", value)]))
                .unwrap();
            let policy = s.transport.address_policy().unwrap();
            let allowed: Vec<String> = policy.allowed().iter().map(ToString::to_string).collect();
            assert_eq!(allowed, expected, "{value:?}");
        }
        // Other settings are still read as plain strings.
        let s = Settings::build(None, &env(&[("WEBHOOKD_BASE_PATH", "/a,b")])).unwrap();
        assert_eq!(s.base_path, "/a,b");
    }

    #[test]
    fn transport_settings_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhookd.toml");
        std::fs::write(
            &path,
            "[transport]\nallowed_cidrs = [\"192.168.0.0/16\"]\nconnect_timeout_ms = 500\n",
        )
        .unwrap();
        let s = Settings::build(Some(&path), &[]).unwrap();
        assert!(s.transport.ssrf_guard);
        assert_eq!(s.transport.allowed_cidrs, ["192.168.0.0/16"]);
        assert_eq!(s.transport.connect_timeout_ms, 500);
    }

    #[test]
    fn an_invalid_cidr_fails_with_one_line_naming_the_setting() {
        for (value, hint) in [
            ("127.0.0.0/8,localhost", "not an IP address"),
            ("10.0.0.1/8", "write 10.0.0.0/8"),
            ("10.0.0.0/40", "from 0 to 32"),
        ] {
            let err = Settings::build(None, &env(&[("WEBHOOKD_TRANSPORT__ALLOWED_CIDRS", value)]))
                .unwrap_err();
            let err = format!("{err:#}");
            assert!(err.starts_with("transport.allowed_cidrs: cidr "), "{err}");
            assert!(err.contains(hint), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        let err = Settings::build(
            None,
            &env(&[("WEBHOOKD_TRANSPORT__CONNECT_TIMEOUT_MS", "0")]),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("transport.connect_timeout_ms"),
            "{err:#}"
        );
    }

    #[test]
    fn the_database_url_chooses_the_backend() {
        let s = Settings::build(
            None,
            &env(&[("WEBHOOKD_DATABASE_URL", "postgres://app:pw@db:5432/hooks")]),
        )
        .unwrap();
        assert_eq!(
            s.database().unwrap(),
            Database::Postgres("postgres://app:pw@db:5432/hooks".into())
        );
        let s = Settings::build(
            None,
            &env(&[("WEBHOOKD_DATABASE_URL", "sqlite:///var/lib/webhookd/w.db")]),
        )
        .unwrap();
        assert_eq!(
            s.database().unwrap(),
            Database::Sqlite(PathBuf::from("/var/lib/webhookd/w.db"))
        );
        let s = Settings::build(None, &env(&[("WEBHOOKD_RETENTION__MAX_AGE_HOURS", "0")])).unwrap();
        assert_eq!(s.retention.max_age(), None);
    }

    #[test]
    fn invalid_settings_fail_with_the_setting_named() {
        let err = Settings::build(None, &env(&[("WEBHOOKD_LISTEN", "nowhere")])).unwrap_err();
        assert!(format!("{err:#}").contains("listen"), "{err:#}");
        let err = Settings::build(None, &env(&[("WEBHOOKD_BASE_PATH", "api/")])).unwrap_err();
        assert!(format!("{err:#}").contains("base_path"), "{err:#}");
        let err = Settings::build(
            None,
            &env(&[("WEBHOOKD_DATABASE_URL", "mysql://u:p@host/db")]),
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("database_url") && err.contains("mysql") && !err.contains("u:p"),
            "{err}"
        );
    }
}
