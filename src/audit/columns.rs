//! A batch of chained rows as Postgres reads it fastest: one array parameter per column,
//! turned back into rows by `UNNEST`. Postgres receives each array in its binary form, so
//! inserting a batch parses no JSON and converts no timestamp or number from text.
//!
//! The column list is derived here from [`AuditRecord`] itself: each record column is named
//! by its field, and the record is destructured without `..`, so a field added to the record
//! does not compile until it is given its column here (and in a migration, where the names
//! are checked when the statement is first run).

use std::net::IpAddr;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::types::Json;

use super::AuditRecord;
use super::chain::Hash;
use super::record::SessionTags;
use super::shed::ShedSummary;
use super::store::StoredRow;

/// Defines [`Columns`]: one `Vec` per column, the statement that inserts them, and how a
/// row's values are pushed. `chain` columns are read from the [`StoredRow`] as `row`;
/// `record` columns each name a field of [`AuditRecord`], bound by reference under its own
/// name. A column whose value is sent as text in Postgres's array-literal form (a `text[]`
/// per row, which no array parameter can hold) names the type it is cast to.
macro_rules! audit_columns {
    (@cast) => { "" };
    (@cast $cast:literal) => { $cast };
    (
        chain |$row:ident| { $($chain:ident: $chain_ty:ty = $chain_value:expr,)* }
        record { $($field:ident: $field_ty:ty = $field_value:expr $(=> $cast:literal)?,)* }
    ) => {
        /// A batch as one array per column, borrowing from its rows.
        #[derive(Default)]
        pub(super) struct Columns<'a> {
            $($chain: Vec<$chain_ty>,)*
            $($field: Vec<$field_ty>,)*
        }

        /// Each column's name, and the cast its `UNNEST`ed value needs (empty for none).
        const COLUMNS: &[(&str, &str)] = &[
            $((stringify!($chain), ""),)*
            $((stringify!($field), audit_columns!(@cast $($cast)?)),)*
        ];

        impl<'a> Columns<'a> {
            fn push(&mut self, $row: &'a StoredRow) {
                $(self.$chain.push($chain_value);)*
                let AuditRecord { $($field,)* } = &$row.row.record;
                $(self.$field.push($field_value);)*
            }

            /// Binds one array per column, in the order of [`COLUMNS`], after the lock id.
            fn bind_all(
                self,
                query: Query<'a, Postgres, PgArguments>,
            ) -> Query<'a, Postgres, PgArguments> {
                query $(.bind(self.$chain))* $(.bind(self.$field))*
            }
        }
    };
}

audit_columns! {
    chain |row| {
        id: i64 = row.row.id,
        recorded_at: DateTime<Utc> = row.row.recorded_at,
        prev_hash: Hash = row.prev_hash,
        row_hash: Hash = row.row_hash,
    }
    record {
        occurred_at: DateTime<Utc> = *occurred_at,
        request_id: &'a str = request_id,
        outcome: &'static str = outcome.as_str(),
        reason: &'a str = reason,
        // Sent wider than the column, so that Postgres's own range check refuses a status
        // that does not fit instead of the row being stored as something other than hashed.
        http_status: i32 = (*http_status).into(),
        issuer: Option<&'a str> = issuer.as_deref(),
        subject: Option<&'a str> = subject.as_deref(),
        rule: Option<&'a str> = rule.as_deref(),
        role_arn: Option<&'a str> = role_arn.as_deref(),
        session_name: Option<&'a str> = session_name.as_deref(),
        regions: String = array_literal(regions) => "::text[]",
        registry_ids: String = array_literal(registry_ids) => "::text[]",
        access: Option<&'a str> = access.as_deref(),
        repositories: Option<String> = repositories.as_deref().map(array_literal) => "::text[]",
        session_tags: Option<Json<&'a SessionTags>> =
            (!session_tags.is_empty()).then_some(Json(session_tags)),
        proxy_endpoints: String = array_literal(proxy_endpoints) => "::text[]",
        expires_at: Option<DateTime<Utc>> = *expires_at,
        token_fingerprints: String = array_literal(token_fingerprints) => "::text[]",
        fingerprint_key_id: Option<&'a str> = fingerprint_key_id.as_deref(),
        from_cache: bool = *from_cache,
        client_addr: Option<IpAddr> = *client_addr,
        user_agent: Option<&'a str> = user_agent.as_deref(),
        latency_ms: i32 = *latency_ms,
        upstream_error: Option<&'a str> = upstream_error.as_deref(),
        caller_request_id: Option<&'a str> = caller_request_id.as_deref(),
        shed: Option<Json<&'a ShedSummary>> = shed.as_ref().map(Json),
    }
}

/// Inserts a batch under the writers' lock (`$1`), as one statement: every row is produced
/// by joining the one-row lock subquery, so the lock is taken before any row is inserted.
/// One statement text whatever the batch size, so Postgres plans it once: a multi-row
/// VALUES list would be a new statement, parsed and planned, per size.
pub(super) static LOCK_AND_INSERT: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    let values: Vec<String> = COLUMNS
        .iter()
        .map(|(name, cast)| format!("batch.{name}{cast}"))
        .collect();
    let params: Vec<String> = (2..COLUMNS.len() + 2).map(|n| format!("${n}")).collect();
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
        assert_eq!(COLUMNS.len(), 30);
        for (name, _) in COLUMNS {
            assert_eq!(COLUMNS.iter().filter(|(n, _)| n == name).count(), 1);
        }
        assert!(sql.contains(&format!("${}", COLUMNS.len() + 1)));
        assert!(!sql.contains(&format!("${}", COLUMNS.len() + 2)));
        assert!(sql.contains("batch.regions::text[]"));
    }
}
