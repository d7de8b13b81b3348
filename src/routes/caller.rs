//! The caller of every endpoint behind a bearer token: its token verified, then one request
//! charged to its identity's budget before anything else is decided about it. This is the
//! only way a handler gets a [`Caller`], so no endpoint can forget the charge.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::app::{AppState, Current};
use crate::auth::{AuthError, Caller, verify_bearer};
use crate::error::ApiError;
use crate::rate_limit::RateLimited;

/// Why a request has no caller to act for.
#[derive(Debug)]
pub(crate) enum CallerRefusal {
    /// No valid bearer token: charged to the client's network, where the endpoint records
    /// refusals.
    Unauthenticated(AuthError),
    /// A verified caller over its budget.
    OverBudget {
        /// Who, for the record.
        caller: Caller,
        /// What the 429 says.
        limited: RateLimited,
    },
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = CallerRefusal;

    /// Extract it once per request: each extraction is a request charged.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, CallerRefusal> {
        let Ok(current) = Current::from_request_parts(parts, state).await;
        let caller = verify_bearer(parts, &current.verifier)
            .await
            .map_err(CallerRefusal::Unauthenticated)?;
        match current
            .rate_limits
            .charge(&caller, current.standing(&caller))
        {
            Ok(()) => Ok(caller),
            Err(limited) => Err(CallerRefusal::OverBudget { caller, limited }),
        }
    }
}

impl From<CallerRefusal> for ApiError {
    fn from(refusal: CallerRefusal) -> Self {
        match refusal {
            CallerRefusal::Unauthenticated(error) => error.into(),
            CallerRefusal::OverBudget { limited, .. } => limited.into(),
        }
    }
}

impl IntoResponse for CallerRefusal {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
