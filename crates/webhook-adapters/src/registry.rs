//! The adapters by URL scheme: how the app finds the storage backend a database URL names and
//! the destination a target URL names. A new backend is a module of this crate with a
//! [`StorageBackend`] of its own and one line in [`STORAGE_BACKENDS`]; a new destination is a
//! module with a [`DestinationKind`] and one line in [`DESTINATIONS`] (or, outside this crate,
//! one more kind handed to [`Destinations::open`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use thiserror::Error;
use webhook_domain::{AttemptDetail, OutboundMessage, WebhookUrl};
use webhook_ports::{AttemptReport, BoxError, Destination, Storage, StorageError};

use crate::TransportConfig;

/// A backend being opened: the storage, or why it could not be.
pub type Opening = BoxFuture<'static, Result<Arc<dyn Storage>, StorageError>>;

/// One storage backend as the app sees it before anything is opened.
#[derive(Debug)]
pub struct StorageBackend {
    /// Its name in messages (`SQLite`, `PostgreSQL`).
    pub name: &'static str,
    /// The URL schemes it serves, without `://`.
    pub schemes: &'static [&'static str],
    /// A URL to show in an error message that asks for one.
    pub example: &'static str,
    /// Whether `url` (of one of its schemes) names a database it can open: a message saying
    /// what is missing otherwise, never repeating credentials.
    pub check: fn(&str) -> Result<(), String>,
    /// What to show an operator for `url`: where the data is, never credentials.
    pub describe: fn(&str) -> String,
    /// Opens (without migrating) the database `url` names, with up to `pool_size`
    /// connections.
    pub open: fn(url: String, pool_size: u32) -> Opening,
    /// What tests need of the backend (feature `testing`): a fresh database, and the whole
    /// content of one as text.
    #[cfg(feature = "testing")]
    pub testing: crate::testing::TestSupport,
}

/// Every storage backend, the embedded default first.
pub const STORAGE_BACKENDS: &[StorageBackend] = &[
    crate::sqlite::BACKEND,
    crate::postgres::BACKEND,
    crate::mysql::BACKEND,
];

/// The backend that serves `url`'s scheme.
pub fn storage_backend(url: &str) -> Option<&'static StorageBackend> {
    let (scheme, _) = url.split_once("://")?;
    STORAGE_BACKENDS
        .iter()
        .find(|b| b.schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)))
}

/// One kind of destination as the app sees it before any is built.
#[derive(Debug, Clone, Copy)]
pub struct DestinationKind {
    /// Its name in messages (`HTTP`).
    pub name: &'static str,
    /// The target URL schemes it serves, in lower case, without `://`.
    pub schemes: &'static [&'static str],
    /// Builds the destination. One that connects over the network resolves and connects only
    /// through `config.egress()`, the SSRF guard; the destination contract suite checks it.
    pub open: fn(config: &TransportConfig) -> Result<Arc<dyn Destination>, BoxError>,
}

/// Every destination this crate brings.
pub const DESTINATIONS: &[DestinationKind] = &[
    crate::http_transport::DESTINATION,
    crate::nats::DESTINATION,
    crate::amqp::DESTINATION,
];

/// Why the destinations could not be built.
#[derive(Debug, Error)]
pub enum DestinationsError {
    #[error("destinations: scheme {scheme:?} is served by both {first} and {second}")]
    SchemeTwice {
        scheme: &'static str,
        first: &'static str,
        second: &'static str,
    },
    #[error("destination {name}: {source}")]
    Open {
        name: &'static str,
        #[source]
        source: BoxError,
    },
}

/// The destinations of one instance: itself a [`Destination`], which hands each target to the
/// destination of its URL's scheme.
pub struct Destinations {
    by_scheme: Vec<(&'static str, &'static str, Arc<dyn Destination>)>,
}

impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destinations")
            .field("schemes", &self.schemes())
            .finish_non_exhaustive()
    }
}

impl Destinations {
    /// Builds each of `kinds` with `config`.
    ///
    /// # Errors
    /// When two kinds serve one scheme, or one cannot be built.
    pub fn open<'a>(
        kinds: impl IntoIterator<Item = &'a DestinationKind>,
        config: &TransportConfig,
    ) -> Result<Self, DestinationsError> {
        let mut by_scheme: Vec<(&'static str, &'static str, Arc<dyn Destination>)> = Vec::new();
        for kind in kinds {
            let destination = (kind.open)(config).map_err(|source| DestinationsError::Open {
                name: kind.name,
                source,
            })?;
            for &scheme in kind.schemes {
                if let Some((_, first, _)) = by_scheme.iter().find(|(s, _, _)| *s == scheme) {
                    return Err(DestinationsError::SchemeTwice {
                        scheme,
                        first,
                        second: kind.name,
                    });
                }
                by_scheme.push((scheme, kind.name, destination.clone()));
            }
        }
        Ok(Self { by_scheme })
    }

    /// The schemes served, in the order of their kinds: what a target URL may use.
    pub fn schemes(&self) -> Vec<&'static str> {
        self.by_scheme
            .iter()
            .map(|(scheme, _, _)| *scheme)
            .collect()
    }
}

#[async_trait]
impl Destination for Destinations {
    /// A target whose scheme no destination of this instance serves (registered on an instance
    /// with more destinations, say) is retried: another instance may serve it.
    async fn send(
        &self,
        url: &WebhookUrl,
        message: &OutboundMessage,
        timeout: Duration,
    ) -> AttemptReport {
        match self.by_scheme.iter().find(|(s, _, _)| *s == url.scheme()) {
            Some((_, _, destination)) => destination.send(url, message, timeout).await,
            None => AttemptReport {
                error: Some(format!(
                    "no destination of this instance serves scheme {:?}",
                    url.scheme()
                )),
                ..AttemptReport::of(AttemptDetail::ConnectionFailed, Duration::ZERO)
            },
        }
    }

    fn check_target(&self, url: &WebhookUrl) -> Result<(), String> {
        match self.by_scheme.iter().find(|(s, _, _)| *s == url.scheme()) {
            Some((_, _, destination)) => destination.check_target(url),
            None => Err(format!(
                "no destination of this instance serves scheme {:?}",
                url.scheme()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_domain::AttemptOutcome;

    #[tokio::test]
    async fn destinations_route_by_scheme_and_refuse_a_scheme_served_twice() {
        let destinations = Destinations::open(DESTINATIONS, &TransportConfig::default()).unwrap();
        assert_eq!(
            destinations.schemes(),
            ["http", "https", "nats", "amqp", "amqps"]
        );
        let stored = WebhookUrl::parse_stored("kafka://broker/topic").unwrap();
        let message = OutboundMessage {
            body: Vec::new(),
            headers: Vec::new(),
        };
        let report = destinations
            .send(&stored, &message, Duration::from_secs(1))
            .await;
        assert_eq!(
            report.outcome,
            AttemptOutcome::RetryLater { not_before: None }
        );
        assert_eq!(
            report.error.as_deref(),
            Some("no destination of this instance serves scheme \"kafka\"")
        );
        let twice = Destinations::open(
            DESTINATIONS.iter().chain(DESTINATIONS),
            &TransportConfig::default(),
        );
        assert_eq!(
            twice.unwrap_err().to_string(),
            "destinations: scheme \"http\" is served by both HTTP and HTTP"
        );
    }

    #[test]
    fn each_scheme_names_one_backend() {
        assert_eq!(
            storage_backend("sqlite://data/w.db").map(|b| b.name),
            Some("SQLite")
        );
        assert_eq!(
            storage_backend("postgres://h/db").map(|b| b.name),
            Some("PostgreSQL")
        );
        assert_eq!(
            storage_backend("postgresql://h/db").map(|b| b.name),
            Some("PostgreSQL")
        );
        assert_eq!(
            storage_backend("mysql://h/db").map(|b| b.name),
            Some("MySQL")
        );
        assert_eq!(
            storage_backend("mariadb://h/db").map(|b| b.name),
            Some("MySQL")
        );
        assert!(storage_backend("oracle://h/db").is_none());
        assert!(storage_backend("data/w.db").is_none());
        let mut schemes: Vec<&str> = STORAGE_BACKENDS
            .iter()
            .flat_map(|b| b.schemes)
            .copied()
            .collect();
        let all = schemes.len();
        schemes.sort_unstable();
        schemes.dedup();
        assert_eq!(schemes.len(), all, "a scheme served twice");
    }

    #[test]
    fn descriptions_never_show_credentials() {
        let pg = storage_backend("postgres://").unwrap();
        assert_eq!(
            (pg.describe)("postgres://app:s3cret@db.internal:5432/hooks?sslmode=require"),
            "PostgreSQL at db.internal:5432/hooks"
        );
        let sqlite = storage_backend("sqlite://").unwrap();
        assert_eq!(
            (sqlite.describe)("sqlite://data/webhookd.db"),
            "SQLite file data/webhookd.db"
        );
        assert!((sqlite.check)("sqlite://").is_err());
        assert!((sqlite.check)("sqlite://data/webhookd.db").is_ok());
        let mysql = storage_backend("mysql://").unwrap();
        assert_eq!(
            (mysql.describe)("mysql://app:s3cret@db.internal:3306/hooks?prefer_socket=false"),
            "MySQL at db.internal:3306/hooks"
        );
        assert!((mysql.check)("mysql://app:s3cret@db.internal:3306").is_err());
        assert!((mysql.check)("mariadb://root@127.0.0.1:3306/webhookd").is_ok());
    }
}
