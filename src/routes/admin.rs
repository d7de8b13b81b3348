//! The stored deny list over HTTP, for callers of the `[admin] rules`: add an entry, list
//! them, remove one. Every change is committed to the audit log before it takes effect, and
//! is in force on this replica before it is answered; on the others within
//! `[admin] deny_poll_interval_secs`.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Serialize;

use super::RequestMeta;
use super::audit::instant;
use super::caller::Charged;
use super::json_object::{BodyRejection, JsonObject, refused};
use crate::app::{AppState, Current};
use crate::audit::Outcome;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::issuance;
use crate::kill_switch::{AddRequest, Names, NewEntry, Remover, StoredEntry};
use crate::policy::ClaimPatterns;
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
        let Charged { caller, admission } = Charged::from_request_parts(parts, state)
            .await
            .map_err(ApiError::from)?;
        let admin = admission.is_admitted_by(&current.deny_admins);
        match admission.rule() {
            // A list too old to trust clears no admin: 503, not a refusal.
            Some(rule) if admin && admission.denied_by()?.is_none() => {
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
    body: Result<JsonObject<AddRequest>, BodyRejection>,
) -> Result<Response, ApiError> {
    let admin = admin?;
    let JsonObject(request) = body?;
    let entry = request
        .check(&current.deny.names)
        .map_err(|why| refused(&why))?;
    let new = NewEntry {
        entry: &entry,
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
    state
        .deny_store
        .apply_added(row.clone(), install_here(&state))
        .await;
    if !state.current().deny.stored_in_force(id) {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "stored deny entry {id} was committed but does not compile"
        )));
    }
    let mut response = no_store_json(EntryJson::new(row, &current.deny.names));
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
            .map(|row| EntryJson::new(row, &current.deny.names))
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
    state
        .deny_store
        .apply_removed(id, install_here(&state))
        .await;
    Ok(no_store_json(EntryJson::new(row, &current.deny.names)))
}

/// Commits the audit row of a change, before the change itself commits.
async fn record_change(
    state: &AppState,
    meta: &RequestMeta,
    admin: &DenyAdmin,
    reason: &str,
    status: StatusCode,
) -> Result<(), ApiError> {
    let mut record = meta.audit_record();
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

/// Installs a change made here in this replica's snapshot, as the poll installs a read.
fn install_here(state: &AppState) -> impl Fn(&[StoredEntry], Option<Instant>) -> Option<usize> {
    |rows, read_at| state.install_stored_deny(rows, read_at)
}
