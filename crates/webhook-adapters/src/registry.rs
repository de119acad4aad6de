//! The storage backends, by URL scheme: how the app finds the adapter a database URL names.
//! A new backend is a module of this crate with a [`StorageBackend`] of its own, and one line
//! in [`STORAGE_BACKENDS`].

use std::sync::Arc;

use futures_util::future::BoxFuture;
use webhook_ports::{Storage, StorageError};

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
}

/// Every storage backend, the embedded default first.
pub const STORAGE_BACKENDS: &[StorageBackend] = &[crate::sqlite::BACKEND, crate::postgres::BACKEND];

/// The backend that serves `url`'s scheme.
pub fn storage_backend(url: &str) -> Option<&'static StorageBackend> {
    let (scheme, _) = url.split_once("://")?;
    STORAGE_BACKENDS
        .iter()
        .find(|b| b.schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(storage_backend("mysql://h/db").is_none());
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
    }
}
