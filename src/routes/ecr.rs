use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use tracing::Instrument;

use super::RequestMeta;
use super::json_object::{BodyRejection, JsonObject};
use crate::app::AppState;
use crate::audit::{AuditError, AuditRecord, ChainEntry, Outcome};
use crate::auth::{AuthError, Caller};
use crate::credentials::{AuthorizationData, Issued};
use crate::error::ApiError;
use crate::issuance;
use crate::policy::IssueRequest;
use crate::routes::no_store_json;

pub(super) fn router() -> super::Routes {
    super::Routes::new().post("/v1/ecr/authorization-token", post_authorization_token)
}

/// Issues ECR authorization data for the caller. The audit row is committed before the
/// response is built; if it cannot be, the caller gets 503 and no token.
async fn post_authorization_token(
    State(state): State<AppState>,
    meta: RequestMeta,
    caller: Result<Caller, AuthError>,
    body: Result<Option<JsonObject<IssueRequest>>, BodyRejection>,
) -> Result<Response, ApiError> {
    let request_id = meta.request_id.clone();
    let committed = issue_and_record(state, meta, caller, issue_request(body)).await?;
    Ok(committed.respond(IssueResponse {
        authorization_data: committed
            .issued
            .data
            .iter()
            .map(AuthorizationDataJson::from)
            .collect(),
        request_id,
    }))
}

/// An issuance whose audit row is committed: every credential response is built from one,
/// and carries the row's place in the chain as its receipt.
pub(super) struct Committed {
    /// What was issued.
    pub issued: Arc<Issued>,
    /// The audit row's id and hash in the committed chain.
    pub receipt: ChainEntry,
}

/// The response header carrying the receipt, as `ID:HASH`.
pub(crate) const AUDIT_ENTRY_HEADER: &str = "audit-entry";

/// A response body with the receipt beside its own fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WithReceipt<'a, T> {
    #[serde(flatten)]
    body: T,
    audit_entry: &'a ChainEntry,
}

impl Committed {
    /// `body` as a no-store JSON response, with the receipt as `auditEntry` in it and in the
    /// `Audit-Entry` header.
    pub(super) fn respond(&self, body: impl Serialize) -> Response {
        let mut response = no_store_json(WithReceipt {
            body,
            audit_entry: &self.receipt,
        });
        let receipt = HeaderValue::from_str(&self.receipt.to_string())
            .expect("digits, a colon and hex are a valid header value");
        response.headers_mut().insert(AUDIT_ENTRY_HEADER, receipt);
        response
    }
}

/// Runs the issuing path and commits its audit record, whatever the outcome, before anything
/// is returned: the credential with its receipt, or the refusal.
///
/// Runs to completion in its own task even when the client goes away or the request times
/// out, so that every decision that reached AWS is recorded.
pub(super) async fn issue_and_record(
    state: AppState,
    meta: RequestMeta,
    caller: Result<Caller, AuthError>,
    request: Result<IssueRequest, ApiError>,
) -> Result<Committed, ApiError> {
    let work = record_issuance(state, meta, caller, request);
    tokio::spawn(work.instrument(tracing::Span::current()))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
}

async fn record_issuance(
    state: AppState,
    meta: RequestMeta,
    caller: Result<Caller, AuthError>,
    request: Result<IssueRequest, ApiError>,
) -> Result<Committed, ApiError> {
    let mut record = AuditRecord::start(
        &meta.request_id,
        meta.client_addr,
        meta.user_agent.as_deref(),
    );
    record.caller_request_id = meta.caller_request_id.clone();
    let outcome = async {
        let caller = match caller {
            Ok(caller) => caller,
            // Without a verified caller there is nobody to charge but the client address.
            Err(error) => {
                state
                    .rate_limits
                    .check_unauthenticated(record.client_addr)?;
                return Err(error.into());
            }
        };
        issuance::record_caller(&mut record, &caller);
        let request = request?;
        state.issuer().issue(&mut record, &caller, &request).await
    }
    .await;
    match outcome {
        Ok(issued) => {
            record.decide(Outcome::Issued, "issued", StatusCode::OK.as_u16());
            let rule = record.rule.clone();
            // Counted once the outcome is final: without its commit, nothing was issued.
            match state.audit.record(record).await {
                Ok(receipt) => {
                    state
                        .metrics
                        .issuance(Outcome::Issued, "issued", rule.as_deref());
                    Ok(Committed { issued, receipt })
                }
                Err(error) => {
                    let error = ApiError::AuditUnavailable(error);
                    state
                        .metrics
                        .issuance(error.outcome(), &error.reason(), rule.as_deref());
                    Err(error)
                }
            }
        }
        Err(error) => {
            record.decide(error.outcome(), &error.reason(), error.status().as_u16());
            state
                .metrics
                .issuance(record.outcome, &record.reason, record.rule.as_deref());
            let reason = record.reason.clone();
            match state.audit.record(record).await {
                // Counted in the next aggregate row; a flood must not flood the logs either.
                Ok(_) | Err(AuditError::Shed) => {}
                Err(db) => {
                    tracing::warn!(error = %db, %reason, "could not record a refused request")
                }
            }
            Err(error)
        }
    }
}

/// An empty body means "everything the rule gives by default". A refused body is passed on
/// rather than rejected here, so that the refusal is audited like any other.
fn issue_request(
    body: Result<Option<JsonObject<IssueRequest>>, BodyRejection>,
) -> Result<IssueRequest, ApiError> {
    Ok(body?.map(|JsonObject(request)| request).unwrap_or_default())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationDataJson<'a> {
    authorization_token: &'a str,
    expires_at: String,
    proxy_endpoint: &'a str,
}

impl<'a> From<&'a AuthorizationData> for AuthorizationDataJson<'a> {
    fn from(d: &'a AuthorizationData) -> Self {
        Self {
            authorization_token: d.authorization_token.expose(),
            expires_at: d
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            proxy_endpoint: &d.proxy_endpoint,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssueResponse<'a> {
    authorization_data: Vec<AuthorizationDataJson<'a>>,
    request_id: String,
}
