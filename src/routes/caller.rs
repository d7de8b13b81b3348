//! The caller of every endpoint behind a bearer token: its token verified, then one request
//! charged to its identity's budget before anything else is decided about it, or, when the
//! token fails, to the client's network. This is the only way a handler gets a [`Caller`],
//! so no endpoint can forget the charge.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::RequestMeta;
use crate::app::{AppState, Current};
use crate::auth::{AuthError, Caller, verify_bearer};
use crate::error::ApiError;
use crate::issuance::Unadmitted;
use crate::rate_limit::RateLimited;

/// Why a request has no caller to act for.
#[derive(Debug)]
pub(crate) enum CallerRefusal {
    /// No valid bearer token, within the client network's budget for such requests.
    Unauthenticated(AuthError),
    /// A verified caller over its budget, or a request without a valid token over its
    /// network's.
    OverBudget {
        /// Who, for the record, when the token verified.
        caller: Option<Caller>,
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
        let caller = match verify_bearer(parts, &current.verifier).await {
            Ok(caller) => caller,
            // Nobody to charge but the client's network.
            Err(error) => {
                let Ok(meta) = RequestMeta::from_request_parts(parts, state).await;
                let charged = current.rate_limits.check_unauthenticated(meta.client_addr);
                return Err(match charged {
                    Ok(()) => CallerRefusal::Unauthenticated(error),
                    Err(limited) => CallerRefusal::OverBudget {
                        caller: None,
                        limited,
                    },
                });
            }
        };
        let charged = current
            .rate_limits
            .charge(&caller, current.standing(&caller));
        match charged {
            Ok(()) => Ok(caller),
            Err(limited) => Err(CallerRefusal::OverBudget {
                caller: Some(caller),
                limited,
            }),
        }
    }
}

impl From<CallerRefusal> for ApiError {
    fn from(refusal: CallerRefusal) -> Self {
        Unadmitted::from(refusal).error
    }
}

impl From<CallerRefusal> for Unadmitted {
    fn from(refusal: CallerRefusal) -> Self {
        match refusal {
            CallerRefusal::Unauthenticated(error) => Self {
                caller: None,
                error: error.into(),
            },
            CallerRefusal::OverBudget { caller, limited } => Self {
                caller,
                error: limited.into(),
            },
        }
    }
}

impl IntoResponse for CallerRefusal {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
