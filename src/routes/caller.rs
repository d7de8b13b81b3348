//! The caller of every endpoint behind a bearer token: its token verified, then one request
//! charged to its identity's budget before anything else is decided about it, or, when the
//! token fails, to the client's network. This is the only way a handler gets a [`Caller`],
//! so no endpoint can forget the charge. Where the caller stands with the rules and the
//! deny lists, which decides whose budget it spends, is decided here once and handed on
//! ([`Charged`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::RequestMeta;
use crate::app::{AppState, Current};
use crate::auth::{AuthError, Caller, verify_bearer};
use crate::error::ApiError;
use crate::issuance::Unadmitted;
use crate::kill_switch::Admission;
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

/// A verified caller, charged, with where it stands under the request's snapshot
/// ([`Admission`]): what the admins' checks and the issuing path read instead of matching
/// the rules and the deny lists again.
pub(crate) struct Charged {
    pub caller: Caller,
    pub admission: Admission,
}

impl FromRequestParts<AppState> for Charged {
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
        let admission = current.admission(&caller);
        match current.rate_limits.charge(&caller, admission.standing()) {
            Ok(()) => Ok(Self { caller, admission }),
            Err(limited) => Err(CallerRefusal::OverBudget {
                caller: Some(caller),
                limited,
            }),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = CallerRefusal;

    /// The caller of a [`Charged`] request, for handlers that need no more of it.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, CallerRefusal> {
        Charged::from_request_parts(parts, state)
            .await
            .map(|charged| charged.caller)
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
