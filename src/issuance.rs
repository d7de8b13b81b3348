//! The issuing path: verified caller → matching rule → narrowed grant → AssumeRole →
//! GetAuthorizationToken, filling in the audit record at every step so that whatever
//! happens, the record says how far the request got.

use crate::app::AppState;
use crate::audit::AuditRecord;
use crate::auth::{AuthError, Caller};
use crate::credentials::{AssumeRole, AuthorizationData};
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
    record.issuer = Some(caller.issuer.to_string());
    record.subject = Some(caller.subject.clone());
    let request = request?;

    let rule = state
        .rules
        .first_match(&caller.issuer, &caller.claims)
        .ok_or(ApiError::NoMatchingRule)?;
    record.rule = Some(rule.name.clone());
    record.role_arn = Some(rule.role_arn.to_string());
    state.rate_limits.check(&caller, rule)?;
    let grant = rule.grant(&request, &caller.claims)?;
    record.grant(&grant);

    let unique = uuid::Uuid::new_v4().simple().to_string();
    let identity = rule.session_identity(&caller.claims, &unique[..12])?;
    record.session_name = Some(identity.session_name.to_string());
    record.session_tags = identity
        .tags
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    let session = state
        .aws
        .assume_role(AssumeRole {
            role_arn: &rule.role_arn,
            session_name: &identity.session_name,
            source_identity: identity.source_identity.as_ref(),
            duration: grant.duration,
            external_id: rule.external_id.as_deref(),
            policy: &grant.policy,
            tags: &identity.tags,
            transitive_tag_keys: &identity.transitive_tag_keys,
        })
        .await?;
    let data = state
        .aws
        .authorization_data_for(&session, &grant.endpoints)
        .await?;
    record.issued(&data, state.fingerprinters.current());
    Ok(data)
}
