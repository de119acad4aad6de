//! Configuration: built-in defaults, then an optional TOML file, then environment variables
//! (`WEBHOOKD_*` for our settings, with `__` between nested names, and the Identus names as
//! they are). This is the only module that reads the environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
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
    pub dispatcher: DispatcherSettings,
    pub transport: TransportSettings,
    pub retention: RetentionSettings,
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
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// Whether this role delivers (and prunes history).
    pub fn delivers(self) -> bool {
        matches!(self, Role::All | Role::Dispatcher)
    }

    /// Whether this role stores the global webhook from its configuration at start: the roles
    /// that serve the API. A dispatcher-only instance delivers to the global webhook as stored
    /// and never changes it, so that one started with another (or no) environment cannot
    /// redirect, re-key or remove it.
    pub fn owns_global_webhook(self) -> bool {
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

/// Limits and defaults of the REST API.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Failed authentications one client address may make per window before it gets 429;
    /// 0 turns the limit off.
    pub auth_failure_limit: u32,
    /// The window of `auth_failure_limit`, counted from the first failure.
    pub auth_failure_window_ms: u64,
    /// Most attempts shown per delivery in the delivery logs: the most recent ones.
    pub max_attempts_per_delivery: u32,
}

impl ApiSettings {
    pub fn auth_failure_window(&self) -> Duration {
        Duration::from_millis(self.auth_failure_window_ms)
    }

    pub fn secret_rotation_grace(&self) -> Duration {
        Duration::from_secs(self.secret_rotation_grace_secs)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
/// `Debug` masks the keys and the passwords in the webhook URLs, as [`Settings::redacted`] does.
#[derive(Clone, Default, Deserialize, Serialize)]
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
const MASK: &str = "****";

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

const DEFAULTS: &str = r#"
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
            .filter(|(k, _)| {
                k.starts_with("WEBHOOKD_")
                    && !CLI_VARIABLES.contains(&k.as_str())
                    && !is_service_link(k)
                    && !is_test_support(k)
            })
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("WEBHOOKD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("transport.allowed_cidrs")
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

    /// A copy with every secret masked: the Identus API keys and admin token become `****`,
    /// and so do the passwords in `database_url` and in the webhook URLs.
    pub fn redacted(&self) -> Settings {
        let mut masked = self.clone();
        masked.database_url = redact_url(&self.database_url);
        masked.sources = self.sources.iter().map(|url| redact_url(url)).collect();
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
            anyhow::bail!("dispatcher.batch_size: must be at least 1, got 0");
        }
        if self.dispatcher.max_in_flight == 0 {
            anyhow::bail!("dispatcher.max_in_flight: must be at least 1, got 0");
        }
        if self.dispatcher.max_in_flight_per_target == 0 {
            anyhow::bail!("dispatcher.max_in_flight_per_target: must be at least 1, got 0");
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

/// Where the configuration came from, to tell the operator where a bad value was set.
struct Sources<'a> {
    file: Option<&'a Path>,
    env: &'a [(String, String)],
}

impl Sources<'_> {
    /// The variable or file that set `key` (such as `dispatcher.batch_size` or
    /// `transport.allowed_cidrs[1]`): the one read last wins, as in [`Settings::build`].
    fn of(&self, key: &str) -> Option<String> {
        let key = key.split('[').next().unwrap_or(key);
        let set = |name: &str| self.env.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if let Some((variable, _)) = IDENTUS_VARIABLES.iter().find(|(_, k)| *k == key)
            && set(variable)
        {
            return Some(format!("from {variable}"));
        }
        // The environment source takes a setting's variable, and every variable beneath it.
        let mut path = key;
        loop {
            let variable = format!("WEBHOOKD_{}", path.replace('.', "__")).to_ascii_uppercase();
            if set(&variable) {
                return Some(format!("from {variable}"));
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => break,
            }
        }
        self.file.map(|file| format!("in {}", file.display()))
    }

    /// A validation error (`key: problem`) with where the key was set.
    fn locate(&self, error: &anyhow::Error) -> anyhow::Error {
        let message = format!("{error:#}");
        let source = message
            .split_once(": ")
            .filter(|(key, _)| !key.contains(' '))
            .and_then(|(key, _)| self.of(key));
        match source {
            Some(source) => anyhow::anyhow!("{message} ({source})"),
            None => anyhow::anyhow!("{message}"),
        }
    }

    /// One line: the setting, what is wrong and what would be right, and where it was set.
    fn explain(&self, error: config::ConfigError) -> anyhow::Error {
        let (key, problem) = match error {
            config::ConfigError::Type {
                unexpected,
                expected,
                key,
                ..
            } => (key, mismatch(&unexpected.to_string(), expected)),
            config::ConfigError::At { error, key, .. } => (key, serde_message(&error.to_string())),
            config::ConfigError::NotFound(key) => (Some(key), "missing".to_owned()),
            other => (None, serde_message(&other.to_string())),
        };
        // serde names an unknown field only in its message; make it part of the key.
        let (key, problem) = match problem
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, allowed)) => {
                let key = match key {
                    Some(parent) => format!("{parent}.{field}"),
                    None => field.to_owned(),
                };
                let allowed = allowed.trim_start_matches(',').trim().replace('`', "");
                (Some(key), format!("unknown setting; {allowed}"))
            }
            None => (key, problem),
        };
        match key {
            Some(key) => match self.of(&key) {
                Some(source) => anyhow::anyhow!("{key}: {problem} ({source})"),
                None => anyhow::anyhow!("{key}: {problem}"),
            },
            None => anyhow::anyhow!("configuration: {problem}"),
        }
    }
}

/// serde's `invalid type: integer `3`, expected struct X` in the words of [`mismatch`]; any
/// other message as it is.
fn serde_message(message: &str) -> String {
    let parsed = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "));
    match parsed {
        Some((unexpected, expected)) if expected.starts_with("struct ") => {
            mismatch(unexpected, "a table of settings")
        }
        Some((unexpected, expected)) => mismatch(unexpected, expected),
        None => message.to_owned(),
    }
}

/// A value of the wrong type, in words: config describes it as `string "abc"` or
/// `64-bit unsigned integer `99999999999``, and what it wanted in Rust's terms.
fn mismatch(unexpected: &str, expected: &str) -> String {
    let value = match unexpected.split_once('`') {
        Some((_, quoted)) => quoted.trim_end_matches('`'),
        None => unexpected.strip_prefix("string ").unwrap_or(unexpected),
    };
    let allowed = if expected.contains("unsigned 32 bit") {
        format!("a whole number from 0 to {}", u32::MAX)
    } else if expected.contains("unsigned") {
        "a whole number, 0 or more".to_owned()
    } else if expected.contains("integer") {
        "a whole number".to_owned()
    } else if expected == "a boolean" {
        "true or false".to_owned()
    } else {
        expected.to_owned()
    };
    if unexpected.contains("integer") && expected.contains("integer") {
        format!("{value} is out of range; expected {allowed}")
    } else {
        format!("{value} is not allowed; expected {allowed}")
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
            Database::parse("sqlite://data/webhookd.db").unwrap()
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
    }

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
    fn configuration_errors_are_one_line_naming_the_setting_and_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("webhookd.toml");
        let shown = file.display().to_string();
        let check = |contents: Option<&str>, vars: &[(&str, &str)], expected: &str| {
            if let Some(contents) = contents {
                std::fs::write(&file, contents).unwrap();
            }
            let err = Settings::build(contents.map(|_| file.as_path()), &env(vars)).unwrap_err();
            let err = format!("{err:#}");
            assert_eq!(err, expected.replace("FILE", &shown));
        };
        check(
            Some("listn = \"x\""),
            &[],
            "listn: unknown setting; expected one of listen, role, base_path, data_dir, database_url, database_pool_size, migrate_on_start, max_webhooks_per_wallet, default_retry_policy, sources, api, dispatcher, transport, retention, identus (in FILE)",
        );
        check(
            Some("[retention]\nmax_age = 3"),
            &[],
            "retention.max_age: unknown setting; expected one of max_age_hours, interval_secs, batch_size (in FILE)",
        );
        check(
            None,
            &[("WEBHOOKD_RETENTION__MAXAGE", "3")],
            "retention.maxage: unknown setting; expected one of max_age_hours, interval_secs, batch_size (from WEBHOOKD_RETENTION__MAXAGE)",
        );
        check(
            Some("[dispatcher]\nbatch_size = \"many\""),
            &[],
            "dispatcher.batch_size: \"many\" is not allowed; expected a whole number (in FILE)",
        );
        check(
            Some("[dispatcher]\nbatch_size = 5"),
            &[("WEBHOOKD_DISPATCHER__BATCH_SIZE", "-1")],
            "dispatcher.batch_size: -1 is out of range; expected a whole number, 0 or more (from WEBHOOKD_DISPATCHER__BATCH_SIZE)",
        );
        check(
            None,
            &[("WEBHOOKD_TRANSPORT__SSRF_GUARD", "perhaps")],
            "transport.ssrf_guard: \"perhaps\" is not allowed; expected true or false (from WEBHOOKD_TRANSPORT__SSRF_GUARD)",
        );
        check(
            None,
            &[("WEBHOOKD_DISPATCHER", "3")],
            "dispatcher: 3 is not allowed; expected a table of settings (from WEBHOOKD_DISPATCHER)",
        );
        check(
            Some("default_retry_policy = { kind = \"fixed\", maxAttempts = 3 }"),
            &[],
            "default_retry_policy.intervalMs: missing (in FILE)",
        );
        check(
            Some("[dispatcher]\nlease_ms = 1000"),
            &[],
            "dispatcher.lease_ms: must be longer than dispatcher.attempt_timeout_ms (5000), got 1000 (in FILE)",
        );
        check(
            Some("listen = \"127.0.0.1:8080\"\n[api\n"),
            &[],
            "configuration file FILE: not valid TOML at line 2, column 5: unclosed table, expected `]`",
        );
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

    /// Every setting of the built-in defaults, and every Identus variable, has its row in
    /// docs/configuration.md.
    #[test]
    fn every_setting_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
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
