use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use crate::request_id::{CallerRequestId, REQUEST_ID_HEADER};

/// Facts about the request that the audit log and response bodies need.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The `x-request-id` (always set by the request-id middleware).
    pub request_id: String,
    /// The caller's own `x-request-id`, when it sent a usable one.
    pub caller_request_id: Option<String>,
    /// The peer's address.
    pub client_addr: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Self {
            request_id: header(REQUEST_ID_HEADER).unwrap_or_default(),
            caller_request_id: parts
                .extensions
                .get::<CallerRequestId>()
                .map(|c| c.0.clone()),
            client_addr: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
            user_agent: header(USER_AGENT.as_str()),
        })
    }
}
