//! The SQL type of every id column, [`Id`]: PostgreSQL stores ids as its native `uuid` (16
//! bytes, compared as bytes), SQLite as hyphenated text, MySQL as hyphenated ASCII text in a
//! `CHAR(36)` with the binary collation. The rows and statements shared by
//! both backends read ids as Rust `String`s (hyphenated, lower case, as `Uuid` prints them)
//! and bind them as [`SqlId`]s; the conversion happens here, in each backend's wire format, so
//! that nothing above the schema tells the two apart.
//!
//! The orders agree: PostgreSQL orders `uuid`s by their bytes, and lower-case hyphenated
//! text in the C collation (SQLite's) or a binary one (MySQL's `ascii_bin`) orders the same
//! way, so listings that break ties by id page alike.

use std::io::Write as _;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::expression::AsExpression;
use diesel::mysql::{Mysql, MysqlValue};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::Sqlite;

/// An id column's SQL type: `uuid` on PostgreSQL (its fixed type oids), `TEXT` on SQLite,
/// `CHAR(36)` on MySQL (sent as a string).
#[derive(
    Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId,
)]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(mysql_type(name = "String"))]
pub struct Id;

impl ToSql<Id, Pg> for str {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        let id = uuid::Uuid::parse_str(self)?;
        out.write_all(id.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Id, Pg> for String {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let id = uuid::Uuid::from_slice(value.as_bytes())?;
        Ok(id.hyphenated().to_string())
    }
}

impl ToSql<Id, Sqlite> for str {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        <str as ToSql<Text, Sqlite>>::to_sql(self, out)
    }
}

impl FromSql<Id, Sqlite> for String {
    fn from_sql(value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<Text, Sqlite>>::from_sql(value)
    }
}

impl ToSql<Id, Mysql> for str {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        <str as ToSql<Text, Mysql>>::to_sql(self, out)
    }
}

impl FromSql<Id, Mysql> for String {
    fn from_sql(value: MysqlValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<Text, Mysql>>::from_sql(value)
    }
}

/// An id to bind to an [`Id`] column or parameter, as its hyphenated text: diesel's coherence
/// rules let only a type of this crate bind as a type of this crate. Rows read ids back as
/// plain `String`s.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Id)]
pub(crate) struct SqlId(pub(crate) String);

/// `value` (a domain id, or its text) as an id to bind.
pub(crate) fn sql_id(value: impl std::fmt::Display) -> SqlId {
    SqlId(value.to_string())
}

impl FromSql<Id, Pg> for SqlId {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<Id, Pg>>::from_sql(value).map(Self)
    }
}

impl FromSql<Id, Sqlite> for SqlId {
    fn from_sql(value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<Text, Sqlite>>::from_sql(value).map(Self)
    }
}

impl FromSql<Id, Mysql> for SqlId {
    fn from_sql(value: MysqlValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<Text, Mysql>>::from_sql(value).map(Self)
    }
}

/// Each of `values` as an id to bind, for `IN` lists.
pub(crate) fn sql_ids<T: std::fmt::Display>(values: impl IntoIterator<Item = T>) -> Vec<SqlId> {
    values.into_iter().map(sql_id).collect()
}

impl ToSql<Id, Pg> for SqlId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Id, Pg>>::to_sql(self.0.as_str(), out)
    }
}

impl ToSql<Id, Sqlite> for SqlId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        <str as ToSql<Text, Sqlite>>::to_sql(self.0.as_str(), out)
    }
}

impl ToSql<Id, Mysql> for SqlId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        <str as ToSql<Text, Mysql>>::to_sql(self.0.as_str(), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID_OID: std::num::NonZeroU32 = std::num::NonZeroU32::new(2950).unwrap();

    /// What PostgreSQL sends for a `uuid` comes back as the text `Uuid` prints.
    #[test]
    fn a_uuid_reads_back_as_hyphenated_lower_case_text() {
        let id = uuid::Uuid::parse_str("0A0B0C0D-1111-4222-8333-444455556666").unwrap();
        let read =
            <String as FromSql<Id, Pg>>::from_sql(PgValue::new(id.as_bytes(), &UUID_OID)).unwrap();
        assert_eq!(read, "0a0b0c0d-1111-4222-8333-444455556666");
    }

    /// The promise of this module's opening: ids order alike as `uuid` bytes (PostgreSQL) and
    /// as the hyphenated lower-case text SQLite stores, so pages that break ties by id agree.
    #[test]
    fn uuid_bytes_and_their_text_order_alike() {
        let ids: Vec<uuid::Uuid> = (0..2_000)
            .map(|n| match n % 3 {
                // Random ids, and ids that differ only in the last bytes or in the first.
                0 => uuid::Uuid::new_v4(),
                1 => uuid::Uuid::from_u128(n),
                _ => uuid::Uuid::from_u128(u128::from(n as u8) << 120),
            })
            .collect();
        let mut by_bytes = ids.clone();
        by_bytes.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut by_text = ids;
        by_text.sort_by_key(|id| id.hyphenated().to_string());
        assert_eq!(by_bytes, by_text);
    }

    /// A PostgreSQL value that is not 16 bytes is an error, not a panic.
    #[test]
    fn a_short_value_is_an_error() {
        let read = <String as FromSql<Id, Pg>>::from_sql(PgValue::new(&[1, 2, 3], &UUID_OID));
        assert!(read.is_err());
    }
}
