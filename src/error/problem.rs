use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::request_id::REQUEST_ID_HEADER;

/// Where problem types are documented; a slug is appended.
pub const PROBLEM_BASE: &str = "https://ecr-token-broker.dev/problems/";
const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem, before the request id is filled in.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
}

impl Problem {
    /// A problem of type `slug`.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
        }
    }

    /// The problem for an error response produced outside our handlers.
    fn for_status(status: StatusCode) -> Self {
        let (slug, title, detail) = match status {
            StatusCode::NOT_FOUND => ("not-found", "Not found", "no such endpoint"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method-not-allowed",
                "Method not allowed",
                "this endpoint does not take that method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload-too-large",
                "Request body too large",
                "request body is too large",
            ),
            StatusCode::GATEWAY_TIMEOUT => (
                "timeout",
                "Request timed out",
                "the request took too long and was abandoned",
            ),
            s if s.is_client_error() => (
                "bad-request",
                "Malformed request",
                "the request could not be understood",
            ),
            _ => ("internal", "Internal error", "an unexpected error occurred"),
        };
        Self::new(status, slug, title, detail)
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
        let body = Body {
            r#type: format!("{PROBLEM_BASE}{}", self.slug),
            title: self.title,
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
pub async fn render_problems(request: Request, next: Next) -> Response {
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
