//! `POST /v1/audit/lookup`, for audit admins: whether this service issued an ECR token, and to
//! whom, found by the token's fingerprints. The token is never logged, stored or quoted in an
//! error, and a lookup writes no audit row.

use axum::extract::State;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::AuditReader;
use crate::app::AppState;
use crate::audit::IssuanceRecord;
use crate::credentials::EcrToken;
use crate::error::ApiError;
use crate::routes::RequestMeta;
use crate::routes::json_object::{BodyRejection, JsonObject, refused};
use crate::routes::no_store_json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct LookupRequest {
    authorization_token: SecretString,
}

/// The token as ECR returns it. Base64 has no whitespace, so trimming cannot turn one token
/// into another.
fn parse_token(token: &SecretString) -> Result<EcrToken, ApiError> {
    let text = token.expose_secret().trim_ascii();
    if text.is_empty() {
        return Err(refused("authorizationToken must not be empty"));
    }
    EcrToken::parse(text.into()).ok_or_else(|| {
        refused(
            "authorizationToken is not an ECR authorization token (base64 of AWS:<password>, as authorizationData returns it)",
        )
    })
}

/// Reads `{"authorizationToken": "..."}`. The messages never quote the body: it holds a
/// credential.
fn token(body: Result<JsonObject<LookupRequest>, BodyRejection>) -> Result<EcrToken, ApiError> {
    let JsonObject(request) = body.map_err(|rejection| {
        rejection.quoting_nothing(
            "expected a JSON object with exactly one field, authorizationToken, holding a string",
        )
    })?;
    parse_token(&request.authorization_token)
}

/// One issuance of the token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuedRecord {
    id: i64,
    occurred_at: String,
    request_id: String,
    issuer: Option<String>,
    subject: Option<String>,
    rule: Option<String>,
    role_arn: Option<String>,
    session_name: Option<String>,
    expires_at: Option<String>,
    fingerprint_key_id: Option<String>,
}

/// The fields of the issuance record that say who got the token, shown as
/// `GET /v1/audit/issuances` shows them.
impl From<IssuanceRecord> for IssuedRecord {
    fn from(r: IssuanceRecord) -> Self {
        Self {
            id: r.id,
            occurred_at: r.occurred_at,
            request_id: r.request_id,
            issuer: r.issuer,
            subject: r.subject,
            rule: r.rule,
            role_arn: r.role_arn,
            session_name: r.session_name,
            expires_at: r.expires_at,
            fingerprint_key_id: r.fingerprint_key_id,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LookupResponse {
    issued: bool,
    records: Vec<IssuedRecord>,
    request_id: String,
}

/// Whether this service issued an ECR token, and to whom: for audit admins only, since the
/// answer names other callers.
///
/// Lookups are not written to the audit log. Its rows record decisions on issuing requests:
/// their outcome, reason and status say whether a credential left the broker, and callers
/// read them back as their issuance history. A lookup issues nothing, so it gets one info
/// log line instead, saying who asked and what was found, never the token or its
/// fingerprint (the request line itself is traced like any other).
pub(super) async fn post_lookup(
    State(state): State<AppState>,
    meta: RequestMeta,
    reader: AuditReader,
    body: Result<JsonObject<LookupRequest>, BodyRejection>,
) -> Result<Response, ApiError> {
    if !reader.admin {
        return Err(ApiError::NotAuditAdmin);
    }
    let token = token(body)?;
    let fingerprints = state.fingerprinters.all(token.expose());
    drop(token);
    let rows = state
        .audit
        .issued_with(&fingerprints)
        .await
        .map_err(ApiError::AuditUnreadable)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    tracing::info!(
        issuer = %reader.caller.issuer,
        subject = %reader.caller.subject,
        issued = !rows.is_empty(),
        records = ?ids,
        "token lookup"
    );
    let body = LookupResponse {
        issued: !rows.is_empty(),
        records: rows
            .into_iter()
            .map(|row| IssuedRecord::from(IssuanceRecord::from(row)))
            .collect(),
        request_id: meta.request_id,
    };
    Ok(no_store_json(body))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::{FromRequest, Request};

    use super::*;

    const TOKEN: &str = "QVdTOnNlY3JldC1wYXNzd29yZA=="; // AWS:secret-password

    async fn parse(body: &str) -> Result<String, String> {
        let body = JsonObject::from_request(Request::new(Body::from(body.to_owned())), &()).await;
        token(body)
            .map(|t| t.expose().to_owned())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn reads_the_token_as_ecr_returned_it() {
        assert_eq!(
            parse(&format!(r#"{{"authorizationToken": "{TOKEN}"}}"#)).await,
            Ok(TOKEN.to_owned())
        );
        assert_eq!(
            parse(&format!(r#" {{"authorizationToken": " {TOKEN}\n"}}"#)).await,
            Ok(TOKEN.to_owned())
        );
    }

    #[tokio::test]
    async fn refusals_never_quote_the_body() {
        let bodies = [
            format!(r#""{TOKEN}""#),
            format!(r#"["{TOKEN}"]"#),
            format!(r#"{{"authorizationToken": "{TOKEN}", "note": "{TOKEN}"}}"#),
            format!(r#"{{"token": "{TOKEN}"}}"#),
            format!(r#"{{"authorizationToken": ["{TOKEN}"]}}"#),
            format!(r#"{{"authorizationToken": "{TOKEN}""#),
            format!(r#"{{"authorizationToken": "{}"}}"#, &TOKEN[..10]),
            r#"{"authorizationToken": "c2VjcmV0LXBhc3N3b3Jk"}"#.to_owned(), // no AWS: prefix
            r#"{"authorizationToken": "QVdTOg=="}"#.to_owned(),             // AWS: alone
            r#"{"authorizationToken": "  "}"#.to_owned(),
            "{}".to_owned(),
            String::new(),
        ];
        for body in bodies {
            let error = parse(&body).await.unwrap_err();
            assert!(
                error.starts_with("invalid request body: "),
                "{body}: {error}"
            );
            assert!(!error.contains(&TOKEN[..10]), "{body}: {error}");
            assert!(!error.contains("secret-password"), "{body}: {error}");
            assert!(!error.contains("c2VjcmV0"), "{body}: {error}");
        }
    }
}
