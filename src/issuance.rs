//! The issuing path: verified caller → matching rule → narrowed grant → a credential from
//! the cache or from AWS (AssumeRole, then GetAuthorizationToken), filling in the audit
//! record at every step so that whatever happens, the record says how far the request got.

use std::sync::Arc;

use crate::app::Snapshot;
use crate::audit::{AuditRecord, Fingerprinter};
use crate::auth::Caller;
use crate::credentials::cache::CallerScope;
use crate::credentials::{AssumeRole, CredentialRequest, CredentialSource, Issued};
use crate::error::ApiError;
use crate::policy::{Grant, IssueRequest, Rule, SessionIdentity};

/// What the issuing path uses: the request's snapshot (deny lists, rules, rate limits), the
/// credentials, and the fingerprint key.
#[derive(Clone, Copy)]
pub(crate) struct Issuer<'a> {
    /// The deny lists and the ordered rules.
    pub policy: &'a Snapshot,
    /// The credential cache and AWS behind it.
    pub credentials: &'a CredentialSource,
    /// Fingerprints the issued tokens for the record.
    pub fingerprinter: &'a Fingerprinter,
}

/// Names the verified caller in the record, before anything else can fail.
pub(crate) fn record_caller(record: &mut AuditRecord, caller: &Caller) {
    record.issuer = Some(caller.issuer.to_string());
    record.subject = Some(caller.subject.clone());
}

impl Issuer<'_> {
    /// Runs the issuing path for one verified caller and well-formed request. The caller
    /// commits `record` before returning any token.
    pub(crate) async fn issue(
        &self,
        record: &mut AuditRecord,
        caller: &Caller,
        request: &IssueRequest,
    ) -> Result<Arc<Issued>, ApiError> {
        let rule = self
            .policy
            .rules
            .first_match(&caller.issuer, &caller.claims);
        // Before any rule grants anything, whatever the rule; with a stored list too old to
        // trust, nothing is granted. An entry on claims reaches the caller's cached
        // credentials only now (the others dropped them when they took effect); the scan is
        // kept to those entries, as a denied caller may keep asking.
        if let Some(entry) = self.policy.denial(caller, rule.map(|r| r.name.as_str()))? {
            let dropped = if entry.matches_claims() {
                self.credentials
                    .forget_caller(&caller.issuer, &caller.subject)
            } else {
                0
            };
            tracing::info!(deny_entry = %entry.source, dropped_credentials = dropped, "caller denied by policy");
            return Err(ApiError::DeniedByPolicy);
        }
        let rule = rule.ok_or(ApiError::NoMatchingRule)?;
        record.rule = Some(rule.name.clone());
        record.role_arn = Some(rule.role_arn.to_string());
        // Admitted: only now does the token use up its `jti`, if its issuer counts them.
        self.policy.verifier.take_jti(caller)?;
        let grant = rule.grant(request, &caller.claims)?;
        record.grant(&grant);

        let identity = rule.session_identity(&caller.claims, &unique_session_suffix())?;
        record.session_name = Some(identity.session_name.to_string());
        record.session_tags = identity
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        let access = grant.access;
        let wanted = credential_request(rule, grant, identity);
        let caller_scope = CallerScope {
            issuer: &caller.issuer,
            subject: &caller.subject,
        };
        let served = self
            .credentials
            .get(rule.cache, &rule.name, caller_scope, access, wanted)
            .await?;
        // A cached credential belongs to the session that fetched it: that is the name
        // CloudTrail knows it by.
        if served.from_cache {
            record.session_name = Some(served.issued.session_name.to_string());
        }
        record.from_cache = served.from_cache;
        record.upstream_error = served.hidden_error.as_ref().map(|e| e.reason());
        record.issued(&served.issued.data, self.fingerprinter);
        Ok(served.issued)
    }
}

/// A suffix that makes each issuance's session name unique, so CloudTrail tells sessions
/// apart.
pub(crate) fn unique_session_suffix() -> String {
    let mut unique = uuid::Uuid::new_v4().simple().to_string();
    unique.truncate(12);
    unique
}

/// What `grant` asks of AWS for a caller of `rule` with this session identity: AssumeRole on
/// the rule's role, restricted by the grant's session policy, then a token per endpoint.
/// Issuing and `check-config --assume-role` both build it here, so what the CLI shows is what
/// the service sends.
pub(crate) fn credential_request(
    rule: &Rule,
    grant: Grant,
    identity: SessionIdentity,
) -> CredentialRequest {
    CredentialRequest {
        assume: AssumeRole {
            role_arn: rule.role_arn.clone(),
            session_name: identity.session_name,
            source_identity: identity.source_identity,
            duration: grant.duration,
            external_id: rule.external_id.clone(),
            policy: grant.policy,
            tags: identity.tags,
            transitive_tag_keys: identity.transitive_tag_keys,
        },
        endpoints: grant.endpoints,
    }
}
