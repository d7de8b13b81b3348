//! The bearer token of a request, verified with the request's snapshot's verifier.

use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{AuthError, Caller, Verifier};

/// Verifies `Authorization: Bearer <jwt>`. Requests reach this only through the HTTP edge's
/// caller extractor, which also charges the caller's budget.
pub(crate) async fn verify_bearer(parts: &Parts, verifier: &Verifier) -> Result<Caller, AuthError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // None, or several: ambiguous credentials are no credentials.
        return Err(if parts.headers.contains_key(AUTHORIZATION) {
            AuthError::Malformed
        } else {
            AuthError::Missing
        });
    };
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    verifier.verify(token.trim()).await
}
