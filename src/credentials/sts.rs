//! STS `AssumeRole` for one caller: session name, source identity, duration, external id, session
//! policy and tags, as `AssumeRole` carries them. `SessionCredentials` redacts its secrets in
//! `Debug`; they go only to ECR.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sdk_sts::types::Tag;

use super::{Aws, AwsError, AwsErrorKind};
use crate::domain::{RoleArn, RoleSessionName, SessionDuration, SourceIdentity};
use crate::policy::SessionTag;
use crate::policy::session_policy::SessionPolicy;

/// The inputs of one `AssumeRole` call. Owned, so that a call can run on its own task and
/// finish for everyone waiting on it.
#[derive(Debug, Clone)]
pub(crate) struct AssumeRole {
    /// The role.
    pub role_arn: RoleArn,
    /// Names the session after the caller.
    pub session_name: RoleSessionName,
    /// The caller, sticky on the session.
    pub source_identity: Option<SourceIdentity>,
    /// The session's lifetime.
    pub duration: SessionDuration,
    /// Required by some trust policies.
    pub external_id: Option<String>,
    /// The inline session policy: the credentials can do no more than it allows.
    pub policy: SessionPolicy,
    /// Session tags.
    pub tags: Vec<SessionTag>,
    /// Keys of the tags that pass on to chained sessions.
    pub transitive_tag_keys: Vec<String>,
}

/// Temporary credentials of an assumed-role session. `Debug` redacts the secrets.
#[derive(Debug, Clone)]
pub(crate) struct SessionCredentials {
    pub(super) credentials: Credentials,
}

impl SessionCredentials {
    /// When the credentials stop working.
    pub(crate) fn expiration(&self) -> Option<SystemTime> {
        self.credentials.expiry()
    }
}

impl Aws {
    /// Assumes a role for one caller.
    pub(crate) async fn assume_role(
        &self,
        input: &AssumeRole,
    ) -> Result<SessionCredentials, AwsError> {
        const OPERATION: &str = "AssumeRole";
        let _admitted = self
            .sts_ceiling
            .admit(&(), OPERATION)
            .await
            .inspect_err(|e| self.sts_metrics.failed(e))?;
        let call = self
            .sts
            .assume_role()
            .role_arn(input.role_arn.as_str())
            .role_session_name(input.session_name.as_str())
            .set_source_identity(
                input
                    .source_identity
                    .as_ref()
                    .map(|s| s.as_str().to_owned()),
            )
            .duration_seconds(i32::try_from(input.duration.as_secs()).unwrap_or(i32::MAX))
            .set_external_id(input.external_id.clone())
            .policy(input.policy.as_str())
            .set_tags(tags(&input.tags))
            .set_transitive_tag_keys(
                (!input.transitive_tag_keys.is_empty()).then(|| input.transitive_tag_keys.to_vec()),
            )
            .send();
        let output = self
            .sts_metrics
            .call(async { call.await.map_err(|e| AwsError::from_sdk(OPERATION, e)) })
            .await?;
        let credentials = output
            .credentials
            .ok_or_else(|| AwsError::new(OPERATION, AwsErrorKind::Unavailable))?;
        // The account is the role's: ECR's ceiling and AWS's throttling count per account.
        let mut session = Credentials::builder()
            .access_key_id(credentials.access_key_id)
            .secret_access_key(credentials.secret_access_key)
            .session_token(credentials.session_token)
            .account_id(input.role_arn.account().as_str())
            .provider_name("ecr-token-broker-assumed-role");
        session.set_expiry(SystemTime::try_from(credentials.expiration).ok());
        Ok(SessionCredentials {
            credentials: session.build(),
        })
    }
}

fn tags(tags: &[SessionTag]) -> Option<Vec<Tag>> {
    if tags.is_empty() {
        return None;
    }
    let tags = tags
        .iter()
        .map(|t| {
            Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
                .expect("key and value are set")
        })
        .collect();
    Some(tags)
}
