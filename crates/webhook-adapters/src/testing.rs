//! Test support (feature `testing`, never in the binary): fault injection, and fresh
//! PostgreSQL schemas for tests that run in parallel.

use std::sync::atomic::{AtomicBool, Ordering};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// Failures armed for the next operation that reaches them, to prove that the operation's
/// transaction leaves nothing behind; each fires once.
#[derive(Debug, Default)]
pub struct Faults {
    publish_after_event: AtomicBool,
    publish_barrier: std::sync::Mutex<Option<std::sync::Arc<tokio::sync::Barrier>>>,
}

impl Faults {
    /// The next publish fails after it has written the event and before its deliveries.
    pub fn fail_next_publish_after_event(&self) {
        self.publish_after_event.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_publish_after_event(&self) -> bool {
        self.publish_after_event.swap(false, Ordering::SeqCst)
    }

    /// From now on, each publish waits after looking for an earlier publish of its event until
    /// `parties` publishes are waiting there, so that they race to insert (PostgreSQL only:
    /// SQLite runs publishes one at a time).
    ///
    /// # Panics
    /// If a previous holder of the lock panicked.
    pub fn gather_publishes(&self, parties: usize) {
        *self.publish_barrier.lock().expect("poisoned") =
            Some(std::sync::Arc::new(tokio::sync::Barrier::new(parties)));
    }

    pub(crate) fn publish_barrier(&self) -> Option<std::sync::Arc<tokio::sync::Barrier>> {
        self.publish_barrier.lock().ok().and_then(|b| b.clone())
    }
}

/// The database the test schemas live in, created when missing.
const TEST_DATABASE: &str = "webhookd_test";

/// The PostgreSQL server for tests: `WEBHOOKD_TEST_PG_URL`, by default
/// `postgres://postgres@127.0.0.1:5432` (no database in the URL).
pub fn pg_server_url() -> String {
    std::env::var("WEBHOOKD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A schema of its own in the `webhookd_test` database, for one test; dropped with everything
/// in it when this value is dropped.
#[derive(Debug)]
pub struct PgTestSchema {
    name: String,
}

impl PgTestSchema {
    /// Creates a fresh schema. When the server cannot be reached this panics under `CI=true`
    /// (the PostgreSQL tests must run there) and otherwise prints a loud message and returns
    /// `None`, for the caller to skip.
    ///
    /// # Panics
    /// Under `CI=true` without a server, or when the server refuses to create the schema.
    pub async fn create() -> Option<Self> {
        let server = pg_server_url();
        let mut admin = match AsyncPgConnection::establish(&format!("{server}/postgres")).await {
            Ok(conn) => conn,
            Err(e) => {
                let why = format!("PostgreSQL at {server} is unreachable: {e}");
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true"),
                    "{why} (CI=true: the PostgreSQL tests must run)"
                );
                eprintln!("SKIPPED: {why}; start it (see README.md) to run the PostgreSQL tests");
                return None;
            }
        };
        // Parallel tests may race to create the database: losing that race is fine.
        if let Err(e) = admin
            .batch_execute(&format!("CREATE DATABASE {TEST_DATABASE}"))
            .await
        {
            let text = e.to_string();
            assert!(
                text.contains("already exists") || text.contains("duplicate key"),
                "cannot create the test database: {text}"
            );
        }
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(&format!("{server}/{TEST_DATABASE}"))
            .await
            .expect("cannot connect to the test database");
        conn.batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("cannot create a test schema");
        Some(Self { name })
    }

    /// A database URL whose connections see only this schema.
    pub fn url(&self) -> String {
        format!(
            "{}/{TEST_DATABASE}?options=-csearch_path%3D{}",
            pg_server_url(),
            self.name
        )
    }
}

impl Drop for PgTestSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let url = format!("{}/{TEST_DATABASE}", pg_server_url());
                let mut conn = AsyncPgConnection::establish(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}
