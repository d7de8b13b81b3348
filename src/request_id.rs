//! The request id: the header that carries it, and which ids a caller may choose.
//!
//! Every layer that reads the id (middleware, error rendering, handlers) takes the header's
//! name from here, a module that depends on nothing else in the crate.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The request id header, set on every request and response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A caller's request id is kept only if it is short and plain, so it cannot forge log
/// lines or carry a secret into them; otherwise a fresh one is generated.
pub async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
    let usable = |v: &HeaderValue| {
        (1..=128).contains(&v.len())
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    if request.headers().get_all(REQUEST_ID_HEADER).iter().count() > 1
        || request
            .headers()
            .get(REQUEST_ID_HEADER)
            .is_some_and(|v| !usable(v))
    {
        request.headers_mut().remove(REQUEST_ID_HEADER);
    }
    next.run(request).await
}
