//! ECR `GetAuthorizationToken` with an assumed session's credentials only, one call per region, and
//! `EcrToken`, whose `Debug` redacts it. A token of the wrong shape is treated as a failed call,
//! never handed out.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use futures::future::try_join_all;

use super::{Aws, AwsError, AwsErrorKind, SessionCredentials};
use crate::domain::{Region, RegistryHost, RegistryId};

/// An ECR authorization token (base64 of `AWS:<password>`). Never logged: `Debug` redacts it.
#[derive(Clone)]
pub(crate) struct EcrToken(SecretString);

impl EcrToken {
    /// The token if it is of the shape ECR documents, base64 (standard, padded) of
    /// `AWS:<password>` with a password: what `docker login` and the Docker config take.
    pub(crate) fn parse(token: SecretString) -> Option<Self> {
        let decoded = STANDARD.decode(token.expose_secret()).ok()?;
        (decoded.starts_with(b"AWS:") && decoded.len() > 4).then_some(Self(token))
    }

    /// The token itself, for the response body and the fingerprint only.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The password in the token, for `docker login --password-stdin` only. A password that
    /// is not UTF-8 comes out with replacement characters; ECR's are base64 text.
    pub(crate) fn password(&self) -> SecretString {
        let decoded = STANDARD
            .decode(self.0.expose_secret())
            .expect("parse checked that the token is base64");
        String::from_utf8_lossy(&decoded["AWS:".len()..])
            .into_owned()
            .into()
    }
}

impl fmt::Debug for EcrToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EcrToken([redacted])")
    }
}

/// One registry endpoint's credentials, as ECR returned them.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizationData {
    /// Base64 of `AWS:<password>`.
    pub authorization_token: EcrToken,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// The registry URL, such as `https://123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
    pub proxy_endpoint: String,
}

impl Aws {
    /// One AuthorizationData per endpoint, asking each region once and all regions at the
    /// same time. Each entry's `proxyEndpoint` is the endpoint as asked for (FIPS and
    /// dual-stack hosts included); the token works for any endpoint of its registry.
    pub(crate) async fn authorization_data_for(
        &self,
        session: &SessionCredentials,
        endpoints: &[RegistryHost],
    ) -> Result<Vec<AuthorizationData>, AwsError> {
        let mut by_region: Vec<(&Region, Vec<RegistryId>)> = Vec::new();
        for endpoint in endpoints {
            let at = match by_region.iter().position(|(r, _)| *r == endpoint.region()) {
                Some(at) => at,
                None => {
                    by_region.push((endpoint.region(), Vec::new()));
                    by_region.len() - 1
                }
            };
            if !by_region[at].1.contains(endpoint.registry_id()) {
                by_region[at].1.push(endpoint.registry_id().clone());
            }
        }
        let answers = try_join_all(
            by_region
                .iter()
                .map(|(region, ids)| self.authorization_tokens(session, region, ids)),
        )
        .await?;
        endpoints
            .iter()
            .map(|endpoint| {
                let at = by_region
                    .iter()
                    .position(|(r, _)| *r == endpoint.region())
                    .expect("grouped above");
                let data = answers[at]
                    .iter()
                    .find(|d| {
                        registry_of(&d.proxy_endpoint) == Some(endpoint.registry_id().as_str())
                    })
                    .ok_or_else(|| {
                        AwsError::new("GetAuthorizationToken", AwsErrorKind::Unavailable)
                    })?;
                Ok(AuthorizationData {
                    authorization_token: data.authorization_token.clone(),
                    expires_at: data.expires_at,
                    proxy_endpoint: endpoint.proxy_endpoint(),
                })
            })
            .collect()
    }

    /// Calls `GetAuthorizationToken` in `region` with the session's credentials only.
    async fn authorization_tokens(
        &self,
        session: &SessionCredentials,
        region: &Region,
        registry_ids: &[RegistryId],
    ) -> Result<Vec<AuthorizationData>, AwsError> {
        const OPERATION: &str = "GetAuthorizationToken";
        let account = session
            .credentials
            .account_id()
            .map(|a| a.as_str().to_owned());
        let _admitted = self
            .ecr_ceiling
            .admit(&(account, region.clone()), OPERATION)
            .await
            .inspect_err(|e| self.ecr_metrics.failed(e))?;
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
        let output = self
            .ecr_metrics
            .call(async {
                request
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(OPERATION, e))
            })
            .await?;
        let invalid = || AwsError::new(OPERATION, AwsErrorKind::Unavailable);
        let data = output
            .authorization_data
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let expires_at = d.expires_at.ok_or_else(invalid)?;
                Ok(AuthorizationData {
                    // A token docker could not use is no credential: AWS answered wrongly.
                    authorization_token: d
                        .authorization_token
                        .map(SecretString::from)
                        .and_then(EcrToken::parse)
                        .ok_or_else(invalid)?,
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

/// The registry ID at the front of a proxy endpoint such as
/// `https://123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
fn registry_of(proxy_endpoint: &str) -> Option<&str> {
    let host = proxy_endpoint
        .strip_prefix("https://")
        .unwrap_or(proxy_endpoint);
    host.split('.').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> Option<EcrToken> {
        EcrToken::parse(text.into())
    }

    #[test]
    fn a_token_is_base64_of_aws_and_a_password() {
        let parsed = token("QVdTOnNlY3JldC1wYXNzd29yZA==").unwrap();
        assert_eq!(parsed.password().expose_secret(), "secret-password");
        assert_eq!(parsed.expose(), "QVdTOnNlY3JldC1wYXNzd29yZA==");
        // "AWS:" alone, another user, unpadded, not base64, empty.
        for bad in [
            "QVdTOg==",
            "Qk9COng=",
            "QVdTOnNlY3JldC1wYXNzd29yZA",
            "AWS:x",
            "",
        ] {
            assert!(token(bad).is_none(), "{bad}");
        }
    }
}
