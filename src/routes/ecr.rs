use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use tracing::Instrument;

use super::RequestMeta;
use super::json_object::{BodyRejection, JsonObject};
use crate::app::{AppState, Current};
use crate::audit::{AuditError, AuditRecord, Outcome};
use crate::auth::{AuthError, Caller};
use crate::credentials::AuthorizationData;
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
    current: Current,
    meta: RequestMeta,
    caller: Result<Caller, AuthError>,
    body: Result<Option<JsonObject<IssueRequest>>, BodyRejection>,
) -> Result<Response, ApiError> {
    // Runs to completion in its own task even when the client goes away or the request
    // times out, so that every decision that reached AWS is recorded.
    let work = issue_and_record(state, current, meta, caller, issue_request(body));
    tokio::spawn(work.instrument(tracing::Span::current()))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
}

async fn issue_and_record(
    state: AppState,
    current: Current,
    meta: RequestMeta,
    caller: Result<Caller, AuthError>,
    request: Result<IssueRequest, ApiError>,
) -> Result<Response, ApiError> {
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
                current
                    .rate_limits
                    .check_unauthenticated(record.client_addr)?;
                return Err(error.into());
            }
        };
        issuance::record_caller(&mut record, &caller);
        let request = request?;
        state
            .issuer(&current)
            .issue(&mut record, &caller, &request)
            .await
    }
    .await;
    match outcome {
        Ok(issued) => {
            record.decide(Outcome::Issued, "issued", StatusCode::OK.as_u16());
            state
                .audit
                .record(record)
                .await
                .map_err(ApiError::AuditUnavailable)?;
            Ok(credential_response(&issued.data, meta.request_id))
        }
        Err(error) => {
            record.decide(error.outcome(), &error.reason(), error.status().as_u16());
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssueResponse<'a> {
    authorization_data: Vec<AuthorizationDataJson<'a>>,
    request_id: String,
}

fn credential_response(data: &[AuthorizationData], request_id: String) -> Response {
    let body = IssueResponse {
        authorization_data: data
            .iter()
            .map(|d| AuthorizationDataJson {
                authorization_token: d.authorization_token.expose(),
                expires_at: d
                    .expires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                proxy_endpoint: &d.proxy_endpoint,
            })
            .collect(),
        request_id,
    };
    no_store_json(body)
}
