//! A batch of chained rows as Postgres reads it fastest: one array parameter per column,
//! turned back into rows by `UNNEST`. Postgres receives each array in its binary form, so
//! inserting a batch parses no JSON and converts no timestamp or number from text.
//!
//! The record's columns come from its field table ([`RecordColumns`], made with
//! [`super::AuditRecord`] itself): each is named by its field and sent as its type's [`Column`]
//! says, so a field added to the record needs no edit here unless its type is new (and a
//! column in a migration, where the names are checked when the statement is first run).
//! This file must not list the record's fields.

use std::net::IpAddr;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::types::Json;

use super::Outcome;
use super::chain::Hash;
use super::record::{RecordColumns, SessionTags};
use super::shed::ShedSummary;
use super::store::StoredRow;

/// How a record field's value is sent: the element type of its array parameter, and the
/// cast its `UNNEST`ed value needs (empty for none). A column sent as text in Postgres's
/// array-literal form (a `text[]` per row, which no array parameter can hold) names the
/// type it is cast to.
pub(super) trait Column {
    /// One row's value, as bound.
    type Value<'a>
    where
        Self: 'a;
    /// The cast of the `UNNEST`ed value.
    const CAST: &'static str = "";
    /// The value, borrowing from the record.
    fn value(&self) -> Self::Value<'_>;
}

/// Values sent as they are.
macro_rules! copied {
    ($($ty:ty),*) => {$(
        impl Column for $ty {
            type Value<'a> = $ty;
            fn value(&self) -> $ty {
                *self
            }
        }
    )*};
}

copied!(
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    bool,
    i32,
    Option<IpAddr>
);

impl Column for String {
    type Value<'a> = &'a str;
    fn value(&self) -> &str {
        self
    }
}

impl Column for Option<String> {
    type Value<'a> = Option<&'a str>;
    fn value(&self) -> Option<&str> {
        self.as_deref()
    }
}

impl Column for Outcome {
    type Value<'a> = &'static str;
    fn value(&self) -> &'static str {
        self.as_str()
    }
}

/// Sent wider than the column, so that Postgres's own range check refuses a status that
/// does not fit instead of the row being stored as something other than hashed.
impl Column for u16 {
    type Value<'a> = i32;
    fn value(&self) -> i32 {
        (*self).into()
    }
}

impl Column for Vec<String> {
    type Value<'a> = String;
    const CAST: &'static str = "::text[]";
    fn value(&self) -> String {
        array_literal(self)
    }
}

impl Column for Option<Vec<String>> {
    type Value<'a> = Option<String>;
    const CAST: &'static str = "::text[]";
    fn value(&self) -> Option<String> {
        self.as_deref().map(array_literal)
    }
}

/// NULL when there are none.
impl Column for SessionTags {
    type Value<'a> = Option<Json<&'a SessionTags>>;
    fn value(&self) -> Option<Json<&SessionTags>> {
        (!self.is_empty()).then_some(Json(self))
    }
}

impl Column for Option<ShedSummary> {
    type Value<'a> = Option<Json<&'a ShedSummary>>;
    fn value(&self) -> Option<Json<&ShedSummary>> {
        self.as_ref().map(Json)
    }
}

/// A batch as one array per column, borrowing from its rows: the chain's columns, read from
/// the [`StoredRow`], then the record's ([`RecordColumns`]).
#[derive(Default)]
struct Columns<'a> {
    id: Vec<i64>,
    recorded_at: Vec<DateTime<Utc>>,
    prev_hash: Vec<Hash>,
    row_hash: Vec<Hash>,
    record: RecordColumns<'a>,
}

/// The chain's columns, in the order [`Columns::bind_all`] binds them.
const CHAIN_COLUMNS: [&str; 4] = ["id", "recorded_at", "prev_hash", "row_hash"];

/// Each column's name, and the cast its `UNNEST`ed value needs (empty for none), in the
/// order they are bound.
fn columns() -> impl Iterator<Item = (&'static str, &'static str)> {
    let chain = CHAIN_COLUMNS.into_iter().map(|name| (name, ""));
    chain.chain(RecordColumns::NAMES.iter().copied())
}

impl<'a> Columns<'a> {
    fn push(&mut self, row: &'a StoredRow) {
        self.id.push(row.row.id);
        self.recorded_at.push(row.row.recorded_at);
        self.prev_hash.push(row.prev_hash);
        self.row_hash.push(row.row_hash);
        self.record.push(&row.row.record);
    }

    /// Binds one array per column, in the order of [`columns`], after the lock id.
    fn bind_all(self, query: Query<'a, Postgres, PgArguments>) -> Query<'a, Postgres, PgArguments> {
        let query = query
            .bind(self.id)
            .bind(self.recorded_at)
            .bind(self.prev_hash)
            .bind(self.row_hash);
        self.record.bind_all(query)
    }
}

/// Inserts a batch under the writers' lock (`$1`), as one statement: every row is produced
/// by joining the one-row lock subquery, so the lock is taken before any row is inserted.
/// One statement text whatever the batch size, so Postgres plans it once: a multi-row
/// VALUES list would be a new statement, parsed and planned, per size.
pub(super) static LOCK_AND_INSERT: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = columns().map(|(name, _)| name).collect();
    let values: Vec<String> = columns()
        .map(|(name, cast)| format!("batch.{name}{cast}"))
        .collect();
    let params: Vec<String> = (2..names.len() + 2).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO audit_events ({names}) SELECT {values} \
         FROM (SELECT pg_advisory_xact_lock($1)) AS chain_lock, \
         UNNEST({params}) AS batch ({names})",
        names = names.join(", "),
        values = values.join(", "),
        params = params.join(", "),
    )
});

/// The statement inserting `rows` after taking the lock `lock`.
pub(super) fn insert(lock: i64, rows: &[StoredRow]) -> Query<'_, Postgres, PgArguments> {
    let mut columns = Columns::default();
    rows.iter().for_each(|row| columns.push(row));
    columns.bind_all(sqlx::query(&LOCK_AND_INSERT).bind(lock))
}

/// `values` in the text form of a Postgres array: every element quoted, with `"` and `\`
/// escaped, so that no element (a signed claim may hold anything) can end itself early or
/// become NULL. NUL characters were replaced before ([`AuditRecord::escape_nul`]).
fn array_literal(values: &[String]) -> String {
    let mut literal = String::with_capacity(2 + values.iter().map(|v| v.len() + 3).sum::<usize>());
    literal.push('{');
    for (n, value) in values.iter().enumerate() {
        if n > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in value.chars() {
            if matches!(c, '"' | '\\') {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_quote_and_escape_every_element() {
        let values = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(array_literal(&values(&["us-east-1"])), r#"{"us-east-1"}"#);
        assert_eq!(
            array_literal(&values(&["NULL", "", "a,b}", r#"x"y\z"#, " {sp} "])),
            r#"{"NULL","","a,b}","x\"y\\z"," {sp} "}"#
        );
    }

    #[test]
    fn the_statement_names_every_column_once_and_binds_one_array_each() {
        let sql = &*LOCK_AND_INSERT;
        let columns: Vec<_> = columns().collect();
        assert_eq!(columns.len(), 30);
        for (name, _) in &columns {
            assert_eq!(columns.iter().filter(|(n, _)| n == name).count(), 1);
        }
        assert!(sql.contains(&format!("${}", columns.len() + 1)));
        assert!(!sql.contains(&format!("${}", columns.len() + 2)));
        assert!(sql.contains("batch.regions::text[]"));
    }
}
