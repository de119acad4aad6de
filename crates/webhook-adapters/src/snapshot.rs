//! The whole content of a database as text, table by table, so a test can prove that a refused
//! request changed nothing. Test support only (feature `testing`); fine for small databases.

use std::collections::BTreeMap;
use std::path::Path;

use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, SqliteConnection};
use diesel_async::{AsyncConnection, AsyncPgConnection};

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    text: String,
}

const SQLITE_TABLES: &str = "SELECT name AS text FROM sqlite_master WHERE type = 'table' \
    AND name NOT LIKE 'sqlite_%' AND name <> '__diesel_schema_migrations' ORDER BY name";

const PG_TABLES: &str = "SELECT tablename::text AS text FROM pg_tables \
    WHERE schemaname = current_schema() AND tablename <> '__diesel_schema_migrations' \
    ORDER BY tablename";

fn sqlite_lines(conn: &mut SqliteConnection, sql: &str) -> Vec<String> {
    let lines: Vec<Line> =
        diesel::RunQueryDsl::load(diesel::sql_query(sql), conn).expect("read SQLite");
    lines.into_iter().map(|l| l.text).collect()
}

async fn pg_lines(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    let lines: Vec<Line> = diesel_async::RunQueryDsl::load(diesel::sql_query(sql), conn)
        .await
        .expect("read PostgreSQL");
    lines.into_iter().map(|l| l.text).collect()
}

/// Every table of the SQLite database at `path` (but diesel's migration log), as text.
///
/// # Panics
/// When the database cannot be read: this is for tests.
pub fn sqlite(path: &Path) -> BTreeMap<String, String> {
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).expect("open SQLite");
    let mut contents = BTreeMap::new();
    for table in sqlite_lines(&mut conn, SQLITE_TABLES) {
        let columns = sqlite_lines(
            &mut conn,
            &format!("SELECT name AS text FROM pragma_table_info('{table}') ORDER BY cid"),
        );
        let row = columns
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let rows = sqlite_lines(
            &mut conn,
            &format!(
                "SELECT coalesce(group_concat(r, '|'), '') AS text \
                 FROM (SELECT {row} AS r FROM \"{table}\" ORDER BY 1)"
            ),
        );
        contents.insert(table, rows.concat());
    }
    contents
}

/// What `PRAGMA integrity_check` says of the SQLite database at `path`: `["ok"]` when it is
/// sound, else one line per problem.
///
/// # Panics
/// When the database cannot be opened: this is for tests.
pub fn sqlite_integrity(path: &Path) -> Vec<String> {
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).expect("open SQLite");
    sqlite_lines(
        &mut conn,
        "SELECT integrity_check AS text FROM pragma_integrity_check",
    )
}

/// Every table of the PostgreSQL schema that `url` opens (but diesel's migration log), as text.
///
/// # Panics
/// When the database cannot be read: this is for tests.
pub async fn postgres(url: &str) -> BTreeMap<String, String> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .expect("connect to PostgreSQL");
    let mut contents = BTreeMap::new();
    for table in pg_lines(&mut conn, PG_TABLES).await {
        let rows = pg_lines(
            &mut conn,
            &format!(
                "SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') AS text \
                 FROM \"{table}\" t"
            ),
        )
        .await;
        contents.insert(table, rows.concat());
    }
    contents
}
