//! A registry credential: what the broker answers and the cache keeps, and when it is due
//! for renewal. How one is obtained is `obtain`'s; this module knows neither the broker nor
//! the cache.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

/// A user name and password for one registry, and how long they hold.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    /// Always `AWS` for ECR.
    pub(crate) username: String,
    /// The registry password; a secret.
    pub(crate) password: SecretString,
    /// When the broker says it stops working.
    pub(crate) expires_at: DateTime<Utc>,
    /// Half its life after it was received: from then on a fresh one is fetched.
    pub(crate) refresh_at: DateTime<Utc>,
}

impl Credential {
    /// A credential received at `now`, fresh until half its remaining life has passed.
    pub(crate) fn received(
        username: String,
        password: SecretString,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        let life = (expires_at - now).max(chrono::TimeDelta::zero());
        Self {
            username,
            password,
            expires_at,
            refresh_at: now + life / 2,
        }
    }

    /// How long it may still be used from `now` before a fresh one is due (zero once due).
    pub(crate) fn fresh_for(&self, now: DateTime<Utc>) -> std::time::Duration {
        (self.refresh_at - now).to_std().unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A moment given in RFC 3339.
    pub(crate) fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().into()
    }

    /// A credential with `password` expiring at `expires_at`, received at `now`.
    pub(crate) fn credential(password: &str, expires_at: &str, now: DateTime<Utc>) -> Credential {
        Credential::received(
            "AWS".to_owned(),
            SecretString::from(password.to_owned()),
            at(expires_at),
            now,
        )
    }

    #[test]
    fn fresh_for_half_its_life() {
        let now = at("2026-11-23T12:00:00Z");
        let c = credential("p", "2026-11-23T12:30:00Z", now);
        assert_eq!(c.refresh_at, at("2026-11-23T12:15:00Z"));
        assert_eq!(c.fresh_for(now).as_secs(), 900);
        assert_eq!(c.fresh_for(at("2026-11-23T12:14:00Z")).as_secs(), 60);
        assert_eq!(c.fresh_for(at("2026-11-23T12:15:00Z")).as_secs(), 0);
        assert_eq!(c.fresh_for(at("2026-11-23T13:00:00Z")).as_secs(), 0);
    }

    #[test]
    fn an_expired_credential_is_never_fresh() {
        let now = at("2026-11-23T12:00:00Z");
        let c = credential("p", "2015-01-01T00:00:00Z", now);
        assert_eq!(c.refresh_at, now);
        assert_eq!(c.fresh_for(now).as_secs(), 0);
    }
}
