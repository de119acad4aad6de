//! Where the data lives: the database a configuration names, before anything is opened. The
//! configuration builds it; the store opens it.

use std::path::PathBuf;

/// Where the data lives, parsed from the database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (`sqlite://<path>`, or the default under the data directory).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://` or `postgresql://`); the URL may hold a password.
    Postgres(String),
}

impl Database {
    /// What to show an operator: the file, or the server and database without credentials.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("SQLite file {}", path.display()),
            Database::Postgres(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                let host_and_db = host_and_db.split('?').next().unwrap_or_default();
                format!("PostgreSQL at {host_and_db}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_credentials() {
        let pg = Database::Postgres(
            "postgres://app:s3cret@db.internal:5432/hooks?sslmode=require".into(),
        );
        assert_eq!(pg.describe(), "PostgreSQL at db.internal:5432/hooks");
        let sqlite = Database::Sqlite(PathBuf::from("data/webhookd.db"));
        assert_eq!(sqlite.describe(), "SQLite file data/webhookd.db");
    }
}
