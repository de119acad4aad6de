//! The diesel schema module must describe exactly what the migrations create, on every
//! backend: the same tables, the same columns in the same order, the same types and
//! nullability. A migration changed without the schema (or the reverse) fails. This module
//! holds what the schema module says and the comparison; each backend's tests read its own
//! migrated schema and call [`assert_same`] (`sqlite.rs`, `postgres.rs`).

use diesel::sql_types::SqlType;
use diesel::{Column, Expression, Table};
use webhook_adapters::schema;

/// One column as (name, diesel type without paths, e.g. `Nullable<BigInt>`).
pub(crate) type Described = Vec<(String, String)>;

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
pub(crate) fn diesel_type(sql: &str, primary_key: bool) -> String {
    match sql.to_ascii_lowercase().as_str() {
        "text" => "Text",
        "bigint" => "BigInt",
        // An SQLite INTEGER PRIMARY KEY is the 64-bit rowid.
        "integer" if primary_key => "BigInt",
        "integer" => "Integer",
        "boolean" => "Bool",
        // PostgreSQL's native ids; SQLite declares them TEXT (see `assert_same`).
        "uuid" => "Id",
        "blob" | "bytea" => "Binary",
        other => panic!("a migration uses the SQL type {other:?}, unknown to this test"),
    }
    .to_owned()
}

pub(crate) fn with_null(ty: String, nullable: bool) -> String {
    if nullable {
        format!("Nullable<{ty}>")
    } else {
        ty
    }
}

/// Compares `actual` (one backend's migrated tables) with the schema module. The schema's `Id`
/// is `uuid` on PostgreSQL and `TEXT` on SQLite, where the migrations cannot tell an id from
/// other text.
pub(crate) fn assert_same(backend: &str, mut actual: Vec<(String, Described)>) {
    actual.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = expected();
    if backend == "SQLite" {
        for (_, columns) in &mut expected {
            for (_, ty) in columns {
                *ty = ty.replace("<Id>", "<Text>");
                if ty == "Id" {
                    *ty = "Text".to_owned();
                }
            }
        }
    }
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

#[test]
fn type_names_are_shortened() {
    assert_eq!(
        type_of::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(),
        "Nullable<BigInt>"
    );
    assert_eq!(type_of::<diesel::sql_types::Text>(), "Text");
}
