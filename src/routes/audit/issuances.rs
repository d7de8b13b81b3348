//! `GET /v1/audit/issuances`: audit records by filter, newest first, one page at a time behind an
//! opaque cursor; a caller sees its own, an audit admin every caller's. Unknown or repeated
//! parameters are refused so a misspelt filter cannot widen the answer.

use std::collections::HashSet;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AuditReader;
use crate::app::AppState;
use crate::audit::{IssuanceFilter, IssuanceRecord, Outcome, Page};
use crate::domain::{RoleArn, SearchText};
use crate::error::ApiError;
use crate::routes::RequestMeta;
use crate::routes::no_store_json;

/// A query parameter `GET /v1/audit/issuances` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Parameter {
    Subject,
    Issuer,
    Rule,
    Role,
    Outcome,
    Since,
    Until,
    Limit,
    Cursor,
}

impl Parameter {
    const ALL: [Self; 9] = [
        Self::Subject,
        Self::Issuer,
        Self::Rule,
        Self::Role,
        Self::Outcome,
        Self::Since,
        Self::Until,
        Self::Limit,
        Self::Cursor,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Issuer => "issuer",
            Self::Rule => "rule",
            Self::Role => "role",
            Self::Outcome => "outcome",
            Self::Since => "since",
            Self::Until => "until",
            Self::Limit => "limit",
            Self::Cursor => "cursor",
        }
    }

    /// The parameter called `name`, or a 400 naming it and listing the ones there are.
    fn parse(name: &str) -> Result<Self, ApiError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let shown: String = name.chars().take(64).collect();
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                ApiError::BadRequest(format!(
                    "unknown query parameter `{shown}`; the parameters are {}",
                    names.join(", ")
                ))
            })
    }
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// Where the next page starts: the last id of the page before. Opaque to clients, so its
/// form can change; a version byte says which form this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor(i64);

const CURSOR_VERSION: u8 = 1;

impl Cursor {
    fn encode(self) -> String {
        let mut bytes = vec![CURSOR_VERSION];
        bytes.extend_from_slice(&self.0.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn parse(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (&version, id) = bytes.split_first()?;
        let id = i64::from_be_bytes(id.try_into().ok()?);
        (version == CURSOR_VERSION && id > 0).then_some(Self(id))
    }
}

/// The query string, parsed.
#[derive(Debug)]
struct IssuancesQuery {
    filter: IssuanceFilter,
    cursor: Option<Cursor>,
    limit: i64,
}

impl IssuancesQuery {
    /// Parses the decoded `name=value` pairs. Unknown and repeated parameters are refused
    /// rather than ignored, so that a misspelt filter cannot silently widen the answer.
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut query = Self {
            filter: IssuanceFilter::default(),
            cursor: None,
            limit: DEFAULT_LIMIT,
        };
        let mut seen = HashSet::new();
        for (name, value) in pairs {
            let parameter = Parameter::parse(&name)?;
            let invalid = |why: &str| {
                ApiError::BadRequest(format!("invalid query parameter `{name}`: {why}"))
            };
            if !seen.insert(parameter) {
                return Err(invalid("given more than once"));
            }
            if value.is_empty() {
                return Err(invalid("must not be empty"));
            }
            let text =
                |value: String| SearchText::try_from(value).map_err(|e| invalid(&e.to_string()));
            let filter = &mut query.filter;
            match parameter {
                Parameter::Subject => filter.subject = Some(text(value)?),
                Parameter::Issuer => filter.issuer = Some(text(value)?),
                Parameter::Rule => filter.rule = Some(text(value)?),
                Parameter::Role => {
                    filter.role_arn =
                        Some(RoleArn::try_from(value).map_err(|e| invalid(&e.to_string()))?);
                }
                Parameter::Outcome => {
                    filter.outcome = Some(
                        value
                            .parse::<Outcome>()
                            .map_err(|e| invalid(&e.to_string()))?,
                    )
                }
                Parameter::Since => {
                    filter.since = Some(timestamp(&value).map_err(|e| invalid(&e))?)
                }
                Parameter::Until => {
                    filter.until = Some(timestamp(&value).map_err(|e| invalid(&e))?)
                }
                Parameter::Limit => {
                    query.limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            invalid(&format!("must be an integer from 1 to {MAX_LIMIT}"))
                        })?;
                }
                Parameter::Cursor => {
                    query.cursor = Some(Cursor::parse(&value).ok_or_else(|| {
                        invalid(
                            "not a cursor from this endpoint; pass nextCursor as it was returned",
                        )
                    })?);
                }
            }
        }
        // `until` not after `since` is an empty range, which the read answers with an empty
        // page: a refusal would turn a well-formed question into an error.
        Ok(query)
    }
}

fn timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            let hint = if text.contains(' ') {
                " (a `+` in a query string means a space: send it as %2B)"
            } else {
                ""
            };
            format!("must be an RFC 3339 date-time such as 2026-11-23T21:04:05Z{hint}")
        })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuancesPage {
    items: Vec<IssuanceRecord>,
    next_cursor: Option<String>,
    request_id: String,
}

/// Audit records, newest first, a page at a time: the caller's own, or every caller's for
/// an audit admin. Filters narrow within what the caller may see.
pub(super) async fn get_issuances(
    State(state): State<AppState>,
    meta: RequestMeta,
    reader: AuditReader,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let query = IssuancesQuery::parse(pairs)?;
    // One row more than asked says whether another page follows.
    let page = Page {
        before_id: query.cursor.map(|c| c.0),
        limit: query.limit + 1,
    };
    let mut rows = state
        .audit
        .issuances(&reader.scope(), &query.filter, page)
        .await
        .map_err(ApiError::AuditUnreadable)?;
    let more = rows.len() as i64 > query.limit;
    rows.truncate(usize::try_from(query.limit).expect("limit is at most 200"));
    let next_cursor = more
        .then(|| rows.last().map(|r| Cursor(r.id).encode()))
        .flatten();
    let body = IssuancesPage {
        items: rows.into_iter().map(IssuanceRecord::from).collect(),
        next_cursor,
        request_id: meta.request_id,
    };
    Ok(no_store_json(body))
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &[(&str, &str)]) -> Result<IssuancesQuery, String> {
        let pairs = query
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        IssuancesQuery::parse(pairs).map_err(|e| e.to_string())
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor(1_234_567);
        assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
        for bad in ["", "abc", "!!!", &Cursor(0).encode(), &Cursor(-5).encode()] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
        let mut other_version = vec![2];
        other_version.extend_from_slice(&7i64.to_be_bytes());
        assert_eq!(Cursor::parse(&URL_SAFE_NO_PAD.encode(other_version)), None);
    }

    #[test]
    fn every_parameter_parses() {
        let query = parse(&[
            ("subject", "repo:acme/api"),
            ("issuer", "ci"),
            ("rule", "acme"),
            ("role", "arn:aws:iam::111122223333:role/ecr"),
            ("outcome", "denied"),
            ("since", "2026-11-23T21:04:05+01:00"),
            ("until", "2026-11-24T00:00:00Z"),
            ("limit", "200"),
            ("cursor", &Cursor(9).encode()),
        ])
        .unwrap();
        assert_eq!(
            query.filter.subject.as_ref().map(SearchText::as_str),
            Some("repo:acme/api")
        );
        assert_eq!(query.filter.outcome, Some(Outcome::Denied));
        assert_eq!(
            query.filter.since.unwrap().to_rfc3339(),
            "2026-11-23T20:04:05+00:00"
        );
        assert_eq!(query.limit, 200);
        assert_eq!(query.cursor, Some(Cursor(9)));
        assert_eq!(parse(&[]).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases: [(&[(&str, &str)], &str); 11] = [
            (
                &[("limit", "0")],
                "`limit`: must be an integer from 1 to 200",
            ),
            (&[("limit", "201")], "`limit`"),
            (
                &[("outcome", "granted")],
                "`outcome`: must be issued, denied, error or admin",
            ),
            (&[("since", "yesterday")], "`since`: must be an RFC 3339"),
            (&[("until", "2026-11-23T21:04:05 01:00")], "send it as %2B"),
            (
                &[("role", "admin")],
                "`role`: \"admin\" is not an IAM role ARN",
            ),
            (&[("cursor", "nope")], "`cursor`"),
            (&[("subject", "")], "`subject`: must not be empty"),
            (&[("issuer", "\u{db}\0%")], "`issuer`: must not contain NUL"),
            (
                &[("rule", "a"), ("rule", "b")],
                "`rule`: given more than once",
            ),
            (&[("offset", "5")], "unknown query parameter `offset`"),
        ];
        for (query, expected) in cases {
            let error = parse(query).unwrap_err();
            assert!(error.contains(expected), "{query:?}: {error}");
        }
        let empty = parse(&[
            ("since", "2026-11-24T00:00:00Z"),
            ("until", "2026-11-24T00:00:00Z"),
        ])
        .unwrap();
        assert!(empty.filter.since.is_some() && empty.filter.until.is_some());
    }
}
