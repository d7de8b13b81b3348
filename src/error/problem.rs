//! RFC 9457 problem+json: `ProblemType`, the one table of problem slugs and titles that
//! openapi.yaml documents, and `render_problems`, the middleware that rewrites every error
//! response, axum's own rejections, 404s and timeouts included, into a problem carrying the request
//! id.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::one_line;
use crate::request_id::REQUEST_ID_HEADER;

/// Where problem types are documented; a slug is appended.
pub(crate) const PROBLEM_BASE: &str = "https://ecr-token-broker.dev/problems/";
const PROBLEM_JSON: &str = "application/problem+json";

/// The kinds of problem the service reports, each with the slug that ends its `type` and its
/// title: the one table of them, which openapi.yaml documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemType {
    /// 400, or any 4xx raised outside the handlers.
    BadRequest,
    /// 401.
    InvalidToken,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 413.
    PayloadTooLarge,
    /// 431.
    HeadersTooLarge,
    /// 500, or any 5xx raised outside the handlers.
    Internal,
    /// 502: AWS refused the call.
    AwsRefused,
    /// 502: AWS failed or answered with something unusable.
    AwsFailed,
    /// 503.
    AuditUnavailable,
    /// 503.
    AwsThrottled,
    /// 503: the stored deny list could not be read or changed.
    DenyListUnavailable,
    /// 503, from the readiness check.
    NotReady,
    /// 429: the caller's token bucket is empty.
    RateLimited,
    /// 503: the broker's own ceiling on AWS calls is reached.
    UpstreamCeiling,
    /// 504: an AWS call timed out.
    AwsTimeout,
    /// 504: the whole request timed out.
    Timeout,
}

impl ProblemType {
    /// The slug and the title.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest => ("bad-request", "Malformed request"),
            Self::InvalidToken => ("invalid-token", "Invalid or missing bearer token"),
            Self::Forbidden => ("forbidden", "Not allowed"),
            Self::NotFound => ("not-found", "Not found"),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            Self::PayloadTooLarge => ("payload-too-large", "Request body too large"),
            Self::HeadersTooLarge => ("headers-too-large", "Request headers too large"),
            Self::Internal => ("internal", "Internal error"),
            Self::AwsRefused => ("aws-error", "AWS refused"),
            Self::AwsFailed => ("aws-error", "AWS failed"),
            Self::AuditUnavailable => ("audit-unavailable", "Audit log unavailable"),
            Self::AwsThrottled => ("aws-throttled", "AWS is throttling"),
            Self::DenyListUnavailable => ("deny-list-unavailable", "Deny list unavailable"),
            Self::NotReady => ("not-ready", "Not ready"),
            Self::RateLimited => ("rate-limited", "Too many requests"),
            Self::UpstreamCeiling => ("upstream-ceiling", "Too many AWS calls at once"),
            Self::AwsTimeout => ("aws-timeout", "AWS timed out"),
            Self::Timeout => ("timeout", "Request timed out"),
        }
    }
}

/// `text` as it is when it is one line, else [`one_line`]. The line terminators are those of
/// JSON Schema's `.` (ECMAScript's): line feed, carriage return, U+2028 and U+2029.
fn single_line(text: String) -> String {
    if text.contains(['\n', '\r', '\u{2028}', '\u{2029}']) {
        one_line(&text)
    } else {
        text
    }
}

/// An RFC 9457 problem, before the request id is filled in.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    status: StatusCode,
    kind: ProblemType,
    detail: String,
}

impl Problem {
    /// A problem of type `kind`. `detail` is made one line: a message may quote what the
    /// request sent (a claim's name, a pattern) or a parser's message laid out over lines,
    /// and a client, a log or a header reading the detail should get one line all the same.
    pub(crate) fn new(status: StatusCode, kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: single_line(detail.into()),
        }
    }

    /// The problem for an error response produced outside our handlers.
    fn for_status(status: StatusCode) -> Self {
        let (kind, detail) = match status {
            StatusCode::NOT_FOUND => (ProblemType::NotFound, "no such endpoint"),
            StatusCode::METHOD_NOT_ALLOWED => (
                ProblemType::MethodNotAllowed,
                "this endpoint does not take that method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                (ProblemType::PayloadTooLarge, "request body is too large")
            }
            StatusCode::GATEWAY_TIMEOUT => (
                ProblemType::Timeout,
                "the request took too long and was abandoned",
            ),
            s if s.is_client_error() => (
                ProblemType::BadRequest,
                "the request could not be understood",
            ),
            _ => (ProblemType::Internal, "an unexpected error occurred"),
        };
        Self::new(status, kind, detail)
    }

    fn render(self, request_id: String, mut response: Response) -> Response {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            r#type: String,
            title: &'static str,
            status: u16,
            detail: String,
            request_id: String,
        }
        let (slug, title) = self.kind.names();
        let body = Body {
            r#type: format!("{PROBLEM_BASE}{slug}"),
            title,
            status: self.status.as_u16(),
            detail: self.detail,
            request_id,
        };
        let json = serde_json::to_vec(&body).expect("problem serialises");
        let (mut parts, _) = response.into_parts();
        parts.status = self.status;
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        parts
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        parts.headers.remove(header::CONTENT_LENGTH);
        response = Response::from_parts(parts, json.into());
        response
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Writes every error response as problem+json with the request's id.
pub(crate) async fn render_problems(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut response = next.run(request).await;
    if let Some(problem) = response.extensions_mut().remove::<Problem>() {
        return problem.render(request_id, response);
    }
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == PROBLEM_JSON);
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        return Problem::for_status(status).render(request_id, response);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_is_documented_with_its_slug_and_title() {
        let contract = include_str!("../../openapi.yaml");
        for kind in [
            ProblemType::BadRequest,
            ProblemType::InvalidToken,
            ProblemType::Forbidden,
            ProblemType::NotFound,
            ProblemType::MethodNotAllowed,
            ProblemType::PayloadTooLarge,
            ProblemType::HeadersTooLarge,
            ProblemType::Internal,
            ProblemType::AwsRefused,
            ProblemType::AwsFailed,
            ProblemType::AuditUnavailable,
            ProblemType::AwsThrottled,
            ProblemType::NotReady,
            ProblemType::RateLimited,
            ProblemType::UpstreamCeiling,
            ProblemType::AwsTimeout,
            ProblemType::Timeout,
        ] {
            let (slug, title) = kind.names();
            let row = contract
                .lines()
                .find(|line| line.trim_start().starts_with(&format!("| `{slug}` |")))
                .unwrap_or_else(|| panic!("no row for {slug} in openapi.yaml"));
            assert!(row.contains(&format!("`{title}`")), "{kind:?}: {row}");
            assert!(
                contract.contains(&format!("- {PROBLEM_BASE}{slug}\n")),
                "{slug} is not in the type's enum"
            );
        }
    }

    #[test]
    fn a_detail_is_one_line_whatever_it_quotes() {
        let detail = |text: &str| {
            Problem::new(StatusCode::BAD_REQUEST, ProblemType::BadRequest, text).detail
        };
        assert_eq!(detail("token has expired"), "token has expired");
        // A regex error is laid out over lines; a claim's name may hold any of them.
        assert_eq!(
            detail(
                "claims.a\u{2028}b: regex parse error:\n    ^(?:[)$\n       ^\nerror: unclosed\r\n"
            ),
            "claims.a b: regex parse error: ^(?:[)$ ^ error: unclosed"
        );
        assert_eq!(detail("two  spaces\tand a tab"), "two  spaces\tand a tab");
    }
}
