//! One issuance, from its first check to its committed audit row: the verified caller, the
//! deny lists, its first matching rule, the `jti`, the narrowed grant, a credential from the
//! cache or from AWS (AssumeRole, then GetAuthorizationToken), and the commit. The audit
//! record is filled in at every step, so that whatever happens it says how far the request
//! got, and no credential is returned unless its row is committed ([`Committed`]).
//! *Imports neither app nor routes: it is handed what it uses ([`Issuer`]) and returns
//! what the handlers render.*

use std::sync::Arc;

use axum::http::StatusCode;
use tracing::Instrument;

use crate::audit::{AuditError, AuditLog, AuditRecord, ChainEntry, Fingerprinters, Outcome};
use crate::auth::{Caller, Verifier};
use crate::credentials::cache::CallerScope;
use crate::credentials::{AssumeRole, CredentialRequest, CredentialSource, Issued};
use crate::error::ApiError;
use crate::kill_switch::Admission;
use crate::metrics::Metrics;
use crate::policy::{Grant, IssueRequest, Rule, SessionIdentity};

/// What an issuance uses besides its caller's [`Admission`] (the rule and the deny lists'
/// verdict, under the request's snapshot): that snapshot's verifier, which it keeps to its
/// end whatever a reload does meanwhile, and the parts fixed at start. Owned, so that it can
/// run in a task of its own.
pub(crate) struct Issuer {
    /// Takes the admitted token's `jti`.
    pub verifier: Arc<Verifier>,
    /// The credential cache and AWS behind it.
    pub credentials: CredentialSource,
    /// Fingerprints the issued tokens for the record.
    pub fingerprinters: Arc<Fingerprinters>,
    /// Where the record is committed.
    pub audit: AuditLog,
    /// Counts each outcome once it is final.
    pub metrics: Metrics,
}

/// A request turned away before there was a caller to issue to: no valid token, or over its
/// budget. It is recorded like any other refusal.
pub(crate) struct Unadmitted {
    /// Who, for the record, when the token verified.
    pub caller: Option<Caller>,
    /// The answer.
    pub error: ApiError,
}

/// An issuance whose audit row is committed: every credential response is built from one,
/// and carries the row's place in the chain as its receipt.
pub(crate) struct Committed {
    /// What was issued.
    pub issued: Arc<Issued>,
    /// The audit row's id and hash in the committed chain.
    pub receipt: ChainEntry,
}

/// Names the verified caller in the record, before anything else can fail.
pub(crate) fn record_caller(record: &mut AuditRecord, caller: &Caller) {
    record.issuer = Some(caller.issuer.to_string());
    record.subject = Some(caller.subject.clone());
}

impl Issuer {
    /// Issues to `caller` what `request` asks, and commits `record` (the request's, started)
    /// whatever the outcome, before anything is returned: the credential with its receipt,
    /// or the refusal.
    ///
    /// Runs to completion in its own task even when the client goes away or the request
    /// times out, so that every decision that reached AWS is recorded.
    pub(crate) async fn issue(
        self,
        record: AuditRecord,
        caller: Result<(Caller, Admission), Unadmitted>,
        request: Result<IssueRequest, ApiError>,
    ) -> Result<Committed, ApiError> {
        // Boxed once here: the issuing future is about 3 KB, and spawning it moves it through
        // several frames, each a copy of all of it.
        let work = Box::pin(self.issue_and_record(record, caller, request));
        tokio::spawn(work.instrument(tracing::Span::current()))
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
    }

    async fn issue_and_record(
        self,
        mut record: AuditRecord,
        caller: Result<(Caller, Admission), Unadmitted>,
        request: Result<IssueRequest, ApiError>,
    ) -> Result<Committed, ApiError> {
        let outcome = async {
            let (caller, admission) = caller.map_err(|Unadmitted { caller, error }| {
                if let Some(caller) = &caller {
                    record_caller(&mut record, caller);
                }
                error
            })?;
            record_caller(&mut record, &caller);
            self.decide(&mut record, &caller, &admission, &request?)
                .await
        }
        .await;
        match outcome {
            Ok(issued) => self.commit(record, issued).await,
            Err(error) => self.refuse(record, error).await,
        }
    }

    /// Runs the issuing path for one verified caller and well-formed request, filling in
    /// `record` as it goes.
    async fn decide(
        &self,
        record: &mut AuditRecord,
        caller: &Caller,
        admission: &Admission,
        request: &IssueRequest,
    ) -> Result<Arc<Issued>, ApiError> {
        // Before any rule grants anything, whatever the rule; with a stored list too old to
        // trust, nothing is granted. An entry on claims reaches the caller's cached
        // credentials only now (the others dropped them when they took effect); the scan is
        // kept to those entries, as a denied caller may keep asking.
        if let Some(entry) = admission.denied_by()? {
            let dropped = if entry.matches_claims {
                self.credentials
                    .forget_caller(&caller.issuer, &caller.subject)
            } else {
                0
            };
            tracing::info!(deny_entry = %entry.source, dropped_credentials = dropped, "caller denied by policy");
            return Err(ApiError::DeniedByPolicy);
        }
        let rule = admission.rule().ok_or(ApiError::NoMatchingRule)?;
        record.rule = Some(rule.name.clone());
        record.role_arn = Some(rule.role_arn.to_string());
        // Admitted: only now does the token use up its `jti`, if its issuer counts them.
        self.verifier.take_jti(caller)?;
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
        record.issued(&served.issued.data, self.fingerprinters.current());
        Ok(served.issued)
    }

    /// Commits the record of an issuance; only a committed one is returned.
    async fn commit(
        &self,
        mut record: AuditRecord,
        issued: Arc<Issued>,
    ) -> Result<Committed, ApiError> {
        record.decide(Outcome::Issued, "issued", StatusCode::OK.as_u16());
        let rule = record.rule.clone();
        // Counted once the outcome is final: without its commit, nothing was issued.
        match self.audit.record(record).await {
            Ok(receipt) => {
                self.metrics
                    .issuance(Outcome::Issued.as_str(), "issued", rule.as_deref());
                Ok(Committed { issued, receipt })
            }
            Err(error) => {
                let error = ApiError::AuditUnavailable(error);
                self.metrics
                    .issuance(error.outcome().as_str(), &error.reason(), rule.as_deref());
                Err(error)
            }
        }
    }

    /// Records a refusal, and returns it: the refusal stands whether or not its row could
    /// be written.
    async fn refuse(
        &self,
        mut record: AuditRecord,
        error: ApiError,
    ) -> Result<Committed, ApiError> {
        record.decide(error.outcome(), &error.reason(), error.status().as_u16());
        self.metrics.issuance(
            record.outcome.as_str(),
            &record.reason,
            record.rule.as_deref(),
        );
        // However fast a caller sends, its refusals for sending too fast add no rows:
        // they are counted in the next aggregate row.
        if matches!(error, ApiError::RateLimited(_)) {
            self.audit.tally(&record);
            return Err(error);
        }
        let reason = record.reason.clone();
        match self.audit.record(record).await {
            // Counted in the next aggregate row; a flood must not flood the logs either.
            Ok(_) | Err(AuditError::Shed) => {}
            Err(db) => {
                tracing::warn!(error = %db, %reason, "could not record a refused request")
            }
        }
        Err(error)
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
