//! Test support (feature `testing`, never in the binary): fault injection, and fresh
//! PostgreSQL schemas for tests that run in parallel, with a record of the tests that skipped
//! PostgreSQL because it was not there.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
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

/// The variable naming a file to which each test that skips PostgreSQL adds a line,
/// `<test name>\t<reason>`. `cargo xtask ci` sets it and counts the lines last, since the test
/// harness hides what passing tests print.
pub const SKIP_LOG_VAR: &str = "WEBHOOKD_TEST_SKIP_LOG";

/// `host:port` (and what follows) of a server URL, without the user and password.
fn server_address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, host)| host)
}

/// Says that the current test skips PostgreSQL for `reason`: once per test process on the
/// terminal itself (libtest hides `eprintln!` of passing tests, so a skip would go unseen),
/// and for every test in the file [`SKIP_LOG_VAR`] names, if it names one.
fn report_skip(reason: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        // Straight to the file descriptor: `eprintln!` would be captured.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {reason}; the PostgreSQL tests of this test binary do not run (start it with `cargo xtask db`, see README.md)"
        );
    });
    if let Some(log) = std::env::var_os(SKIP_LOG_VAR) {
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        if let Err(e) = append_skip(Path::new(&log), &test, reason) {
            let _ = writeln!(
                std::io::stderr(),
                "cannot note a skipped test in {}: {e}",
                Path::new(&log).display()
            );
        }
    }
}

/// Adds `test\treason` to `log` in one write, so that tests of parallel threads and processes
/// do not interleave their lines.
fn append_skip(log: &Path, test: &str, reason: &str) -> std::io::Result<()> {
    let one_line = |text: &str| text.replace(['\t', '\n', '\r'], " ");
    let line = format!("{}\t{}\n", one_line(test), one_line(reason));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?
        .write_all(line.as_bytes())
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
                let why = format!(
                    "PostgreSQL is not reachable at {}: {e}",
                    server_address(&server)
                );
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true"),
                    "{why} (CI=true: the PostgreSQL tests must run)"
                );
                report_skip(&why);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_leave_out_credentials() {
        assert_eq!(
            server_address("postgres://postgres@127.0.0.1:5432"),
            "127.0.0.1:5432"
        );
        assert_eq!(
            server_address("postgres://app:p@ss@db.example:6432/x?sslmode=require"),
            "db.example:6432"
        );
        assert_eq!(server_address("postgres://[::1]:5432"), "[::1]:5432");
    }

    #[test]
    fn each_skip_is_one_line_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skipped.tsv");
        append_skip(&log, "api::postgres::a", "PostgreSQL is not reachable").unwrap();
        append_skip(&log, "b", "a reason\nover\ttwo lines").unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "api::postgres::a\tPostgreSQL is not reachable\nb\ta reason over two lines\n"
        );
    }
}

/// A fresh, empty database for one test, and what keeps it (a schema dropped on drop).
pub struct FreshDatabase {
    /// Its URL, for `database_url`.
    pub url: String,
    /// Dropped when the test is done with the database.
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for FreshDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshDatabase")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What tests need of a storage backend, given beside it in its `StorageBackend`, so that the
/// tests of the app reach every backend through the registry.
#[derive(Debug, Clone, Copy)]
pub struct TestSupport {
    /// A fresh database, as a file under the test's directory or on the backend's server;
    /// `None` to skip when the server is absent (which fails under `CI=true` instead).
    pub fresh: fn(dir: &Path) -> futures_util::future::BoxFuture<'static, Option<FreshDatabase>>,
    /// The whole content of the database `url` names, table by table, as text: equal
    /// snapshots mean that nothing changed.
    pub snapshot:
        fn(url: String) -> futures_util::future::BoxFuture<'static, BTreeMap<String, String>>,
}

/// The snapshot ([`TestSupport::snapshot`]) of the database `url` names, by its backend.
///
/// # Panics
/// When no backend serves the URL's scheme, or the database cannot be read: this is for tests.
pub async fn snapshot(url: &str) -> BTreeMap<String, String> {
    let backend = crate::storage_backend(url).expect("a storage backend serves the URL");
    (backend.testing.snapshot)(url.to_owned()).await
}

/// Whether the MySQL store runs again a transaction that ended with `e`, that is whether `e`
/// says InnoDB ended it for a lock conflict (a deadlock, 1213, or a lock wait timeout, 1205).
/// For the tests that provoke both on a real server and check that the store knows them.
#[doc(hidden)]
pub fn mysql_is_lock_conflict(e: &diesel::result::Error) -> bool {
    crate::mysql::is_lock_conflict(e)
}
