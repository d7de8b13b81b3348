use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::{Aws, AwsError, AwsErrorKind, SessionCredentials};
use crate::domain::{Region, RegistryId};

/// An ECR authorization token (base64 of `AWS:<password>`). Never logged: `Debug` redacts it.
#[derive(Clone)]
pub struct EcrToken(SecretString);

impl EcrToken {
    /// The token itself, for the response body and the fingerprint only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for EcrToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EcrToken([redacted])")
    }
}

/// One registry endpoint's credentials, as ECR returned them.
#[derive(Debug, Clone)]
pub struct AuthorizationData {
    /// Base64 of `AWS:<password>`.
    pub authorization_token: EcrToken,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// The registry URL, such as `https://123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
    pub proxy_endpoint: String,
}

impl Aws {
    /// Calls `GetAuthorizationToken` in `region` with the session's credentials only.
    pub async fn authorization_tokens(
        &self,
        session: &SessionCredentials,
        region: &Region,
        registry_ids: &[RegistryId],
    ) -> Result<Vec<AuthorizationData>, AwsError> {
        const OPERATION: &str = "GetAuthorizationToken";
        let config = aws_sdk_ecr::config::Builder::from(&self.sdk)
            .region(aws_sdk_ecr::config::Region::new(region.to_string()))
            .credentials_provider(session.credentials.clone())
            .timeout_config(self.timeouts.clone())
            .build();
        #[expect(
            deprecated,
            reason = "registryIds no longer scopes permissions (the session policy does), but it still picks one proxyEndpoint per registry"
        )]
        let request = aws_sdk_ecr::Client::from_conf(config)
            .get_authorization_token()
            .set_registry_ids(Some(registry_ids.iter().map(|id| id.to_string()).collect()));
        let output = request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OPERATION, e))?;
        let invalid = || AwsError::new(OPERATION, AwsErrorKind::Unavailable);
        let data = output
            .authorization_data
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let expires_at = d.expires_at.ok_or_else(invalid)?;
                Ok(AuthorizationData {
                    authorization_token: EcrToken(
                        d.authorization_token.ok_or_else(invalid)?.into(),
                    ),
                    expires_at: DateTime::from_timestamp(expires_at.secs(), 0)
                        .ok_or_else(invalid)?,
                    proxy_endpoint: d.proxy_endpoint.ok_or_else(invalid)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if data.is_empty() {
            return Err(invalid());
        }
        Ok(data)
    }
}
