//! The shapes a credential is handed out in: ECR's AuthorizationData as JSON, the password
//! alone for `docker login --password-stdin`, a Docker config.json, and a Kubernetes
//! `kubernetes.io/dockerconfigjson` Secret. Each is built from the same issued data.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::Committed;
use crate::credentials::AuthorizationData;
use crate::domain::{Namespace, SecretName};
use crate::routes::{no_store, no_store_json};

/// How the issued credential is written into the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CredentialFormat {
    /// `{"authorizationData": [...], "requestId": ...}`, as `POST /v1/ecr/authorization-token`.
    AuthorizationData,
    /// The password of the one endpoint, as `text/plain`.
    LoginPassword,
    /// `{"auths": {HOST: {"auth": TOKEN}}}`, for `~/.docker/config.json`.
    DockerConfig,
    /// A Secret of type `kubernetes.io/dockerconfigjson` holding the Docker config.
    KubernetesSecret {
        /// `metadata.name`.
        name: SecretName,
        /// `metadata.namespace`, or none for the namespace `kubectl` is pointed at.
        namespace: Option<Namespace>,
    },
}

impl CredentialFormat {
    /// The response for the committed issuance, with `Cache-Control: no-store` and the
    /// audit receipt.
    pub(super) fn render(&self, committed: &Committed, request_id: String) -> Response {
        let data = &committed.issued.data;
        match self {
            Self::AuthorizationData => committed.respond(IssueResponse {
                authorization_data: data.iter().map(AuthorizationDataJson::from).collect(),
                request_id,
            }),
            Self::LoginPassword => {
                // The request was refused before issuing unless it asked for one endpoint.
                let one = data.first().expect("an issuance has an endpoint");
                let password = one.authorization_token.password();
                let mut response = password.expose_secret().to_owned().into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                committed.with_receipt_header(no_store(response))
            }
            Self::DockerConfig => committed.with_receipt_header(no_store_json(docker_config(data))),
            Self::KubernetesSecret { name, namespace } => {
                let config =
                    serde_json::to_vec(&docker_config(data)).expect("a map of strings serialises");
                committed.with_receipt_header(no_store_json(Secret {
                    api_version: "v1",
                    kind: "Secret",
                    metadata: Metadata {
                        name: name.as_str(),
                        namespace: namespace.as_ref().map(Namespace::as_str),
                    },
                    type_: "kubernetes.io/dockerconfigjson",
                    data: SecretData {
                        docker_config_json: STANDARD.encode(config),
                    },
                }))
            }
        }
    }
}

/// The registry host as `docker login HOST` writes it into config.json: the broker's own
/// canonical endpoint without its scheme.
fn docker_host(data: &AuthorizationData) -> &str {
    data.proxy_endpoint
        .strip_prefix("https://")
        .unwrap_or(&data.proxy_endpoint)
        .trim_end_matches('/')
}

#[derive(Serialize)]
struct DockerConfig<'a> {
    auths: BTreeMap<&'a str, DockerAuth<'a>>,
}

#[derive(Serialize)]
struct DockerAuth<'a> {
    /// Base64 of `user:password`, which ECR's token already is.
    auth: &'a str,
}

fn docker_config(data: &[AuthorizationData]) -> DockerConfig<'_> {
    let auths = data
        .iter()
        .map(|d| {
            let auth = DockerAuth {
                auth: d.authorization_token.expose(),
            };
            (docker_host(d), auth)
        })
        .collect();
    DockerConfig { auths }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Secret<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    #[serde(rename = "type")]
    type_: &'static str,
    data: SecretData,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

#[derive(Serialize)]
struct SecretData {
    #[serde(rename = ".dockerconfigjson")]
    docker_config_json: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationDataJson<'a> {
    authorization_token: &'a str,
    expires_at: String,
    proxy_endpoint: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssueResponse<'a> {
    authorization_data: Vec<AuthorizationDataJson<'a>>,
    request_id: String,
}

impl<'a> From<&'a AuthorizationData> for AuthorizationDataJson<'a> {
    fn from(d: &'a AuthorizationData) -> Self {
        Self {
            authorization_token: d.authorization_token.expose(),
            expires_at: d
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            proxy_endpoint: &d.proxy_endpoint,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::credentials::{EcrToken, Issued};
    use crate::domain::RoleSessionName;

    const TOKEN: &str = "QVdTOnNlY3JldC1wYXNzd29yZA=="; // AWS:secret-password
    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn data() -> Vec<AuthorizationData> {
        vec![AuthorizationData {
            authorization_token: EcrToken::parse(TOKEN.into()).unwrap(),
            expires_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            proxy_endpoint: format!("https://{HOST}"),
        }]
    }

    async fn body(format: CredentialFormat) -> (String, String) {
        let committed = Committed {
            issued: std::sync::Arc::new(Issued {
                data: data(),
                session_name: RoleSessionName::for_caller("alice", "0123456789ab"),
                expires_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            }),
            receipt: format!("7:{}", "ab".repeat(32)).parse().unwrap(),
        };
        let response = format.render(&committed, "id".to_owned());
        assert_eq!(
            response.headers()["audit-entry"],
            committed.receipt.to_string()
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (content_type, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_password_is_the_token_without_aws_and_nothing_else() {
        assert_eq!(
            body(CredentialFormat::LoginPassword).await,
            (
                "text/plain; charset=utf-8".to_owned(),
                "secret-password".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn a_secret_without_a_namespace_names_none() {
        let format = CredentialFormat::KubernetesSecret {
            name: SecretName::try_from("ecr-pull".to_owned()).unwrap(),
            namespace: None,
        };
        let (content_type, text) = body(format).await;
        assert_eq!(content_type, "application/json");
        let secret: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(secret["metadata"], json!({"name": "ecr-pull"}));
        let config = STANDARD
            .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
            .unwrap();
        let config: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config, json!({"auths": {HOST: {"auth": TOKEN}}}));
    }

    #[test]
    fn the_docker_host_is_the_endpoint_without_scheme_or_slash() {
        let mut one = data().remove(0);
        assert_eq!(docker_host(&one), HOST);
        one.proxy_endpoint = format!("https://{HOST}/");
        assert_eq!(docker_host(&one), HOST);
    }
}
