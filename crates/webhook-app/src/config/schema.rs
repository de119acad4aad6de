//! The settings' shape: every setting with its type and meaning, and the durations, policies
//! and database the plain values stand for. What a setting may hold beyond its type is
//! `validate`'s; where the values come from is the loader's (`config/mod.rs`). Nothing here
//! reads a file or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use webhook_domain::{AddressPolicy, IpRange, RetryPolicy};

use crate::database::Database;

/// Everything the service can be told.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the REST API listens on.
    #[serde(deserialize_with = "socket_address")]
    pub listen: SocketAddr,
    /// What this instance runs: the API, the dispatcher (with retention), or both.
    pub role: Role,
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
    /// Event sources to start beside the REST API, one URL each; a URL's scheme picks the
    /// source (see `sources.rs`). Empty: events come in through the API and the CLI only.
    pub sources: Vec<String>,
    pub api: ApiSettings,
    pub console: ConsoleSettings,
    pub dispatcher: DispatcherSettings,
    pub transport: TransportSettings,
    pub(crate) retention: RetentionSettings,
    /// The Identus environment variables.
    pub identus: IdentusSettings,
}

/// What one instance runs, so the API and the dispatcher can be scaled apart on one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Role {
    /// The REST API, the dispatcher and the retention job.
    All,
    /// The REST API only: publishes are stored, and other instances deliver them.
    Api,
    /// The dispatcher and the retention job only; nothing is served over HTTP.
    Dispatcher,
}

impl Role {
    /// Whether this role serves the REST API.
    pub(crate) fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// Whether this role delivers (and prunes history).
    pub(crate) fn delivers(self) -> bool {
        matches!(self, Role::All | Role::Dispatcher)
    }

    /// Whether this role stores the global webhook from its configuration at start: the roles
    /// that serve the API. A dispatcher-only instance delivers to the global webhook as stored
    /// and never changes it, so that one started with another (or no) environment cannot
    /// redirect, re-key or remove it.
    pub(crate) fn owns_global_webhook(self) -> bool {
        self.serves_api()
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.trim() {
            "all" => Ok(Role::All),
            "api" => Ok(Role::Api),
            "dispatcher" => Ok(Role::Dispatcher),
            _ => Err(format!(
                "{text:?} is not a role; use all, api or dispatcher"
            )),
        }
    }
}

/// `listen`: an address and port, with an error that says how to write one.
fn socket_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an address; write IP:port with a port from 0 to 65535, such as 127.0.0.1:8080 or [::]:8080"
        ))
    })
}

/// The web console at `/console`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve the console; it is a client of the REST API and has no privilege of its own.
    pub enabled: bool,
}

/// Limits and defaults of the REST API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Largest request body accepted; larger ones get 413.
    pub(crate) max_body_bytes: usize,
    /// Deepest JSON nesting accepted (objects and arrays), in request bodies and event data.
    pub(crate) max_json_depth: usize,
    /// Most events in one batch publish.
    pub(crate) max_batch_events: usize,
    /// How long a rotated-out signing secret keeps signing, unless the rotation says otherwise.
    pub(crate) secret_rotation_grace_secs: u64,
    /// Failed authentications one client address may make per window before it gets 429;
    /// 0 turns the limit off.
    pub auth_failure_limit: u32,
    /// The window of `auth_failure_limit`, counted from the first failure.
    pub auth_failure_window_ms: u64,
    /// Most attempts shown per delivery in the delivery logs: the most recent ones.
    pub max_attempts_per_delivery: u32,
}

impl ApiSettings {
    pub(crate) fn auth_failure_window(&self) -> Duration {
        Duration::from_millis(self.auth_failure_window_ms)
    }

    pub(crate) fn secret_rotation_grace(&self) -> Duration {
        Duration::from_secs(self.secret_rotation_grace_secs)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Deliveries claimed (and attempted concurrently) at once.
    pub batch_size: u32,
    /// How long a claim is leased before another dispatcher may take it.
    pub(crate) lease_ms: u64,
    /// Limit of one attempt, connect to last byte read.
    pub attempt_timeout_ms: u64,
    /// Longest idle sleep; publishes wake the dispatcher at once.
    pub poll_interval_ms: u64,
    /// Most attempts in flight in this instance, all targets together.
    pub(crate) max_in_flight: usize,
    /// The fewest attempts in flight a target's adaptive limit goes down to.
    pub min_in_flight_per_target: usize,
    /// Where a target's in-flight limit starts, before its answers move it.
    pub initial_in_flight_per_target: usize,
    /// Most attempts in flight to one target, however well it answers; its other deliveries
    /// wait in the database.
    pub max_in_flight_per_target: usize,
    /// Consecutive failures (timeouts, connection errors, 5xx, 429) that rest a target.
    pub breaker_failure_threshold: u32,
    /// How long a rested target gets no attempts before one probe.
    pub breaker_open_ms: u64,
    /// Outcomes written per database round trip, at most.
    pub(crate) record_batch: usize,
    /// Longest an outcome waits for its batch to fill.
    pub(crate) record_delay_ms: u64,
    /// At shutdown, how long attempts in flight may finish before their leases are given back.
    pub(crate) shutdown_grace_ms: u64,
}

impl DispatcherSettings {
    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub(crate) fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// The bounds of each target's adaptive in-flight limit (checked by validation).
    pub(crate) fn per_target(&self) -> webhook_domain::ConcurrencyLimits {
        let bound = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        webhook_domain::ConcurrencyLimits::new(
            bound(self.min_in_flight_per_target).max(1),
            bound(self.initial_in_flight_per_target),
            bound(self.max_in_flight_per_target).max(1),
        )
        .unwrap_or_else(|_| {
            webhook_domain::ConcurrencyLimits::fixed(bound(self.max_in_flight_per_target))
        })
    }

    pub(crate) fn circuit_breaker(&self) -> webhook_domain::CircuitBreakerConfig {
        webhook_domain::CircuitBreakerConfig {
            failure_threshold: self.breaker_failure_threshold.max(1),
            open_for: Duration::from_millis(self.breaker_open_ms),
        }
    }
}

/// How deliveries connect to their targets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSettings {
    /// Refuse targets at loopback, private, link-local and other special-purpose addresses
    /// unless `allowed_cidrs` contains them.
    pub ssrf_guard: bool,
    /// Ranges the SSRF guard lets through anyway, such as `127.0.0.0/8` for local development;
    /// in the environment, comma-separated.
    pub allowed_cidrs: Vec<String>,
    /// Longest wait for the TCP connection, within the attempt's own timeout.
    pub(crate) connect_timeout_ms: u64,
    /// The message brokers tenants may name as webhook targets, with the credentials webhookd
    /// signs in with (`nats://user:password@host:4222`, `amqp://user:password@host:5672`,
    /// `amqps://...`): a `nats://` or `amqp://` target is accepted only on a listed broker's
    /// host and port. In the environment, comma-separated. Passwords are masked when printed.
    pub brokers: Vec<String>,
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

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// How long finished history is kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionSettings {
    /// Events whose deliveries are all finished are removed, with their deliveries and
    /// attempts, this many hours after they were published (a fraction of an hour too: 0.25
    /// is 15 minutes); 0 keeps everything.
    pub(crate) max_age_hours: f64,
    /// How often the pruning job runs.
    pub(crate) interval_secs: u64,
    /// Events removed per transaction.
    pub(crate) batch_size: u32,
}

impl RetentionSettings {
    /// The age past which finished history is removed; `None` when retention is off.
    pub(crate) fn max_age(&self) -> Option<Duration> {
        // Validation keeps the value finite, not negative and at most `MAX_AGE_HOURS`.
        (self.max_age_hours > 0.0).then(|| Duration::from_secs_f64(self.max_age_hours * 3600.0))
    }

    pub(crate) fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

/// The Identus Cloud Agent's webhook settings, under the names Identus reads.
/// `Debug` masks the keys and the passwords in the webhook URLs, as [`Settings::redacted`] does.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentusSettings {
    pub global_webhook_url: Option<String>,
    pub global_webhook_api_key: Option<String>,
    pub(crate) default_wallet_enabled: bool,
    pub default_wallet_webhook_url: Option<String>,
    pub default_wallet_webhook_api_key: Option<String>,
    pub default_wallet_auth_api_key: Option<String>,
    /// The `x-admin-api-key` value; when unset, one is generated at first start, stored
    /// hashed and printed once.
    pub admin_token: Option<String>,
}

impl Settings {
    /// The database the URL names: `sqlite://<path>`, `postgres://...` or
    /// `postgresql://...`, or by default the SQLite file `<data_dir>/webhookd.db`.
    ///
    /// # Errors
    /// For any other URL; the message never repeats credentials.
    pub fn database(&self) -> anyhow::Result<Database> {
        let url = self.database_url.trim();
        let url = if url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("webhookd.db").display())
        } else {
            url.to_owned()
        };
        Database::parse(&url).map_err(|e| anyhow::anyhow!("database_url: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::environment::env;

    #[test]
    fn the_role_chooses_what_runs() {
        assert_eq!(Settings::defaults().unwrap().role, Role::All);
        for (text, role, api, delivers) in [
            ("all", Role::All, true, true),
            ("api", Role::Api, true, false),
            ("dispatcher", Role::Dispatcher, false, true),
        ] {
            let s = Settings::build(None, &env(&[("WEBHOOKD_ROLE", text)])).unwrap();
            assert_eq!(s.role, role);
            assert_eq!((role.serves_api(), role.delivers()), (api, delivers));
            assert_eq!(role.owns_global_webhook(), api);
        }
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
            Database::parse("postgres://app:pw@db:5432/hooks").unwrap()
        );
        let s = Settings::build(
            None,
            &env(&[("WEBHOOKD_DATABASE_URL", "sqlite:///var/lib/webhookd/w.db")]),
        )
        .unwrap();
        assert_eq!(
            s.database().unwrap(),
            Database::parse("sqlite:///var/lib/webhookd/w.db").unwrap()
        );
        let s = Settings::build(None, &env(&[("WEBHOOKD_RETENTION__MAX_AGE_HOURS", "0")])).unwrap();
        assert_eq!(s.retention.max_age(), None);
        // Fractions of an hour, from a variable and from a file's whole number alike.
        let s =
            Settings::build(None, &env(&[("WEBHOOKD_RETENTION__MAX_AGE_HOURS", "0.25")])).unwrap();
        assert_eq!(s.retention.max_age(), Some(Duration::from_secs(15 * 60)));
        let s = Settings::build(None, &env(&[("WEBHOOKD_RETENTION__MAX_AGE_HOURS", "2")])).unwrap();
        assert_eq!(s.retention.max_age(), Some(Duration::from_secs(2 * 3600)));
    }
}
