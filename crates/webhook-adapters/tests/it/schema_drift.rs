//! The diesel schema module must describe exactly what the migrations create, on both
//! backends: the same tables, the same columns in the same order, the same types and
//! nullability. A migration changed without the schema (or the reverse) fails here.

use diesel::sql_types::SqlType;
use diesel::{Column, Expression, Table};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use webhook_adapters::schema;
use webhook_adapters::{PgStore, SqliteStore};

/// One column as (name, diesel type without paths, e.g. `Nullable<BigInt>`).
type Described = Vec<(String, String)>;

trait DescribeColumns {
    fn describe() -> Described;
}

fn type_of<T: ?Sized>() -> String {
    // `diesel::sql_types::Nullable<diesel::sql_types::BigInt>` -> `Nullable<BigInt>`
    let full = std::any::type_name::<T>();
    let mut out = String::new();
    for part in full.split_inclusive(['<', '>', ',']) {
        let (path, sep) = match part.char_indices().last() {
            Some((i, '<' | '>' | ',')) => (&part[..i], &part[i..]),
            _ => (part, ""),
        };
        out.push_str(path.rsplit("::").next().unwrap_or(path).trim());
        out.push_str(sep);
    }
    out
}

macro_rules! describe_tuple {
    ($($c:ident),+) => {
        impl<$($c),+> DescribeColumns for ($($c,)+)
        where
            $($c: Column + Expression, <$c as Expression>::SqlType: SqlType,)+
        {
            fn describe() -> Described {
                vec![$(($c::NAME.to_owned(), type_of::<<$c as Expression>::SqlType>())),+]
            }
        }
    };
}
describe_tuple!(A, B, C, D);
describe_tuple!(A, B, C, D, E);
describe_tuple!(A, B, C, D, E, F);
describe_tuple!(A, B, C, D, E, F, G, H, I);
describe_tuple!(A, B, C, D, E, F, G, H, I, J);
describe_tuple!(A, B, C, D, E, F, G, H, I, J, K);
describe_tuple!(A, B, C, D, E, F, G, H, I, J, K, L);
describe_tuple!(A, B, C, D, E, F, G, H, I, J, K, L, M, N);

fn columns_of<T: Table>(_: T) -> Described
where
    T::AllColumns: DescribeColumns,
{
    T::AllColumns::describe()
}

/// Every table of the schema module, by name, in name order.
fn expected() -> Vec<(String, Described)> {
    vec![
        (
            "admin_token".to_owned(),
            columns_of(schema::admin_token::table),
        ),
        ("api_keys".to_owned(), columns_of(schema::api_keys::table)),
        ("attempts".to_owned(), columns_of(schema::attempts::table)),
        (
            "deliveries".to_owned(),
            columns_of(schema::deliveries::table),
        ),
        ("entities".to_owned(), columns_of(schema::entities::table)),
        ("events".to_owned(), columns_of(schema::events::table)),
        (
            "redelivery_jobs".to_owned(),
            columns_of(schema::redelivery_jobs::table),
        ),
        ("wallets".to_owned(), columns_of(schema::wallets::table)),
        ("webhooks".to_owned(), columns_of(schema::webhooks::table)),
    ]
}

/// The diesel type a declared SQL type maps to (both backends' spellings).
fn diesel_type(sql: &str, primary_key: bool) -> String {
    match sql.to_ascii_lowercase().as_str() {
        "text" => "Text",
        "bigint" => "BigInt",
        // An SQLite INTEGER PRIMARY KEY is the 64-bit rowid.
        "integer" if primary_key => "BigInt",
        "integer" => "Integer",
        "boolean" => "Bool",
        "blob" | "bytea" => "Binary",
        other => panic!("a migration uses the SQL type {other:?}, unknown to this test"),
    }
    .to_owned()
}

fn with_null(ty: String, nullable: bool) -> String {
    if nullable {
        format!("Nullable<{ty}>")
    } else {
        ty
    }
}

fn assert_same(backend: &str, mut actual: Vec<(String, Described)>) {
    actual.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = expected();
    let names = |v: &[(String, Described)]| v.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&actual),
        names(&expected),
        "{backend}: the migrations and src/schema.rs declare different tables"
    );
    for ((table, got), (_, want)) in actual.iter().zip(&expected) {
        assert_eq!(
            got, want,
            "{backend}: table {table} differs between the migrations (left) and src/schema.rs \
             (right)"
        );
    }
}

#[tokio::test]
async fn sqlite_migrations_match_the_schema_module() {
    use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
    #[derive(QueryableByName)]
    struct Col {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        r#type: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        notnull: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pk: i32,
    }
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drift.db");
    let store = SqliteStore::open(&path, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '__diesel%'",
    )
    .load(&mut conn)
    .unwrap();
    let actual = tables
        .into_iter()
        .map(|t| {
            let cols: Vec<Col> = diesel::sql_query(format!("PRAGMA table_info({})", t.name))
                .load(&mut conn)
                .unwrap();
            let described = cols
                .into_iter()
                .map(|c| {
                    let ty = diesel_type(&c.r#type, c.pk == 1);
                    (c.name, with_null(ty, c.notnull == 0 && c.pk == 0))
                })
                .collect();
            (t.name, described)
        })
        .collect();
    assert_same("SQLite", actual);
}

#[tokio::test]
async fn postgres_migrations_match_the_schema_module() {
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Col {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        data_type: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        nullable: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        primary_key: bool,
    }
    let Some(schema) = webhook_adapters::testing::PgTestSchema::create().await else {
        return;
    };
    let store = PgStore::connect(&schema.url(), 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = AsyncPgConnection::establish(&schema.url()).await.unwrap();
    let cols: Vec<Col> = diesel::sql_query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, \
                c.is_nullable = 'YES' AS nullable, \
                c.column_name = 'id' AS primary_key \
         FROM information_schema.columns AS c \
         WHERE c.table_schema = current_schema() AND c.table_name NOT LIKE '__diesel%' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut actual: Vec<(String, Described)> = Vec::new();
    for c in cols {
        if actual.last().is_none_or(|t| t.0 != c.table_name) {
            actual.push((c.table_name.clone(), Vec::new()));
        }
        let ty = with_null(diesel_type(&c.data_type, c.primary_key), c.nullable);
        if let Some(table) = actual.last_mut() {
            table.1.push((c.column_name, ty));
        }
    }
    assert_same("PostgreSQL", actual);
}

#[test]
fn type_names_are_shortened() {
    assert_eq!(
        type_of::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(),
        "Nullable<BigInt>"
    );
    assert_eq!(type_of::<diesel::sql_types::Text>(), "Text");
}
