//! Where the data lives: the database a configuration names, before anything is opened. The
//! configuration builds it from the database URL; the store opens it through the backend the
//! URL's scheme names (`webhook_adapters::STORAGE_BACKENDS`).

use webhook_adapters::StorageBackend;

/// A database URL and the storage backend that serves it.
#[derive(Debug, Clone)]
pub struct Database {
    url: String,
    backend: &'static StorageBackend,
}

impl PartialEq for Database {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.backend.name == other.backend.name
    }
}

impl Eq for Database {}

impl Database {
    /// The database `url` names.
    ///
    /// # Errors
    /// When no backend serves its scheme, or its backend finds it incomplete; the message
    /// never repeats credentials and lists the URLs that would do.
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(backend) = webhook_adapters::storage_backend(url) else {
            let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
            let examples: Vec<&str> = webhook_adapters::STORAGE_BACKENDS
                .iter()
                .map(|b| b.example)
                .collect();
            return Err(format!(
                "the scheme {scheme:?} is not supported; use {}",
                examples.join(" or ")
            ));
        };
        (backend.check)(url)?;
        Ok(Self {
            url: url.to_owned(),
            backend,
        })
    }

    /// The URL, credentials included: for opening, never for showing.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The backend's name (`SQLite`, `PostgreSQL`).
    pub fn backend(&self) -> &'static str {
        self.backend.name
    }

    /// What to show an operator: the file, or the server and database without credentials.
    pub fn describe(&self) -> String {
        (self.backend.describe)(&self.url)
    }

    /// The backend's opener, for the store.
    pub(crate) fn storage_backend(&self) -> &'static StorageBackend {
        self.backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_credentials() {
        let pg = Database::parse("postgres://app:s3cret@db.internal:5432/hooks?sslmode=require")
            .unwrap();
        assert_eq!(pg.describe(), "PostgreSQL at db.internal:5432/hooks");
        let sqlite = Database::parse("sqlite://data/webhookd.db").unwrap();
        assert_eq!(sqlite.describe(), "SQLite file data/webhookd.db");
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_ones_that_work() {
        let refused = Database::parse("oracle://root:pw@db/hooks").unwrap_err();
        assert!(refused.contains("\"oracle\""), "{refused}");
        assert!(
            refused.contains("sqlite://")
                && refused.contains("postgres://")
                && refused.contains("mysql://"),
            "{refused}"
        );
        assert!(!refused.contains("pw"), "{refused}");
        assert!(
            Database::parse("sqlite://")
                .unwrap_err()
                .contains("file path")
        );
    }
}
