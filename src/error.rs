//! The HTTP boundary's error type and its `application/problem+json` rendering (RFC 9457).
//!
//! Handlers return [`ApiError`]; it becomes a [`Problem`] carried in the response's
//! extensions, and the [`render_problems`] middleware writes every error body in one place,
//! with the request id, including errors raised outside handlers (unknown routes, body
//! limits, timeouts, panics).

mod problem;
mod rate_limited;

pub(crate) use problem::{Problem, ProblemType, render_problems};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::audit::{AuditError, Outcome};
use crate::auth::AuthError;
use crate::credentials::{AwsError, AwsErrorKind};
use crate::domain::WholeSeconds;
use crate::kill_switch::StaleDenyList;
use crate::policy::{Denial, Refusal};
use crate::rate_limit::RateLimited;

/// Seconds a caller should wait after a 503 before retrying.
const RETRY_AFTER_SECS: &str = "5";

/// Everything an API request can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: the request body or a parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 413: the body is larger than the configured limit.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 401: no valid bearer token.
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    /// 403: the caller is authenticated but no rule matches it.
    #[error("no rule allows this caller")]
    NoMatchingRule,
    /// 403: the caller is on the deny list (the config's or the stored one).
    #[error("this caller is denied by policy")]
    DeniedByPolicy,
    /// 403: the endpoint is for deny list admins, and the caller's rule is not an admin rule.
    #[error("only deny list admins may use this endpoint")]
    NotDenyAdmin,
    /// 404: no such deny entry.
    #[error("no such deny entry")]
    NoSuchDenyEntry,
    /// 403: the matched rule does not allow what was asked.
    #[error("{0}")]
    NotAllowed(#[from] Refusal),
    /// 403: the matched rule cannot be applied to this token's claims.
    #[error("{0}")]
    RuleUnusable(String),
    /// 403: the endpoint is for audit admins, and the caller's rule is not an admin rule.
    #[error("only audit admins may use this endpoint")]
    NotAuditAdmin,
    /// 429 with Retry-After and the RateLimit fields: the caller is over its rate limit.
    #[error("{0}")]
    RateLimited(#[from] RateLimited),
    /// 502, 503 (throttled or the upstream ceiling reached, with Retry-After) or 504
    /// (timeout): AWS failed, or the call was held back.
    #[error("{0}")]
    Aws(#[from] AwsError),
    /// 503 with Retry-After: the audit record could not be committed, so nothing was issued.
    #[error("the audit log is unavailable")]
    AuditUnavailable(#[source] AuditError),
    /// 503 with Retry-After: the stored deny list could not be read or changed.
    #[error("the stored deny list is unavailable")]
    DenyStoreUnavailable(#[source] sqlx::Error),
    /// 503 with Retry-After: the stored deny list was not read recently enough to trust it,
    /// so nobody can be cleared of it.
    #[error("{0}")]
    DenyListStale(#[from] StaleDenyList),
    /// 503 with Retry-After: the audit log could not be read.
    #[error("reading the audit log failed")]
    AuditUnreadable(#[source] sqlx::Error),
    /// 500: a bug; the cause is logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NoMatchingRule
            | Self::DeniedByPolicy
            | Self::NotDenyAdmin
            | Self::NotAllowed(_)
            | Self::RuleUnusable(_)
            | Self::NotAuditAdmin => StatusCode::FORBIDDEN,
            Self::NoSuchDenyEntry => StatusCode::NOT_FOUND,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Aws(e) => match e.kind {
                AwsErrorKind::Throttled | AwsErrorKind::Ceiling { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                AwsErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                AwsErrorKind::Refused { .. } | AwsErrorKind::Unavailable => StatusCode::BAD_GATEWAY,
            },
            Self::AuditUnavailable(_)
            | Self::AuditUnreadable(_)
            | Self::DenyStoreUnavailable(_)
            | Self::DenyListStale(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// How the audit log classifies this failure.
    pub(crate) fn outcome(&self) -> Outcome {
        if self.status().is_client_error() {
            Outcome::Denied
        } else {
            Outcome::Error
        }
    }

    /// The audit log's short reason.
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::BadRequest(_) => "bad_request".to_owned(),
            Self::PayloadTooLarge => "payload_too_large".to_owned(),
            Self::Unauthorized(e) => format!("invalid_token:{}", e.code()),
            Self::NoMatchingRule => "no_matching_rule".to_owned(),
            Self::DeniedByPolicy => "denied_by_policy".to_owned(),
            Self::NotDenyAdmin => "not_deny_admin".to_owned(),
            Self::NoSuchDenyEntry => "no_such_deny_entry".to_owned(),
            Self::NotAllowed(_) => "not_allowed".to_owned(),
            Self::RuleUnusable(_) => "rule_unusable".to_owned(),
            Self::NotAuditAdmin => "not_audit_admin".to_owned(),
            Self::RateLimited(limited) => limited.reason().to_owned(),
            Self::Aws(e) => e.reason(),
            Self::AuditUnavailable(_) | Self::AuditUnreadable(_) => "audit_unavailable".to_owned(),
            Self::DenyStoreUnavailable(_) => "deny_store_unavailable".to_owned(),
            Self::DenyListStale(_) => "deny_list_stale".to_owned(),
            Self::Internal(_) => "internal".to_owned(),
        }
    }

    fn problem(&self) -> Problem {
        let (kind, detail) = match self {
            Self::BadRequest(detail) => (ProblemType::BadRequest, detail.clone()),
            Self::PayloadTooLarge => (ProblemType::PayloadTooLarge, self.to_string()),
            Self::Unauthorized(e) => (ProblemType::InvalidToken, e.to_string()),
            Self::NoMatchingRule => (
                ProblemType::Forbidden,
                "the token is valid, but no rule maps its claims to a role".to_owned(),
            ),
            Self::DeniedByPolicy => (
                ProblemType::Forbidden,
                "the token is valid, but this caller is on the deny list".to_owned(),
            ),
            Self::NotDenyAdmin => (
                ProblemType::Forbidden,
                "only deny list admins may use this endpoint: the token's first matching rule is not one of [admin] rules"
                    .to_owned(),
            ),
            Self::NoSuchDenyEntry => (
                ProblemType::NotFound,
                "no deny entry has this id, or it was removed already".to_owned(),
            ),
            Self::NotAllowed(refusal) => (ProblemType::Forbidden, refusal.to_string()),
            Self::RuleUnusable(detail) => (ProblemType::Forbidden, detail.clone()),
            Self::NotAuditAdmin => (
                ProblemType::Forbidden,
                "only audit admins may use this endpoint: the token's first matching rule is not one of the audit admin rules"
                    .to_owned(),
            ),
            Self::RateLimited(limited) => (ProblemType::RateLimited, limited.to_string()),
            Self::Aws(e) => match &e.kind {
                AwsErrorKind::Throttled => (
                    ProblemType::AwsThrottled,
                    format!("AWS throttled {}; retry later", e.operation),
                ),
                AwsErrorKind::Timeout => (
                    ProblemType::AwsTimeout,
                    format!("AWS did not answer {} in time", e.operation),
                ),
                AwsErrorKind::Refused { code } => (
                    ProblemType::AwsRefused,
                    format!("AWS refused {} ({code})", e.operation),
                ),
                AwsErrorKind::Unavailable => (
                    ProblemType::AwsFailed,
                    format!("AWS {} failed", e.operation),
                ),
                AwsErrorKind::Ceiling { retry_after } => (
                    ProblemType::UpstreamCeiling,
                    format!(
                        "the broker's limit on {} calls to AWS is reached, so this one was not sent; retry in {} s",
                        e.operation,
                        WholeSeconds::from(*retry_after)
                    ),
                ),
            },
            Self::AuditUnavailable(_) => (
                ProblemType::AuditUnavailable,
                "the audit record could not be written, so no token was issued; retry later"
                    .to_owned(),
            ),
            Self::AuditUnreadable(_) => (
                ProblemType::AuditUnavailable,
                "the audit log could not be read; retry later".to_owned(),
            ),
            Self::DenyStoreUnavailable(_) => (
                ProblemType::DenyListUnavailable,
                "the stored deny list could not be read or changed, so nothing changed; retry later"
                    .to_owned(),
            ),
            Self::DenyListStale(_) => (
                ProblemType::DenyListUnavailable,
                "this replica has not read the stored deny list recently enough to trust it, so nothing was issued or changed; retry later"
                    .to_owned(),
            ),
            Self::Internal(_) => (
                ProblemType::Internal,
                "an unexpected error occurred".to_owned(),
            ),
        };
        Problem::new(self.status(), kind, detail)
    }
}

impl From<Denial> for ApiError {
    fn from(denial: Denial) -> Self {
        match denial {
            Denial::NotAllowed(refusal) => Self::NotAllowed(refusal),
            unusable @ Denial::Unusable { .. } => Self::RuleUnusable(unusable.to_string()),
            Denial::TooBroad(too_large) => Self::BadRequest(too_large.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            // Logged once, here, with its cause chain; the body stays generic.
            tracing::error!(error = %chain(&self), "request failed");
        }
        let mut response = self.problem().into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized(AuthError::Missing) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"ecr-token-broker\""),
                );
            }
            Self::Unauthorized(e) => {
                let challenge = format!(
                    "Bearer realm=\"ecr-token-broker\", error=\"invalid_token\", error_description=\"{e}\""
                );
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge).expect("static ASCII text"),
                );
            }
            Self::AuditUnavailable(_)
            | Self::AuditUnreadable(_)
            | Self::DenyStoreUnavailable(_)
            | Self::DenyListStale(_)
            | Self::Aws(AwsError {
                kind: AwsErrorKind::Throttled,
                ..
            }) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            Self::Aws(AwsError {
                kind: AwsErrorKind::Ceiling { retry_after },
                ..
            }) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(WholeSeconds::from(*retry_after).get()),
                );
            }
            Self::RateLimited(limited) => headers.extend(rate_limited::fields(limited)),
            _ => {}
        }
        response
    }
}

/// The error and its causes, `: `-separated, for the one log line a failure gets.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
