//! The audit record: one decision, filled in as the request moves along its path, and its
//! field table, the one place the row's fields are spelled out. Its field names are the
//! `audit_events` column names; the same type is written to the database (one array per
//! field, [`super::columns`]), read back from it (`FromRow`), exported (`Serialize`), hashed
//! ([`super::chain`]) and shown by the API ([`super::shown`]). It must not say how a field
//! is stored, hashed or shown: each concern does, by the field's type.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Postgres};

use super::Fingerprinter;
use super::shed::{SHED_REASON, ShedSummary};
use super::shown::expiry;
use crate::credentials::AuthorizationData;
use crate::policy::Grant;

/// What a NUL character in audit text is stored as: U+2400 SYMBOL FOR NULL.
pub(super) const NUL_STANDIN: &str = "\u{2400}";

fn push_distinct(items: &mut Vec<String>, item: String) {
    if !items.contains(&item) {
        items.push(item);
    }
}

/// The kind of decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A token was handed out.
    Issued,
    /// The caller was refused: bad token, bad request, or no rule allows it.
    Denied,
    /// Something failed on the way: AWS, the audit log itself.
    Error,
    /// An admin changed the deny list (reason `deny_added:ID` or `deny_removed:ID`).
    Admin,
}

/// A stored or asked-for outcome that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be issued, denied, error or admin")]
pub struct UnknownOutcome;

impl Outcome {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        [Self::Issued, Self::Denied, Self::Error, Self::Admin]
            .into_iter()
            .find(|o| o.as_str() == value)
            .ok_or(UnknownOutcome)
    }
}

impl TryFrom<String> for Outcome {
    type Error = UnknownOutcome;

    fn try_from(value: String) -> Result<Self, UnknownOutcome> {
        value.parse()
    }
}

/// Session tags sent to STS, kept sorted by key: the order they are hashed in, whatever
/// order they were rendered or stored in. Stored as a JSON object, or NULL when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTags(Vec<(String, String)>);

impl SessionTags {
    /// The tags, sorted by key.
    pub(crate) fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for SessionTags {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(tags: I) -> Self {
        let mut tags: Vec<_> = tags.into_iter().collect();
        tags.sort();
        Self(tags)
    }
}

impl Serialize for SessionTags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            return serializer.serialize_none();
        }
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl sqlx::Type<Postgres> for SessionTags {
    fn type_info() -> PgTypeInfo {
        <Json<BTreeMap<String, String>> as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Json<BTreeMap<String, String>> as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for SessionTags {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        // A JSON object's keys are unique and a BTreeMap yields them sorted; a value that is
        // not a string fails here, as an unreadable row.
        let tags = <Option<Json<BTreeMap<String, String>>> as Decode<'r, Postgres>>::decode(value)?;
        Ok(Self(
            tags.map(|Json(tags)| tags.into_iter().collect())
                .unwrap_or_default(),
        ))
    }
}

super::fields::audit_record! {
    /// One audit row, filled in as the request moves along its path.
    ///
    /// This definition is the row's field table, in column and hash order: a field added
    /// here (with its column in a migration, so the names match) is escaped, inserted,
    /// hashed under the chain's MAC, exported and shown by the API without another edit
    /// ([`super::fields`]). A field added from now on takes `=> hashed_if_present(TAG)`
    /// with a tag byte of its own, so that the rows stored before it keep their hashes.
    #[derive(Debug, Clone, Serialize, sqlx::FromRow)]
    pub struct AuditRecord {
        /// When the request arrived.
        pub occurred_at: DateTime<Utc>,
        /// The request's id, generated by the service (its `x-request-id`).
        pub request_id: String,
        /// The decision.
        #[sqlx(try_from = "String")]
        pub outcome: Outcome,
        /// Short machine-readable cause, such as `issued` or `no_matching_rule`.
        pub reason: String,
        /// The HTTP status returned.
        #[sqlx(try_from = "i16")]
        pub http_status: u16,
        /// The issuer's configured name, once the token is verified.
        pub issuer: Option<String>,
        /// The verified `sub`.
        pub subject: Option<String>,
        /// The rule that matched.
        pub rule: Option<String>,
        /// The role assumed.
        pub role_arn: Option<String>,
        /// The STS session name.
        pub session_name: Option<String>,
        /// The regions asked of ECR.
        pub regions: Vec<String>,
        /// The registries asked of ECR.
        pub registry_ids: Vec<String>,
        /// `pull` or `push` when a session policy narrowed the role.
        pub access: Option<String>,
        /// Repository patterns a session policy granted.
        pub repositories: Option<Vec<String>>,
        /// Session tags sent to STS.
        pub session_tags: SessionTags,
        /// The registry endpoints returned.
        pub proxy_endpoints: Vec<String>,
        /// The earliest expiry among the returned tokens; the API shows it in whole
        /// seconds, as the issuing response says it.
        pub expires_at: Option<DateTime<Utc>> => shown(expiry),
        /// Keyed fingerprints of the returned tokens.
        pub token_fingerprints: Vec<String>,
        /// Which fingerprint key was used.
        pub fingerprint_key_id: Option<String>,
        /// Whether the tokens came from a cache rather than from AWS.
        pub from_cache: bool,
        /// The peer's address.
        pub client_addr: Option<IpAddr>,
        /// The `User-Agent` header, truncated.
        pub user_agent: Option<String>,
        /// Time from arrival to decision.
        pub latency_ms: i32,
        /// The AWS failure a cached answer hid (such as `aws_throttled:AssumeRole`): the
        /// latest refresh of the served entry failed.
        pub upstream_error: Option<String> => hashed_if_present(b'u'),
        /// The `x-request-id` the caller sent, if usable: its own correlation id, kept apart
        /// from `request_id` so that no caller can choose the id of a row.
        pub caller_request_id: Option<String> => hashed_if_present(b'c'),
        /// On an aggregate row only: the refusals shed under pressure instead of being
        /// written one by one.
        #[sqlx(json(nullable))]
        pub(crate) shed: Option<ShedSummary> => hashed_if_present(b'S'),
    }
}

impl AuditRecord {
    /// A record for a request that arrived now; the outcome is set by [`AuditRecord::decide`].
    pub fn start(request_id: &str, client_addr: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        Self {
            occurred_at: Utc::now(),
            request_id: request_id.to_owned(),
            outcome: Outcome::Error,
            reason: String::new(),
            http_status: 0,
            issuer: None,
            subject: None,
            rule: None,
            role_arn: None,
            session_name: None,
            regions: Vec::new(),
            registry_ids: Vec::new(),
            access: None,
            repositories: None,
            session_tags: SessionTags::default(),
            proxy_endpoints: Vec::new(),
            expires_at: None,
            token_fingerprints: Vec::new(),
            fingerprint_key_id: None,
            from_cache: false,
            upstream_error: None,
            client_addr,
            user_agent: user_agent.map(|ua| ua.chars().take(256).collect()),
            latency_ms: 0,
            caller_request_id: None,
            shed: None,
        }
    }

    /// The aggregate row of refusals shed under pressure; status 0, as they were answered
    /// with several.
    pub(crate) fn shed(summary: ShedSummary) -> Self {
        let mut record = Self::start(&uuid::Uuid::new_v4().to_string(), None, None);
        record.occurred_at = summary.until;
        record.decide(Outcome::Denied, SHED_REASON, 0);
        record.latency_ms = 0;
        record.shed = Some(summary);
        record
    }

    /// Records what a grant allows.
    pub(crate) fn grant(&mut self, grant: &Grant) {
        for endpoint in &grant.endpoints {
            push_distinct(&mut self.regions, endpoint.region().to_string());
            push_distinct(&mut self.registry_ids, endpoint.registry_id().to_string());
        }
        self.access = Some(grant.access.to_string());
        self.repositories = Some(
            grant
                .repositories
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        );
    }

    /// Records what was issued: endpoints, the earliest expiry, token fingerprints.
    pub(crate) fn issued(&mut self, data: &[AuthorizationData], fingerprinter: &Fingerprinter) {
        self.proxy_endpoints = data.iter().map(|d| d.proxy_endpoint.clone()).collect();
        self.expires_at = data.iter().map(|d| d.expires_at).min();
        self.token_fingerprints = data
            .iter()
            .map(|d| fingerprinter.fingerprint(d.authorization_token.expose()))
            .collect();
        self.fingerprint_key_id = Some(fingerprinter.key_id().to_owned());
    }

    /// Records the decision and how long it took.
    pub fn decide(&mut self, outcome: Outcome, reason: &str, http_status: u16) {
        self.outcome = outcome;
        self.reason = reason.to_owned();
        self.http_status = http_status;
        let elapsed = Utc::now() - self.occurred_at;
        self.latency_ms = i32::try_from(elapsed.num_milliseconds()).unwrap_or(i32::MAX);
    }
}

/// How a field's value keeps NUL characters out of the database: text replaces them with
/// [`NUL_STANDIN`]; values that hold no caller's text (times, numbers, addresses, the
/// service's own shed summary) are kept as they are.
pub(super) trait EscapeNul {
    /// Replaces every NUL character in the value's text.
    fn escape_nul(&mut self) {}
}

impl EscapeNul for String {
    fn escape_nul(&mut self) {
        if self.contains('\0') {
            *self = self.replace('\0', NUL_STANDIN);
        }
    }
}

impl<T: EscapeNul> EscapeNul for Option<T> {
    fn escape_nul(&mut self) {
        if let Some(value) = self {
            value.escape_nul();
        }
    }
}

impl<T: EscapeNul> EscapeNul for Vec<T> {
    fn escape_nul(&mut self) {
        self.iter_mut().for_each(EscapeNul::escape_nul);
    }
}

impl EscapeNul for SessionTags {
    /// Escapes keys and values, then sorts again: a replaced key may sort elsewhere.
    fn escape_nul(&mut self) {
        if self
            .0
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            *self = std::mem::take(&mut self.0)
                .into_iter()
                .map(|(mut k, mut v)| {
                    k.escape_nul();
                    v.escape_nul();
                    (k, v)
                })
                .collect();
        }
    }
}

impl EscapeNul for DateTime<Utc> {}
impl EscapeNul for Outcome {}
impl EscapeNul for u16 {}
impl EscapeNul for i32 {}
impl EscapeNul for bool {}
impl EscapeNul for IpAddr {}
impl EscapeNul for ShedSummary {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_hashed_only_when_present_have_tags_of_their_own() {
        for (n, tag) in HASH_TAGS.iter().enumerate() {
            assert!(!HASH_TAGS[n + 1..].contains(tag), "{}", char::from(*tag));
        }
    }
}
