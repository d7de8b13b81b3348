//! The issuing endpoints: one issuing and audit path, several formats of its answer.

mod format;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use tracing::Instrument;

use super::RequestMeta;
use super::caller::CallerRefusal;
use super::json_object::{BodyRejection, JsonObject};
use crate::app::{AppState, Current};
use crate::audit::{AuditError, AuditRecord, ChainEntry, Outcome};
use crate::auth::Caller;
use crate::credentials::Issued;
use crate::domain::{Namespace, SecretName};
use crate::error::ApiError;
use crate::issuance;
use crate::policy::IssueRequest;
use crate::routes::no_store_json;
use format::CredentialFormat;

pub(super) fn router() -> super::Routes {
    super::Routes::new()
        .post("/v1/ecr/authorization-token", post_authorization_token)
        .get("/v1/ecr/login-password", get_login_password)
        .get("/v1/ecr/docker-config", get_docker_config)
}

/// What a request asks to be issued, and in which shape.
struct Wanted {
    request: IssueRequest,
    format: CredentialFormat,
}

/// Issues ECR authorization data for the caller. The audit row is committed before the
/// response is built; if it cannot be, the caller gets 503 and no token.
async fn post_authorization_token(
    State(state): State<AppState>,
    current: Current,
    meta: RequestMeta,
    caller: Result<Caller, CallerRefusal>,
    body: Result<Option<JsonObject<IssueRequest>>, BodyRejection>,
) -> Result<Response, ApiError> {
    let wanted = issue_request(body).map(|request| Wanted {
        request,
        format: CredentialFormat::AuthorizationData,
    });
    issue(state, current, meta, caller, wanted).await
}

/// The password alone, for `docker login --username AWS --password-stdin HOST`; the query
/// narrows the request as the issuing body does, and must leave exactly one endpoint.
async fn get_login_password(
    State(state): State<AppState>,
    current: Current,
    meta: RequestMeta,
    caller: Result<Caller, CallerRefusal>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let wanted = query_pairs(query)
        .and_then(query_request)
        .and_then(|request| match request.endpoint_count() {
            1 => Ok(Wanted {
                request,
                format: CredentialFormat::LoginPassword,
            }),
            n => Err(ApiError::BadRequest(format!(
                "{QUERY_REFUSAL}a password is for one registry endpoint, and this request asks for {n}: narrow it to one region and one registry, or one of registries"
            ))),
        });
    issue(state, current, meta, caller, wanted).await
}

/// A Docker config.json, or with `format=kubernetes-secret` a Secret manifest holding one;
/// the other parameters narrow the request as the issuing body does.
async fn get_docker_config(
    State(state): State<AppState>,
    current: Current,
    meta: RequestMeta,
    caller: Result<Caller, CallerRefusal>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let wanted = query_pairs(query).and_then(|mut pairs| {
        let format = docker_config_format(&mut pairs)?;
        Ok(Wanted {
            request: query_request(pairs)?,
            format,
        })
    });
    issue(state, current, meta, caller, wanted).await
}

/// How every refusal of a query starts, as [`super::json_object`]'s do for bodies.
const QUERY_REFUSAL: &str = "invalid query: ";

fn query_pairs(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|e| ApiError::BadRequest(format!("{QUERY_REFUSAL}{}", e.body_text())))
}

fn query_request(pairs: Vec<(String, String)>) -> Result<IssueRequest, ApiError> {
    IssueRequest::from_query(pairs).map_err(|e| ApiError::BadRequest(format!("{QUERY_REFUSAL}{e}")))
}

/// Takes `format`, `name` and `namespace` out of the docker-config query, leaving the
/// parameters of the issue request.
fn docker_config_format(pairs: &mut Vec<(String, String)>) -> Result<CredentialFormat, ApiError> {
    let mut take = |wanted: &str| -> Result<Option<String>, ApiError> {
        let mut found = None;
        let mut repeated = false;
        pairs.retain(|(name, value)| {
            if name != wanted {
                return true;
            }
            repeated |= found.replace(value.clone()).is_some();
            false
        });
        if repeated {
            return Err(ApiError::BadRequest(format!(
                "{QUERY_REFUSAL}parameter `{wanted}` is given more than once"
            )));
        }
        Ok(found)
    };
    let format = take("format")?;
    let name = take("name")?;
    let namespace = take("namespace")?;
    let invalid =
        |e: crate::domain::InvalidValue| ApiError::BadRequest(format!("{QUERY_REFUSAL}{e}"));
    match format.as_deref() {
        None | Some("docker-config") => match (name, namespace) {
            (None, None) => Ok(CredentialFormat::DockerConfig),
            _ => Err(ApiError::BadRequest(format!(
                "{QUERY_REFUSAL}name and namespace are for format=kubernetes-secret"
            ))),
        },
        Some("kubernetes-secret") => {
            let name = name.ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{QUERY_REFUSAL}format=kubernetes-secret needs the Secret's name"
                ))
            })?;
            Ok(CredentialFormat::KubernetesSecret {
                name: SecretName::try_from(name).map_err(invalid)?,
                namespace: namespace
                    .map(Namespace::try_from)
                    .transpose()
                    .map_err(invalid)?,
            })
        }
        Some(other) => Err(ApiError::BadRequest(format!(
            "{QUERY_REFUSAL}format {other:?} is not one of docker-config, kubernetes-secret"
        ))),
    }
}

/// Runs the one issuing path, commits its audit record, and only then writes the committed
/// credential in the format asked for.
async fn issue(
    state: AppState,
    current: Current,
    meta: RequestMeta,
    caller: Result<Caller, CallerRefusal>,
    wanted: Result<Wanted, ApiError>,
) -> Result<Response, ApiError> {
    let request_id = meta.request_id.clone();
    let (request, format) = match wanted {
        Ok(Wanted { request, format }) => (Ok(request), format),
        // The refusal is recorded like any other, and nothing is written in any format.
        Err(error) => (Err(error), CredentialFormat::AuthorizationData),
    };
    let committed = issue_and_record(state, current, meta, caller, request).await?;
    Ok(format.render(&committed, request_id))
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
        self.with_receipt_header(no_store_json(WithReceipt {
            body,
            audit_entry: &self.receipt,
        }))
    }

    /// `response` with the receipt in the `Audit-Entry` header only: for the formats whose
    /// body is read by docker or Kubernetes, which must hold nothing else.
    pub(super) fn with_receipt_header(&self, mut response: Response) -> Response {
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
/// out, so that every decision that reached AWS is recorded. `current` is the request's
/// snapshot, on which it runs to its end whatever a reload does meanwhile.
pub(super) async fn issue_and_record(
    state: AppState,
    current: Current,
    meta: RequestMeta,
    caller: Result<Caller, CallerRefusal>,
    request: Result<IssueRequest, ApiError>,
) -> Result<Committed, ApiError> {
    // Boxed once here: the issuing future is about 3 KB, and spawning it moves it through
    // several frames, each a copy of all of it.
    let work = Box::pin(record_issuance(state, current, meta, caller, request));
    tokio::spawn(work.instrument(tracing::Span::current()))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
}

async fn record_issuance(
    state: AppState,
    current: Current,
    meta: RequestMeta,
    caller: Result<Caller, CallerRefusal>,
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
            Err(CallerRefusal::Unauthenticated(error)) => return Err(error.into()),
            Err(CallerRefusal::OverBudget { caller, limited }) => {
                if let Some(caller) = &caller {
                    issuance::record_caller(&mut record, caller);
                }
                return Err(limited.into());
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
            let rule = record.rule.clone();
            // Counted once the outcome is final: without its commit, nothing was issued.
            match state.audit.record(record).await {
                Ok(receipt) => {
                    state
                        .metrics
                        .issuance(Outcome::Issued.as_str(), "issued", rule.as_deref());
                    Ok(Committed { issued, receipt })
                }
                Err(error) => {
                    let error = ApiError::AuditUnavailable(error);
                    state.metrics.issuance(
                        error.outcome().as_str(),
                        &error.reason(),
                        rule.as_deref(),
                    );
                    Err(error)
                }
            }
        }
        Err(error) => {
            record.decide(error.outcome(), &error.reason(), error.status().as_u16());
            state.metrics.issuance(
                record.outcome.as_str(),
                &record.reason,
                record.rule.as_deref(),
            );
            // However fast a caller sends, its refusals for sending too fast add no rows:
            // they are counted in the next aggregate row.
            if matches!(error, ApiError::RateLimited(_)) {
                state.audit.tally(&record);
                return Err(error);
            }
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
