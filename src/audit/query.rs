//! Reading the audit log: records by filter, newest first, one page at a time; and the
//! records of an issued token, found by its fingerprints.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use super::chain::ChainedRow;
use super::{KeyedFingerprint, Outcome};
use crate::domain::RoleArn;

/// Every column the chain covers, in `ChainedRow` order.
const COLUMNS: &str = "id, recorded_at, occurred_at, request_id, outcome, reason, http_status, \
     issuer, subject, rule, role_arn, session_name, regions, registry_ids, access, repositories, \
     session_tags, proxy_endpoints, expires_at, token_fingerprints, fingerprint_key_id, \
     from_cache, client_addr, user_agent, latency_ms";

/// At most this many records are returned for one token (a cached token could be handed out
/// many times).
pub const MAX_TOKEN_RECORDS: i64 = 100;

/// Whose records a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
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
pub struct IssuanceFilter {
    /// The verified `sub`.
    pub subject: Option<String>,
    /// The issuer's configured name.
    pub issuer: Option<String>,
    /// The matched rule.
    pub rule: Option<String>,
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
pub struct Page {
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
    let mut query =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM audit_events WHERE true"));
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
                .push_bind(value.clone());
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
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(chained_row).collect()
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
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "WITH matches AS MATERIALIZED (SELECT {COLUMNS} FROM audit_events \
         WHERE outcome = 'issued' AND ("
    ));
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
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(chained_row).collect()
}

/// A row as stored, in the form its hash covers.
fn chained_row(row: &PgRow) -> Result<ChainedRow, sqlx::Error> {
    let tags: Option<serde_json::Value> = row.try_get("session_tags")?;
    let session_tags = match tags {
        None => None,
        Some(serde_json::Value::Object(map)) => {
            let mut tags = map
                .into_iter()
                .map(|(key, value)| match value {
                    serde_json::Value::String(value) => Ok((key, value)),
                    _ => Err(sqlx::Error::Decode(
                        "a stored session tag value is not a string".into(),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            tags.sort();
            Some(tags)
        }
        Some(_) => {
            return Err(sqlx::Error::Decode(
                "stored session tags are not a JSON object".into(),
            ));
        }
    };
    Ok(ChainedRow {
        id: row.try_get("id")?,
        recorded_at: row.try_get("recorded_at")?,
        occurred_at: row.try_get("occurred_at")?,
        request_id: row.try_get("request_id")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        http_status: row.try_get("http_status")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        rule: row.try_get("rule")?,
        role_arn: row.try_get("role_arn")?,
        session_name: row.try_get("session_name")?,
        regions: row.try_get("regions")?,
        registry_ids: row.try_get("registry_ids")?,
        access: row.try_get("access")?,
        repositories: row.try_get("repositories")?,
        session_tags,
        proxy_endpoints: row.try_get("proxy_endpoints")?,
        expires_at: row.try_get("expires_at")?,
        token_fingerprints: row.try_get("token_fingerprints")?,
        fingerprint_key_id: row.try_get("fingerprint_key_id")?,
        from_cache: row.try_get("from_cache")?,
        client_addr: row.try_get("client_addr")?,
        user_agent: row.try_get("user_agent")?,
        latency_ms: row.try_get("latency_ms")?,
    })
}
