//! The request id: the header that carries it, and what becomes of a caller's own.
//!
//! Every layer that reads the id (middleware, error rendering, handlers) takes the header's
//! name from here, a module that depends on nothing else in the crate.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The request id header, set on every request and response.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// The `x-request-id` a caller sent, when it was usable: recorded and logged beside the
/// request's own id, never as it, so that no caller can plant another request's id in the
/// audit log or the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallerRequestId(pub String);

/// Takes the caller's `x-request-id` off the request, so that the id layer always generates
/// the request's own. The caller's value is kept as a [`CallerRequestId`] extension only if
/// it is the only one and short and plain, so it cannot forge log lines or carry a secret
/// into them.
pub(crate) async fn take_caller_request_id(mut request: Request, next: Next) -> Response {
    let usable = |v: &HeaderValue| {
        (1..=128).contains(&v.len())
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    let single = request.headers().get_all(REQUEST_ID_HEADER).iter().count() == 1;
    let caller = request
        .headers_mut()
        .remove(REQUEST_ID_HEADER)
        .filter(|v| single && usable(v))
        .and_then(|v| v.to_str().ok().map(str::to_owned));
    if let Some(caller) = caller {
        request.extensions_mut().insert(CallerRequestId(caller));
    }
    next.run(request).await
}
