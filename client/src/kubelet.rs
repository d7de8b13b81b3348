//! kubelet's image credential provider protocol (`credentialprovider.kubelet.k8s.io/v1`): a
//! `CredentialProviderRequest` naming one image on stdin, a `CredentialProviderResponse`
//! on stdout. The response is keyed by registry, so kubelet reuses it for every image of
//! that registry, and kubelet keeps it as long as this client's own cache would: until half
//! the credential's life. An image of a registry that is not ECR's (a `matchImages` wider
//! than ECR) gets a response without credentials, which kubelet takes as "this provider
//! has none": the pull goes on anonymously or with other providers' credentials, where a
//! failure would only add an error to kubelet's log.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::config::{self, Settings};
use crate::credential::Credential;
use crate::error::Error;
use crate::jwt::JwtSource;
use crate::obtain;
use crate::registry::EcrHost;

/// The API version kubelet speaks to the provider, and the only one answered.
pub(crate) const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialProviderRequest {
    api_version: String,
    kind: String,
    image: String,
    /// The pod's service-account token, when the provider's `tokenAttributes` ask kubelet
    /// for one (Kubernetes 1.34 and later; 1.33 behind an alpha feature gate).
    #[serde(default)]
    service_account_token: Option<SecretString>,
}

/// What a request asks for: the image's registry (`None` when it is not ECR's), and the
/// pod's token if kubelet sent one.
fn parse_request(input: &str) -> Result<(Option<EcrHost>, Option<SecretString>), Error> {
    let request: CredentialProviderRequest = serde_json::from_str(input)
        .map_err(|e| Error::Protocol(format!("stdin is not a CredentialProviderRequest ({e})")))?;
    if request.api_version != API_VERSION || request.kind != "CredentialProviderRequest" {
        return Err(Error::Protocol(format!(
            "expected a CredentialProviderRequest of {API_VERSION}, got a {} of {}; set the \
             provider's apiVersion to {API_VERSION}",
            request.kind, request.api_version
        )));
    }
    let host = EcrHost::from_image(&request.image);
    let pod_token = request
        .service_account_token
        .filter(|t| !t.expose_secret().trim().is_empty());
    Ok((host, pod_token))
}

/// The response for `host`'s credential at `now`. A credential already due for renewal is
/// given with a zero cacheDuration, which tells kubelet not to cache it at all.
fn response(host: &EcrHost, credential: &Credential, now: chrono::DateTime<chrono::Utc>) -> String {
    let response = json!({
        "kind": "CredentialProviderResponse",
        "apiVersion": API_VERSION,
        "cacheKeyType": "Registry",
        "cacheDuration": format!("{}s", credential.fresh_for(now).as_secs()),
        "auth": {
            host.as_str(): {
                "username": credential.username,
                "password": credential.password.expose_secret(),
            }
        }
    });
    format!("{response}\n")
}

/// The response for an image this provider has no credentials for: no `auth`, and a zero
/// cacheDuration, so that kubelet keeps nothing and asks again should matchImages change.
fn no_credentials() -> String {
    let response = json!({
        "kind": "CredentialProviderResponse",
        "apiVersion": API_VERSION,
        "cacheKeyType": "Registry",
        "cacheDuration": "0s",
        "auth": {},
    });
    format!("{response}\n")
}

/// Answers one request: `input` is stdin, the result is stdout. The pod's service-account
/// token, when kubelet sends one, is the caller's JWT (the operator asked for it with
/// `tokenAttributes`), so each pod's credential is its own; otherwise the configured one.
pub(crate) async fn provide(
    input: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let (host, pod_token) = parse_request(input)?;
    let Some(host) = host else {
        return Ok(no_credentials());
    };
    let settings = Settings::load(var, Some(&host))?;
    let source = match (pod_token, &settings.jwt) {
        (Some(token), _) => &JwtSource::Value(token),
        (None, Some(configured)) => configured,
        (None, None) => return Err(config::no_jwt()),
    };
    let credential = obtain::credential(&settings, source, &host).await?;
    Ok(response(&host, &credential, chrono::Utc::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const HOST: &str = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";

    fn request(image: &str) -> String {
        json!({"apiVersion": API_VERSION, "kind": "CredentialProviderRequest", "image": image})
            .to_string()
    }

    #[test]
    fn the_request_names_the_image_s_registry() {
        let (host, pod_token) = parse_request(&request(&format!("{HOST}/team-a/api:1.0"))).unwrap();
        assert_eq!(host.unwrap().as_str(), HOST);
        assert!(pod_token.is_none());
        // Newer kubelets may send the pod's service-account token, and its annotations.
        let newer = json!({
            "apiVersion": API_VERSION, "kind": "CredentialProviderRequest",
            "image": format!("{HOST}/x"), "serviceAccountToken": "pod.token.sig",
            "serviceAccountAnnotations": {"a": "b"}
        });
        let (_, pod_token) = parse_request(&newer.to_string()).unwrap();
        assert_eq!(pod_token.unwrap().expose_secret(), "pod.token.sig");
    }

    #[test]
    fn other_requests_are_refused_clearly() {
        for (input, why) in [
            ("not json".to_owned(), "not a CredentialProviderRequest"),
            (
                json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1beta1",
                       "kind": "CredentialProviderRequest", "image": format!("{HOST}/x")})
                .to_string(),
                "set the provider's apiVersion",
            ),
        ] {
            let message = parse_request(&input).unwrap_err().to_string();
            assert!(message.contains(why), "{message}");
        }
    }

    #[tokio::test]
    async fn an_image_that_is_not_in_ecr_gets_no_credentials_and_no_error() {
        // Not even the broker's URL is needed: nothing is asked of it.
        let no_env = |_: &str| None;
        for image in ["nginx:1.27", "ghcr.io/acme/api:1", "public.ecr.aws/x/y:1"] {
            let body: Value =
                serde_json::from_str(&provide(&request(image), no_env).await.unwrap()).unwrap();
            assert_eq!(
                body,
                json!({
                    "kind": "CredentialProviderResponse", "apiVersion": API_VERSION,
                    "cacheKeyType": "Registry", "cacheDuration": "0s", "auth": {},
                }),
                "{image}"
            );
        }
    }

    #[test]
    fn the_response_is_keyed_by_registry_for_half_the_life() {
        let now = chrono::Utc::now();
        let host = EcrHost::from_server_url(HOST).unwrap();
        let credential = Credential::received(
            "AWS".to_owned(),
            SecretString::from("pw".to_owned()),
            now + chrono::TimeDelta::seconds(1800),
            now,
        );
        let body: Value = serde_json::from_str(&response(&host, &credential, now)).unwrap();
        assert_eq!(
            body,
            json!({
                "kind": "CredentialProviderResponse",
                "apiVersion": API_VERSION,
                "cacheKeyType": "Registry",
                "cacheDuration": "900s",
                "auth": {HOST: {"username": "AWS", "password": "pw"}},
            })
        );
        let later = now + chrono::TimeDelta::seconds(1000);
        let body: Value = serde_json::from_str(&response(&host, &credential, later)).unwrap();
        assert_eq!(body["cacheDuration"], "0s");
    }
}
