//! Reading the audit log: records by filter, newest first, one page at a time; and the
//! records of an issued token, found by its fingerprints.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::chain::ChainedRow;
use super::{KeyedFingerprint, Outcome};
use crate::domain::{RoleArn, SearchText};

/// At most this many records are returned for one token (a cached token could be handed out
/// many times).
pub(crate) const MAX_TOKEN_RECORDS: i64 = 100;

/// Whose records a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every record.
    Everyone,
    /// Only the records of one caller.
    Caller {
        /// The issuer's configured name.
        issuer: String,
        /// The verified `sub`.
        subject: String,
    },
}

/// Which records to read; each filter given narrows, none given means every record.
#[derive(Debug, Clone, Default)]
pub(crate) struct IssuanceFilter {
    /// The verified `sub`.
    pub subject: Option<SearchText>,
    /// The issuer's configured name.
    pub issuer: Option<SearchText>,
    /// The matched rule.
    pub rule: Option<SearchText>,
    /// The assumed role.
    pub role_arn: Option<RoleArn>,
    /// The decision.
    pub outcome: Option<Outcome>,
    /// Requests that arrived at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Requests that arrived before this time.
    pub until: Option<DateTime<Utc>>,
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page {
    /// Only records older in the chain than this id: the last id of the previous page.
    pub before_id: Option<i64>,
    /// Records at most.
    pub limit: i64,
}

/// The records `scope` may see that match `filter`, newest (highest id) first.
///
/// Pages are cut by id, never by offset: a page stays the same however many records are
/// appended meanwhile, and reading one costs the same however deep it is. A caller's own
/// records come from the (issuer, subject, id DESC) index.
pub(super) async fn issuances(
    pool: &PgPool,
    scope: &Scope,
    filter: &IssuanceFilter,
    page: Page,
) -> Result<Vec<ChainedRow>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT * FROM audit_events WHERE true");
    if let Scope::Caller { issuer, subject } = scope {
        query.push(" AND issuer = ").push_bind(issuer.clone());
        query.push(" AND subject = ").push_bind(subject.clone());
    }
    let text_filters = [
        ("subject", &filter.subject),
        ("issuer", &filter.issuer),
        ("rule", &filter.rule),
    ];
    for (column, value) in text_filters {
        if let Some(value) = value {
            // The column name is one of the constants above, never input.
            query
                .push(format_args!(" AND {column} = "))
                .push_bind(value.as_str().to_owned());
        }
    }
    if let Some(role_arn) = &filter.role_arn {
        query
            .push(" AND role_arn = ")
            .push_bind(role_arn.as_str().to_owned());
    }
    if let Some(outcome) = filter.outcome {
        query.push(" AND outcome = ").push_bind(outcome.as_str());
    }
    if let Some(since) = filter.since {
        query.push(" AND occurred_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        query.push(" AND occurred_at < ").push_bind(until);
    }
    if let Some(before) = page.before_id {
        query.push(" AND id < ").push_bind(before);
    }
    query.push(" ORDER BY id DESC LIMIT ").push_bind(page.limit);
    query.build_query_as().fetch_all(pool).await
}

/// The records of issued tokens with any of these fingerprints, newest first.
///
/// Each fingerprint is compared only with rows fingerprinted under its own key. The matches
/// are found first, through the GIN index on `token_fingerprints`, and only then ordered:
/// asked for `ORDER BY id DESC LIMIT` directly, the planner walks the whole table backwards
/// by id, which for a token that was never issued here means every row.
pub(super) async fn issued_with(
    pool: &PgPool,
    fingerprints: &[KeyedFingerprint],
) -> Result<Vec<ChainedRow>, sqlx::Error> {
    if fingerprints.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::<Postgres>::new(
        "WITH matches AS MATERIALIZED (SELECT * FROM audit_events \
         WHERE outcome = 'issued' AND (",
    );
    for (i, keyed) in fingerprints.iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        query
            .push("(fingerprint_key_id = ")
            .push_bind(keyed.key_id.clone())
            .push(" AND token_fingerprints @> ARRAY[")
            .push_bind(keyed.fingerprint.clone())
            .push("::text])");
    }
    query
        .push(")) SELECT * FROM matches ORDER BY id DESC LIMIT ")
        .push_bind(MAX_TOKEN_RECORDS);
    query.build_query_as().fetch_all(pool).await
}
