use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{AuthError, Caller};
use crate::app::{AppState, Current};

/// Extracts and verifies `Authorization: Bearer <jwt>` with the request's snapshot's
/// verifier. Take it as `Result<Caller, AuthError>` in handlers that must record refusals too.
impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(current) = Current::from_request_parts(parts, state).await;
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
        current.verifier.verify(token.trim()).await
    }
}
