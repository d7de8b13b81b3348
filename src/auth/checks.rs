//! An issuer's checks beyond what jsonwebtoken does, run only on a token whose signature verified:
//! `typ`, `iat` and the token's age, and single use of each `jti` (a `jti` is taken only once a
//! rule admits the caller).

use jsonwebtoken::Header;
use serde_json::{Map, Value};

use super::AuthError;
use super::IssuerSettings;
use super::replay::{Replay, ReplayCache};
use crate::metrics::Metrics;

/// The checks of an issuer beyond jsonwebtoken's, run on a token whose signature verified.
pub(super) struct IssuerChecks {
    leeway_secs: u64,
    required_typ: Option<String>,
    max_token_age_secs: Option<u64>,
    replays: Option<ReplayCache>,
}

impl IssuerChecks {
    /// The checks `config` asks for; a replay cache shows its size in `metrics`.
    pub(super) fn new(config: &IssuerSettings, metrics: &Metrics) -> Self {
        Self {
            leeway_secs: config.leeway_secs,
            required_typ: config.required_typ.clone(),
            max_token_age_secs: config.max_token_age_secs,
            replays: config.reject_replayed_jti.then(|| {
                ReplayCache::new(config.jti_cache_capacity, metrics.jti_cache(&config.name))
            }),
        }
    }

    /// Checks `typ`, `iat` against now and the maximum age, and that the `jti` was not used
    /// before (taking no slot: see [`IssuerChecks::take_jti`]).
    pub(super) fn check(
        &self,
        header: &Header,
        claims: &Map<String, Value>,
    ) -> Result<(), AuthError> {
        if let Some(required) = &self.required_typ
            && !header
                .typ
                .as_deref()
                .is_some_and(|typ| same_type(typ, required))
        {
            return Err(AuthError::WrongType);
        }
        let now = jsonwebtoken::get_current_timestamp();
        let iat = claims.get("iat").map(numeric_date).transpose()?;
        if iat.is_some_and(|iat| iat > now.saturating_add(self.leeway_secs)) {
            return Err(AuthError::IssuedInFuture);
        }
        if let Some(max_age) = self.max_token_age_secs {
            let iat = iat.ok_or(AuthError::MissingClaim)?;
            if now.saturating_sub(iat) > max_age.saturating_add(self.leeway_secs) {
                return Err(AuthError::TooOld);
            }
        }
        if let Some(replays) = &self.replays {
            let jti = jti(claims)?;
            replays.check(jti, now).map_err(|_| AuthError::Replayed)?;
        }
        Ok(())
    }

    /// Uses the `jti` of a verified token whose caller a rule admits, when the issuer
    /// refuses replays: from now until the token expires, it is refused.
    pub(super) fn take_jti(
        &self,
        issuer: &str,
        subject: &str,
        claims: &Map<String, Value>,
    ) -> Result<(), AuthError> {
        let Some(replays) = &self.replays else {
            return Ok(());
        };
        let now = jsonwebtoken::get_current_timestamp();
        let exp = claims.get("exp").map_or(Ok(now), numeric_date)?;
        let until = exp.saturating_add(self.leeway_secs);
        replays
            .take(jti(claims)?, subject, until, now)
            .map_err(|replay| match replay {
                Replay::Seen => AuthError::Replayed,
                Replay::Full => {
                    tracing::warn!(
                        issuer,
                        "the jti replay cache is full: refusing the tokens of the caller holding the most"
                    );
                    AuthError::ReplayCacheFull
                }
            })
    }
}

/// The token's `jti`, which an issuer that refuses replays requires.
fn jti(claims: &Map<String, Value>) -> Result<&str, AuthError> {
    match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() => Ok(jti),
        _ => Err(AuthError::MissingClaim),
    }
}

/// Whether two `typ` values name the same media type: case-insensitively, with
/// `application/` implied where no `/` is written (RFC 7515, section 4.1.9).
fn same_type(actual: &str, required: &str) -> bool {
    let full = |typ: &str| {
        if typ.contains('/') {
            typ.to_ascii_lowercase()
        } else {
            format!("application/{}", typ.to_ascii_lowercase())
        }
    };
    full(actual) == full(required)
}

/// A NumericDate claim (seconds since the epoch, possibly fractional) in whole seconds.
pub(super) fn numeric_date(value: &Value) -> Result<u64, AuthError> {
    match value.as_f64() {
        // Finite and non-negative: the cast keeps the whole seconds.
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs as u64),
        _ => Err(AuthError::MissingClaim),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_typ_is_a_media_type() {
        assert!(same_type("JWT", "JWT"));
        assert!(same_type("jwt", "JWT"));
        assert!(same_type("application/JWT", "JWT"));
        assert!(same_type("JWT", "application/jwt"));
        assert!(!same_type("at+jwt", "JWT"));
        assert!(!same_type("text/jwt", "JWT"));
        assert!(!same_type("", "JWT"));
    }

    #[test]
    fn numeric_dates_are_non_negative_numbers() {
        assert_eq!(numeric_date(&json!(1_700_000_000)), Ok(1_700_000_000));
        assert_eq!(numeric_date(&json!(1_700_000_000.9)), Ok(1_700_000_000));
        for bad in [json!(-1), json!("1700000000"), json!(null), json!([1])] {
            assert_eq!(numeric_date(&bad), Err(AuthError::MissingClaim), "{bad}");
        }
    }
}
