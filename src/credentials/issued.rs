//! One issuance's round trip to AWS: `AssumeRole`, then a token per endpoint with that session,
//! each token's expiry cut to the session's so no token claims to outlive its credentials.

use chrono::{DateTime, SubsecRound, Utc};

use super::{AssumeRole, AuthorizationData, Aws, AwsError, AwsErrorKind, SessionCredentials};
use crate::domain::{RegistryHost, RoleSessionName};

/// Everything one issuance asks of AWS: a session, then a token per endpoint.
#[derive(Debug, Clone)]
pub(crate) struct CredentialRequest {
    /// The `AssumeRole` call.
    pub assume: AssumeRole,
    /// One AuthorizationData per endpoint, in this order.
    pub endpoints: Vec<RegistryHost>,
}

/// What one round trip to AWS produced.
#[derive(Debug)]
pub(crate) struct Issued {
    /// One entry per endpoint asked for, each `expires_at` already the effective expiry.
    pub data: Vec<AuthorizationData>,
    /// The STS session the tokens belong to, as CloudTrail names it.
    pub session_name: RoleSessionName,
    /// The effective expiry: the earliest of every token's and the session's.
    pub expires_at: DateTime<Utc>,
}

impl Aws {
    /// Assumes the role, then asks ECR for tokens with exactly that session.
    ///
    /// A token is only as good as the session behind it, so every entry's `expires_at` is
    /// the earlier of ECR's answer and the session's expiration: asking for a 900-second
    /// session yields tokens that say they live 15 minutes, not ECR's 12 hours.
    pub(crate) async fn issue(&self, request: &CredentialRequest) -> Result<Issued, AwsError> {
        let session = self.assume_role(&request.assume).await?;
        let mut data = self
            .authorization_data_for(&session, &request.endpoints)
            .await?;
        let expires_at = effective_expiry(&session, &data)?;
        for entry in &mut data {
            entry.expires_at = entry.expires_at.min(expires_at);
        }
        Ok(Issued {
            data,
            session_name: request.assume.session_name.clone(),
            expires_at,
        })
    }
}

/// The earliest of the session's expiration and every token's expiry, in whole seconds as
/// the response states it (rounded down, so it never claims a moment too many).
fn effective_expiry(
    session: &SessionCredentials,
    data: &[AuthorizationData],
) -> Result<DateTime<Utc>, AwsError> {
    let tokens = data
        .iter()
        .map(|d| d.expires_at)
        .min()
        .ok_or_else(|| AwsError::new("GetAuthorizationToken", AwsErrorKind::Unavailable))?;
    Ok(match session.expiration() {
        Some(session) => tokens.min(DateTime::<Utc>::from(session).trunc_subsecs(0)),
        None => tokens,
    })
}
