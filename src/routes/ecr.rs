//! The issuing endpoints: each turns its request into an [`IssueRequest`] and a format,
//! hands them to the one issuing path ([`crate::issuance`]), and renders the committed
//! answer. *Extraction and rendering only: no decision, no audit row.*

mod format;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Serialize;

use super::RequestMeta;
use super::caller::Charged;
use super::json_object::{BodyRejection, JsonObject};
use crate::app::{AppState, Current};
use crate::audit::{AuditRecord, ChainEntry};
use crate::auth::Caller;
use crate::domain::{Namespace, SecretName};
use crate::error::ApiError;
use crate::issuance::{Committed, Issuer, Unadmitted};
use crate::kill_switch::Admission;
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
    issuing: Issuing,
    body: Result<Option<JsonObject<IssueRequest>>, BodyRejection>,
) -> Result<Response, ApiError> {
    let wanted = issue_request(body).map(|request| Wanted {
        request,
        format: CredentialFormat::AuthorizationData,
    });
    issuing.issue(wanted).await
}

/// The password alone, for `docker login --username AWS --password-stdin HOST`; the query
/// narrows the request as the issuing body does, and must leave exactly one endpoint.
async fn get_login_password(
    issuing: Issuing,
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
    issuing.issue(wanted).await
}

/// A Docker config.json, or with `format=kubernetes-secret` a Secret manifest holding one;
/// the other parameters narrow the request as the issuing body does.
async fn get_docker_config(
    issuing: Issuing,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let wanted = query_pairs(query).and_then(|mut pairs| {
        let format = docker_config_format(&mut pairs)?;
        Ok(Wanted {
            request: query_request(pairs)?,
            format,
        })
    });
    issuing.issue(wanted).await
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

/// What every issuing endpoint hands to the issuing path, taken from the request's parts:
/// its snapshot's [`Issuer`], its audit record, and its caller, charged or turned away.
struct Issuing {
    issuer: Issuer,
    record: AuditRecord,
    request_id: String,
    caller: Result<(Caller, Admission), Unadmitted>,
}

impl FromRequestParts<AppState> for Issuing {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(current) = Current::from_request_parts(parts, state).await;
        let Ok(meta) = RequestMeta::from_request_parts(parts, state).await;
        let charged = Charged::from_request_parts(parts, state).await;
        Ok(Self {
            issuer: state.issuer(&current),
            record: meta.audit_record(),
            request_id: meta.request_id,
            caller: charged
                .map(|Charged { caller, admission }| (caller, admission))
                .map_err(Unadmitted::from),
        })
    }
}

impl Issuing {
    /// Runs the one issuing path, which commits its audit record, and only then writes the
    /// committed credential in the format asked for. A request refused before it reaches
    /// the path is recorded like any other refusal, and nothing is written in any format.
    async fn issue(self, wanted: Result<Wanted, ApiError>) -> Result<Response, ApiError> {
        let (request, format) = match wanted {
            Ok(Wanted { request, format }) => (Ok(request), format),
            Err(error) => (Err(error), CredentialFormat::AuthorizationData),
        };
        let committed = self.issuer.issue(self.record, self.caller, request).await?;
        Ok(format.render(&committed, self.request_id))
    }
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

/// How the issuing endpoints render a committed issuance.
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

/// An empty body means "everything the rule gives by default". A refused body is passed on
/// rather than rejected here, so that the refusal is audited like any other.
fn issue_request(
    body: Result<Option<JsonObject<IssueRequest>>, BodyRejection>,
) -> Result<IssueRequest, ApiError> {
    Ok(body?.map(|JsonObject(request)| request).unwrap_or_default())
}
