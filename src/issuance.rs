//! The issuing path: verified caller → matching rule → narrowed grant → AssumeRole →
//! GetAuthorizationToken, filling in the audit record at every step so that whatever
//! happens, the record says how far the request got.

use crate::app::AppState;
use crate::audit::AuditRecord;
use crate::auth::{AuthError, Caller};
use crate::credentials::{AssumeRole, AuthorizationData};
use crate::domain::{RoleSessionName, SourceIdentity};
use crate::error::ApiError;
use crate::policy::IssueRequest;

/// Runs the issuing path for one request. The caller commits `record` before returning any
/// token.
pub async fn issue(
    state: &AppState,
    record: &mut AuditRecord,
    caller: Result<Caller, AuthError>,
    request: Result<IssueRequest, ApiError>,
) -> Result<Vec<AuthorizationData>, ApiError> {
    let caller = caller?;
    record.issuer = Some(caller.issuer.to_string());
    record.subject = Some(caller.subject.clone());
    let request = request?;

    let rule = state
        .rules
        .first_match(&caller.issuer, &caller.claims)
        .ok_or(ApiError::NoMatchingRule)?;
    record.rule = Some(rule.name.clone());
    record.role_arn = Some(rule.role_arn.to_string());
    let grant = rule.grant(&request)?;
    record.region = Some(grant.region.to_string());
    record.registry_ids = grant.registry_ids.iter().map(ToString::to_string).collect();

    let unique = uuid::Uuid::new_v4().simple().to_string();
    let session_name = RoleSessionName::for_caller(&caller.subject, &unique[..12]);
    record.session_name = Some(session_name.to_string());
    let source_identity = SourceIdentity::for_caller(&caller.subject);
    let session = state
        .aws
        .assume_role(AssumeRole {
            role_arn: &rule.role_arn,
            session_name: &session_name,
            source_identity: source_identity.as_ref(),
            duration: grant.duration,
            external_id: rule.external_id.as_deref(),
        })
        .await?;
    let data = state
        .aws
        .authorization_tokens(&session, &grant.region, &grant.registry_ids)
        .await?;

    record.proxy_endpoints = data.iter().map(|d| d.proxy_endpoint.clone()).collect();
    record.expires_at = data.iter().map(|d| d.expires_at).min();
    record.token_fingerprints = data
        .iter()
        .map(|d| {
            state
                .fingerprinter
                .fingerprint(d.authorization_token.expose())
        })
        .collect();
    record.fingerprint_key_id = Some(state.fingerprinter.key_id().to_owned());
    Ok(data)
}
