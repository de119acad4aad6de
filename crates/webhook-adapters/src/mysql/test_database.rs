//! Test support for MySQL (feature `testing`, never in the binary): a fresh database per test,
//! dropped when the test is done, and the whole content of one as text.

use std::collections::BTreeMap;
use std::io::Write as _;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

/// The MySQL server for tests: `WEBHOOKD_TEST_MYSQL_URL`, by default
/// `mysql://root@127.0.0.1:3306` (no database in the URL).
fn mysql_server_url() -> String {
    std::env::var("WEBHOOKD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

/// A database of its own on the test server, for one test; dropped with everything in it when
/// this value is dropped.
#[derive(Debug)]
pub struct MysqlTestDatabase {
    name: String,
}

impl MysqlTestDatabase {
    /// Creates a fresh, empty database. When the server cannot be reached this panics under
    /// `CI=true` (the MySQL tests must run there) and otherwise says so once on the terminal
    /// and returns `None`, for the caller to skip.
    ///
    /// # Panics
    /// Under `CI=true` without a server, or when the server refuses to create the database.
    pub async fn create() -> Option<Self> {
        let server = mysql_server_url();
        let mut admin = match AsyncMysqlConnection::establish(&server).await {
            Ok(conn) => conn,
            Err(e) => {
                let why = format!(
                    "MySQL is not reachable at {}: {e}",
                    super::location(&server)
                );
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true"),
                    "{why} (CI=true: the MySQL tests must run)"
                );
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    // Straight to the file descriptor: `eprintln!` would be captured.
                    let _ = writeln!(
                        std::io::stderr(),
                        "SKIPPED: {why}; the MySQL tests of this test binary do not run"
                    );
                });
                return None;
            }
        };
        let name = format!("webhookd_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .await
            .expect("cannot create a test database");
        Some(Self { name })
    }

    /// The URL of this database.
    pub fn url(&self) -> String {
        format!("{}/{}", mysql_server_url(), self.name)
    }
}

impl Drop for MysqlTestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let mut conn = AsyncMysqlConnection::establish(&mysql_server_url())
                    .await
                    .map_err(|e| e.to_string())?;
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    text: String,
}

async fn lines(conn: &mut AsyncMysqlConnection, sql: &str) -> Vec<String> {
    let lines: Vec<Line> = diesel::sql_query(sql).load(conn).await.expect("read MySQL");
    lines.into_iter().map(|l| l.text).collect()
}

/// Every table of the MySQL database that `url` opens (but diesel's migration log), as text.
///
/// # Panics
/// When the database cannot be read: this is for tests.
pub(super) async fn snapshot(url: &str) -> BTreeMap<String, String> {
    let mut conn = AsyncMysqlConnection::establish(&super::driver_url(url))
        .await
        .expect("connect to MySQL");
    conn.batch_execute("SET SESSION group_concat_max_len = 1073741824")
        .await
        .expect("set group_concat_max_len");
    let tables = lines(
        &mut conn,
        "SELECT CAST(table_name AS CHAR) AS text FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name <> '__diesel_schema_migrations' \
         ORDER BY table_name",
    )
    .await;
    let mut contents = BTreeMap::new();
    for table in tables {
        let columns = lines(
            &mut conn,
            &format!(
                "SELECT CAST(column_name AS CHAR) AS text FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = '{table}' \
                 ORDER BY ordinal_position"
            ),
        )
        .await;
        let row = columns
            .iter()
            .map(|c| format!("QUOTE(`{c}`)"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = lines(
            &mut conn,
            &format!(
                "SELECT CAST(COALESCE(GROUP_CONCAT(r ORDER BY r SEPARATOR '|'), '') AS CHAR) \
                 AS text FROM (SELECT CONCAT_WS(',', {row}) AS r FROM `{table}`) AS t"
            ),
        )
        .await;
        contents.insert(table, rows.concat());
    }
    contents
}
