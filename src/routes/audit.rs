//! The audit log over HTTP: a caller's own issuance records, every record for audit admins,
//! and, for audit admins, whether a token was issued here.

mod issuances;
mod lookup;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::caller::{CallerRefusal, Charged};
use crate::app::{AppState, Current};
use crate::audit::Scope;
use crate::auth::Caller;

/// How the API shows a time, to the microsecond (the deny list's entries too).
pub(super) use crate::audit::instant;

pub(super) fn router() -> super::Routes {
    super::Routes::new()
        .get("/v1/audit/issuances", issuances::get_issuances)
        .post("/v1/audit/lookup", lookup::post_lookup)
}

/// A verified caller reading the audit log, and whether it is an audit admin.
struct AuditReader {
    caller: Caller,
    admin: bool,
}

impl AuditReader {
    /// Whose records this reader may see: an admin every record, anyone else its own.
    fn scope(&self) -> Scope {
        if self.admin {
            Scope::Everyone
        } else {
            Scope::Caller {
                issuer: self.caller.issuer.to_string(),
                subject: self.caller.subject.clone(),
            }
        }
    }
}

impl FromRequestParts<AppState> for AuditReader {
    type Rejection = CallerRefusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, CallerRefusal> {
        let Ok(current) = Current::from_request_parts(parts, state).await;
        let Charged { caller, admission } = Charged::from_request_parts(parts, state).await?;
        // The kill switch takes an admin's powers too, and a list too old to trust clears
        // nobody of it.
        let admin =
            admission.denied_by() == Ok(None) && admission.is_admitted_by(&current.audit_admins);
        // Reading one's own records needs no rule; reading everyone's acts on one.
        if admin {
            current
                .verifier
                .take_jti(&caller)
                .map_err(CallerRefusal::Unauthenticated)?;
        }
        Ok(Self { caller, admin })
    }
}
