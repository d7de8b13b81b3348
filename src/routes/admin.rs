//! The stored deny list over HTTP, for callers of the `[admin] rules`: add an entry, list
//! them, remove one. Every change is committed to the audit log before it takes effect, and
//! is in force on this replica before it is answered; on the others within
//! `[admin] deny_poll_interval_secs`.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RequestMeta;
use super::audit::instant;
use super::json_object::{BodyRejection, JsonObject, refused};
use crate::app::{AppState, Current, Names};
use crate::audit::{AuditRecord, Outcome};
use crate::auth::Caller;
use crate::config::{ClaimPatterns, DenyEntryConfig, deny_entry_problems};
use crate::deny_store::{self, NewEntry, Remover, StoredEntry};
use crate::error::ApiError;
use crate::issuance;
use crate::routes::no_store_json;

pub(super) fn router() -> super::Routes {
    super::Routes::new()
        .post("/v1/admin/deny", post_deny)
        .get("/v1/admin/deny", get_deny)
        .delete("/v1/admin/deny/{id}", delete_deny)
}

/// A verified caller whose first matching rule is one of `[admin] rules`, and who is not
/// denied itself.
struct DenyAdmin {
    caller: Caller,
    rule: String,
}

impl FromRequestParts<AppState> for DenyAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(current) = Current::from_request_parts(parts, state).await;
        let caller = Caller::from_request_parts(parts, state)
            .await
            .map_err(ApiError::from)?;
        let rule = current.rules.first_match(&caller.issuer, &caller.claims);
        let admin = current
            .deny_admins
            .admits(&current.rules, &caller.issuer, &caller.claims);
        match rule {
            // A list too old to trust clears no admin: 503, not a refusal.
            Some(rule) if admin && !current.is_denied(&caller)? => {
                current.verifier.take_jti(&caller)?;
                Ok(Self {
                    rule: rule.name.clone(),
                    caller,
                })
            }
            _ => Err(ApiError::NotDenyAdmin),
        }
    }
}

/// `POST /v1/admin/deny`: what to deny, why, and until when.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DenyRequest {
    issuer: String,
    subject: Option<ClaimPatterns>,
    #[serde(default)]
    claims: BTreeMap<String, ClaimPatterns>,
    rule: Option<String>,
    reason: String,
    expires_at: Option<DateTime<Utc>>,
}

impl DenyRequest {
    /// The entry, checked as a `[[deny]]` entry of the config is, and more: it names its
    /// issuer, a subject or claims, a reason, and an expiry yet to come.
    fn entry(
        self,
        current: &Current,
    ) -> Result<(DenyEntryConfig, Option<DateTime<Utc>>), ApiError> {
        if self.subject.is_none() && self.claims.is_empty() {
            return Err(refused(
                "name a subject or claims to deny (with the issuer)",
            ));
        }
        if self.reason.trim().is_empty() {
            return Err(refused("reason must not be empty"));
        }
        if self.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(refused("expiresAt must be in the future"));
        }
        let entry = DenyEntryConfig {
            issuer: Some(self.issuer),
            subject: self.subject,
            rule: self.rule,
            claims: self.claims,
            reason: Some(self.reason),
        };
        let issuers: Vec<&str> = current.names.issuers.keys().map(String::as_str).collect();
        let rules: Vec<&str> = current.names.rules.iter().map(String::as_str).collect();
        deny_entry_problems(&entry, "", &issuers, &rules)
            .map_err(|problems| refused(&problems.one_line()))?;
        Ok((entry, self.expires_at))
    }
}

/// A stored entry as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryJson {
    id: i64,
    issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<ClaimPatterns>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    claims: BTreeMap<String, ClaimPatterns>,
    reason: String,
    expires_at: Option<String>,
    added_at: String,
    added_by: Admin,
    request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    removed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    removed_by: Option<Admin>,
    /// What the answering replica's config cannot resolve: the entry denies by its other
    /// fields there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unresolved: Vec<&'static str>,
}

#[derive(Serialize)]
struct Admin {
    issuer: String,
    subject: String,
}

impl EntryJson {
    /// The row as resolved against the config whose names are `names`.
    fn new(row: StoredEntry, names: &Names) -> Self {
        let (_, unresolved) = row.matcher(names);
        let removed_by = match (row.removed_by_issuer, row.removed_by_subject) {
            (Some(issuer), Some(subject)) => Some(Admin { issuer, subject }),
            _ => None,
        };
        Self {
            id: row.id,
            issuer: row.issuer,
            iss: row.iss,
            subject: row.subject.map(|s| s.0),
            rule: row.rule,
            claims: row.claims.0,
            reason: row.reason,
            expires_at: row.expires_at.map(instant),
            added_at: instant(row.added_at),
            added_by: Admin {
                issuer: row.added_by_issuer,
                subject: row.added_by_subject,
            },
            request_id: row.request_id,
            removed_at: row.removed_at.map(instant),
            removed_by,
            unresolved,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntriesJson {
    entries: Vec<EntryJson>,
    request_id: String,
}

/// Adds an entry to the stored deny list: recorded in the audit log, then in force here at
/// once and on every replica within the poll interval. Nothing is stored when the body is
/// refused.
async fn post_deny(
    State(state): State<AppState>,
    current: Current,
    meta: RequestMeta,
    admin: Result<DenyAdmin, ApiError>,
    body: Result<JsonObject<DenyRequest>, BodyRejection>,
) -> Result<Response, ApiError> {
    let admin = admin?;
    let JsonObject(request) = body?;
    let (matcher, expires_at) = request.entry(&current)?;
    let iss = matcher
        .issuer
        .as_ref()
        .and_then(|name| current.names.issuers.get(name))
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a checked entry names no issuer")))?;
    let new = NewEntry {
        matcher: &matcher,
        iss,
        expires_at,
        by_issuer: &admin.caller.issuer,
        by_subject: &admin.caller.subject,
        request_id: &meta.request_id,
    };
    let (tx, row) = state
        .deny_store
        .add(&new)
        .await
        .map_err(ApiError::DenyStoreUnavailable)?;
    record_change(
        &state,
        &meta,
        &admin,
        &format!("deny_added:{}", row.id),
        StatusCode::CREATED,
    )
    .await?;
    tx.commit().await.map_err(ApiError::DenyStoreUnavailable)?;
    let id = row.id;
    if !deny_store::apply_added(&state, row.clone()).await {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "stored deny entry {id} was committed but does not compile"
        )));
    }
    let mut response = no_store_json(EntryJson::new(row, &current.names));
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// Lists the stored entries not removed, expired ones included, oldest first.
async fn get_deny(
    State(state): State<AppState>,
    current: Current,
    meta: RequestMeta,
    admin: Result<DenyAdmin, ApiError>,
) -> Result<Response, ApiError> {
    admin?;
    let rows = state
        .deny_store
        .not_removed()
        .await
        .map_err(ApiError::DenyStoreUnavailable)?;
    Ok(no_store_json(EntriesJson {
        entries: rows
            .into_iter()
            .map(|row| EntryJson::new(row, &current.names))
            .collect(),
        request_id: meta.request_id,
    }))
}

/// Removes a stored entry: recorded in the audit log, then lifted here at once and on
/// every replica within the poll interval. The row stays, marked with who removed it.
async fn delete_deny(
    State(state): State<AppState>,
    current: Current,
    meta: RequestMeta,
    admin: Result<DenyAdmin, ApiError>,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let admin = admin?;
    let Path(id) = id.map_err(|_| {
        ApiError::BadRequest("invalid deny entry id: must be a whole number".to_owned())
    })?;
    let by = Remover {
        issuer: &admin.caller.issuer,
        subject: &admin.caller.subject,
    };
    let (tx, row) = state
        .deny_store
        .remove(id, &by)
        .await
        .map_err(ApiError::DenyStoreUnavailable)?
        .ok_or(ApiError::NoSuchDenyEntry)?;
    record_change(
        &state,
        &meta,
        &admin,
        &format!("deny_removed:{id}"),
        StatusCode::OK,
    )
    .await?;
    tx.commit().await.map_err(ApiError::DenyStoreUnavailable)?;
    deny_store::apply_removed(&state, id).await;
    Ok(no_store_json(EntryJson::new(row, &current.names)))
}

/// Commits the audit row of a change, before the change itself commits.
async fn record_change(
    state: &AppState,
    meta: &RequestMeta,
    admin: &DenyAdmin,
    reason: &str,
    status: StatusCode,
) -> Result<(), ApiError> {
    let mut record = AuditRecord::start(
        &meta.request_id,
        meta.client_addr,
        meta.user_agent.as_deref(),
    );
    record.caller_request_id = meta.caller_request_id.clone();
    issuance::record_caller(&mut record, &admin.caller);
    record.rule = Some(admin.rule.clone());
    record.decide(Outcome::Admin, reason, status.as_u16());
    state
        .audit
        .record(record)
        .await
        .map(drop)
        .map_err(ApiError::AuditUnavailable)
}
