//! The calls the client makes: `POST /v1/ecr/authorization-token` for one registry host, and
//! `GET /v1/whoami` for `configure`; each retried on 429 and 503 as [`crate::retry`] says,
//! and its answer turned into a [`Credential`] or a [`Grant`], or an [`Error`] that carries
//! the problem's `detail` but never a secret.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::{Narrowing, Settings};
use crate::credential::Credential;
use crate::error::{Error, RequestId};
use crate::registry::EcrHost;
use crate::retry::{next_wait, parse_retry_after};

/// An answer larger than this is not the broker's.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long connecting may take, within the call's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one broker.
pub(crate) struct Broker {
    http: reqwest::Client,
    /// The broker's base URL, ending in `/`.
    base: Url,
    timeout: Duration,
}

impl Broker {
    /// An HTTP client for the configured broker, trusting the extra certificates if any.
    pub(crate) fn new(settings: &Settings) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "ecr-token-broker-client/",
                env!("CARGO_PKG_VERSION")
            ))
            // A redirect would carry the bearer token somewhere the operator never named.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Config(format!("{} holds no PEM certificate ({e})", path.display()))
            })?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Transport(format!("setting up HTTPS: {e}")))?;
        Ok(Self {
            http,
            base: settings.base.clone(),
            timeout: settings.timeout,
        })
    }

    /// Asks the broker for `host`'s credential as `jwt`'s caller.
    pub(crate) async fn issue(
        &self,
        jwt: &SecretString,
        host: &EcrHost,
        narrowing: &Narrowing,
    ) -> Result<Credential, Error> {
        let body = serde_json::to_vec(&issue_body(host, narrowing)).expect("JSON serialises");
        let bytes = self
            .call(
                jwt,
                reqwest::Method::POST,
                "v1/ecr/authorization-token",
                Some(body),
            )
            .await?;
        credential_from(&bytes, host, Utc::now())
    }

    /// Asks the broker what `jwt`'s caller may ask for (`GET /v1/whoami`), issuing nothing.
    pub(crate) async fn whoami(&self, jwt: &SecretString) -> Result<Grant, Error> {
        let bytes = self
            .call(jwt, reqwest::Method::GET, "v1/whoami", None)
            .await?;
        grant_from(&bytes)
    }

    /// One API call as `jwt`'s caller, retried on a refused connection, 429 and 503 within
    /// the call's time budget: the body of its 2xx answer, or the error for the last one.
    async fn call(
        &self,
        jwt: &SecretString,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, Error> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Error::Config(format!("the broker's URL cannot take {path} ({e})")))?;
        let deadline = Instant::now() + self.timeout;
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(jwt.expose_secret())
                .header(ACCEPT, "application/json, application/problem+json")
                .timeout(remaining);
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let (status, headers, bytes) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    (status, headers, read_limited(response).await?)
                }
                Err(e) if e.is_connect() => {
                    let Some(wait) = next_wait(attempt, None, fastrand::f64(), remaining) else {
                        return Err(Error::Transport(format!(
                            "cannot connect to {url} after {attempt} attempt(s): {}",
                            error_chain(&e)
                        )));
                    };
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                Err(e) if e.is_timeout() => {
                    return Err(Error::Transport(format!(
                        "no answer from {url} within {}s",
                        self.timeout.as_secs()
                    )));
                }
                Err(e) => return Err(Error::Transport(error_chain(&e))),
            };
            if status.is_success() {
                return Ok(bytes);
            }
            let error = refusal(status, &headers, &bytes, jwt);
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                let advice = headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let remaining = deadline.saturating_duration_since(Instant::now());
                if let Some(wait) = next_wait(attempt, advice, fastrand::f64(), remaining) {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
            }
            return Err(error);
        }
    }
}

/// The issue request's body for one host, narrowed as configured.
fn issue_body(host: &EcrHost, narrowing: &Narrowing) -> Value {
    let mut body = json!({ "registries": [host.as_str()] });
    if let Some(access) = &narrowing.access {
        body["access"] = json!(access);
    }
    if let Some(repositories) = &narrowing.repositories {
        body["repositories"] = json!(repositories);
    }
    if let Some(seconds) = narrowing.duration_seconds {
        body["durationSeconds"] = json!(seconds);
    }
    body
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::Transport(format!("reading the answer: {}", error_chain(&e))))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Error::Transport(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes, as reqwest nests the one that says what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueResponse {
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: SecretString,
    expires_at: DateTime<Utc>,
    proxy_endpoint: String,
}

/// The credential for `host` in a 200 answer received at `now`.
fn credential_from(body: &[u8], host: &EcrHost, now: DateTime<Utc>) -> Result<Credential, Error> {
    let invalid = |why: &str| Error::Transport(format!("the broker's answer {why}"));
    let response: IssueResponse = serde_json::from_slice(body)
        .map_err(|_| invalid("is not the AuthorizationData JSON of the API"))?;
    let wanted = format!("https://{host}");
    let data = response
        .authorization_data
        .into_iter()
        .find(|d| {
            d.proxy_endpoint
                .trim_end_matches('/')
                .eq_ignore_ascii_case(&wanted)
        })
        .ok_or_else(|| invalid(&format!("holds no credential for {host}")))?;
    let decoded = STANDARD
        .decode(data.authorization_token.expose_secret())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| invalid("holds a token that is not base64 text"))?;
    let (username, password) = decoded
        .split_once(':')
        .filter(|(user, password)| !user.is_empty() && !password.is_empty())
        .ok_or_else(|| invalid("holds a token that is not USER:PASSWORD"))?;
    Ok(Credential::received(
        username.to_owned(),
        SecretString::from(password.to_owned()),
        data.expires_at,
        now,
    ))
}

/// What `/v1/whoami` says the caller may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The rule that matched.
    pub(crate) rule: String,
    /// The registries (account ids) the rule allows.
    pub(crate) registry_ids: Vec<String>,
    /// The regions the rule allows.
    pub(crate) regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WhoAmI {
    rule: Option<String>,
    allowed: Option<Allowed>,
    #[serde(default)]
    denied: bool,
    problem: Option<String>,
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Allowed {
    registry_ids: Vec<String>,
    regions: Vec<String>,
}

/// The grant in a 200 answer of `/v1/whoami`; an error when no rule allows the caller
/// anything, with the broker's reason.
fn grant_from(body: &[u8]) -> Result<Grant, Error> {
    let whoami: WhoAmI = serde_json::from_slice(body).map_err(|_| {
        Error::Transport("the broker's /v1/whoami answer is not the API's JSON".to_owned())
    })?;
    let refused = |detail: String| Error::NotAllowed {
        detail,
        request_id: RequestId(whoami.request_id.clone()),
    };
    match (whoami.rule, whoami.allowed) {
        _ if whoami.denied => Err(refused("this caller is on the deny list".to_owned())),
        (Some(rule), Some(allowed)) => Ok(Grant {
            rule,
            registry_ids: allowed.registry_ids,
            regions: allowed.regions,
        }),
        (Some(rule), None) => Err(refused(format!(
            "rule {rule} matches but cannot be applied: {}",
            whoami.problem.as_deref().unwrap_or("no reason given")
        ))),
        (None, _) => Err(refused("no rule matches this caller".to_owned())),
    }
}

/// The error for a non-2xx answer: the problem's `detail` (scrubbed of the JWT, should the
/// broker ever echo it), and the request id to find its audit row by.
fn refusal(status: StatusCode, headers: &HeaderMap, body: &[u8], jwt: &SecretString) -> Error {
    let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let detail = problem["detail"]
        .as_str()
        .or_else(|| problem["title"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no reason").to_owned())
        .replace(jwt.expose_secret(), "[redacted]")
        .replace(['\r', '\n'], " ");
    let request_id = RequestId(
        problem["requestId"]
            .as_str()
            .or_else(|| headers.get("x-request-id").and_then(|v| v.to_str().ok()))
            .map(str::to_owned),
    );
    let status = status.as_u16();
    if status == 401 || status == 403 {
        Error::Refused {
            status,
            detail,
            request_id,
        }
    } else {
        Error::Broker {
            status,
            detail,
            request_id,
        }
    }
}

#[cfg(test)]
mod tests;
