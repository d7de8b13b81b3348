//! `Verifier`: every trusted issuer's validation, the token's `iss` picking the keys and settings
//! it is checked against, and `AuthError`, why a token was refused. A reload's `Verifier::renewed`
//! keeps each unchanged issuer with its keys and seen `jti`s. No claim is believed before the
//! signature and the standard claims are checked.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::checks::{IssuerChecks, numeric_date};
use super::expiring::digest;
use super::verified::{Verified, VerifiedTokens};
use super::{IssuerSettings, KeySet, KeySource, key_client};
use crate::metrics::Metrics;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a bearer token was not accepted. Each variant is a 401; the message is safe to show
/// the caller and never contains the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Not a well-formed JWT, too long, or an unsupported `alg` such as `none`.
    #[error("malformed token")]
    Malformed,
    /// The `iss` claim names no trusted issuer.
    #[error("token issuer is not trusted")]
    UnknownIssuer,
    /// The header's `alg` is not allowed for this issuer or does not fit the key.
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// No key of the issuer matches the token's `kid`.
    #[error("token signing key is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `aud` names none of the issuer's audiences.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A required claim (`exp`, `iss`, `aud`, `sub`; `iat` when the issuer bounds token age,
    /// `jti` when it refuses replays) is missing or has the wrong type.
    #[error("token lacks a required claim")]
    MissingClaim,
    /// The header's `crit` names extensions that must be understood; this service
    /// understands none (RFC 7515, section 4.1.11).
    #[error("token header names critical extensions that are not supported")]
    UnsupportedCritical,
    /// The header's `typ` is not the one the issuer requires.
    #[error("token type is not accepted")]
    WrongType,
    /// `iat` is in the future (beyond leeway).
    #[error("token is issued in the future")]
    IssuedInFuture,
    /// `iat` is older than the issuer's maximum token age.
    #[error("token is too old")]
    TooOld,
    /// The token's `jti` was accepted before, and the issuer refuses replays.
    #[error("token has been used before")]
    Replayed,
    /// The issuer refuses replays and remembers as many unexpired tokens as it may.
    #[error("token cannot be checked for replay now")]
    ReplayCacheFull,
}

impl AuthError {
    /// A short machine-readable reason for the audit log.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::Malformed => "malformed_token",
            Self::UnknownIssuer => "unknown_issuer",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim => "missing_claim",
            Self::UnsupportedCritical => "unsupported_crit",
            Self::WrongType => "wrong_typ",
            Self::IssuedInFuture => "issued_in_future",
            Self::TooOld => "too_old",
            Self::Replayed => "replayed",
            Self::ReplayCacheFull => "replay_cache_full",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The issuer's configured name.
    pub issuer: Arc<str>,
    /// The `sub` claim.
    pub subject: String,
    /// Every claim of the verified token.
    pub claims: Map<String, Value>,
}

#[cfg(test)]
impl Caller {
    /// A caller of `issuer` with these claims (an object holding `sub`), for unit tests.
    pub(crate) fn with_claims(issuer: &str, claims: Value) -> Self {
        let claims = claims.as_object().expect("claims are an object").clone();
        Self {
            issuer: issuer.into(),
            subject: claims["sub"].as_str().expect("a sub claim").to_owned(),
            claims,
        }
    }
}

enum Keys {
    Published(Arc<KeySet>),
    Shared(DecodingKey),
}

/// One trusted issuer: its validation settings and keys.
pub(crate) struct TrustedIssuer {
    name: Arc<str>,
    /// One `Validation` per allowed algorithm: jsonwebtoken wants a single key family per
    /// validation, and pinning the exact algorithm is stricter anyway.
    validations: Vec<(Algorithm, Validation)>,
    keys: Keys,
    /// What jsonwebtoken does not check: `typ`, `iat`, `jti`.
    checks: IssuerChecks,
    /// The config it was built from: a reload that leaves it unchanged keeps this issuer.
    config: IssuerSettings,
    /// The task keeping a published key set fresh, which ends with the issuer.
    refresh: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// How far `exp` and `nbf` may be off, as `validations` allow.
    leeway_secs: u64,
}

impl Drop for TrustedIssuer {
    fn drop(&mut self) {
        if let Some(refresh) = self.refresh.get() {
            refresh.abort();
        }
    }
}

impl TrustedIssuer {
    /// Builds the issuer from validated config.
    pub(crate) fn new(
        config: &IssuerSettings,
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let validations = config
            .algorithms
            .iter()
            .map(|&alg| {
                let mut validation = Validation::new(alg);
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&config.audiences);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                validation.validate_nbf = true;
                validation.leeway = config.leeway_secs;
                (alg, validation)
            })
            .collect();
        let keys = match &config.keys {
            KeySource::SharedSecret(secret) => {
                Keys::Shared(DecodingKey::from_secret(secret.bytes()))
            }
            source => Keys::Published(Arc::new(KeySet::new(
                source.clone(),
                &config.issuer,
                // Built here, once per issuer config: a reload that leaves the config (and
                // the CA file's certificates) unchanged keeps this issuer, client and all.
                match &config.ca {
                    Some(ca) => {
                        key_client(Some(ca)).with_context(|| format!("issuer {}", config.name))?
                    }
                    None => http.clone(),
                },
                config.jwks_min_refresh_interval,
                config.jwks_refresh,
                metrics.key_set(&config.name),
            ))),
        };
        Ok(Self {
            name: config.name.as_str().into(),
            validations,
            keys,
            checks: IssuerChecks::new(config, metrics),
            config: config.clone(),
            refresh: std::sync::OnceLock::new(),
            leeway_secs: config.leeway_secs,
        })
    }

    /// The issuer's configured name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The published key set, if keys are fetched rather than shared.
    pub(crate) fn key_set(&self) -> Option<&Arc<KeySet>> {
        match &self.keys {
            Keys::Published(set) => Some(set),
            Keys::Shared(_) => None,
        }
    }

    /// Which set of keys is in use (always 0 for a shared secret).
    fn key_generation(&self) -> u64 {
        match &self.keys {
            Keys::Shared(_) => 0,
            Keys::Published(set) => set.generation(),
        }
    }

    /// Verifies `token` in full: signature, claims and the issuer's checks.
    async fn verify(
        self: &Arc<Self>,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<Verified, AuthError> {
        let Some((_, validation)) = self.validations.iter().find(|(alg, _)| *alg == header.alg)
        else {
            return Err(AuthError::AlgorithmNotAllowed);
        };
        // Read before the key is found: if the set is replaced meanwhile, what this key
        // verifies is remembered as of the older set, and verified in full again.
        let key_generation = self.key_generation();
        let key = match &self.keys {
            Keys::Shared(key) => key.clone(),
            Keys::Published(set) => set
                .find(header.kid.as_deref(), header.alg)
                .await
                .ok_or(AuthError::UnknownKey)?,
        };
        // The key's family must fit the alg: this is what stops an RSA public key from being
        // used as an HMAC secret.
        if key.family() != header.alg.family() {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::UnknownIssuer,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::UnsupportedAlgorithm => AuthError::AlgorithmNotAllowed,
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                    AuthError::MissingClaim
                }
                _ => AuthError::Malformed,
            },
        )?;
        let subject = match data.claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(AuthError::MissingClaim),
        };
        // jsonwebtoken rounds a fractional date and this truncates it: an `exp` remembered a
        // second early, never late.
        let date = |name| data.claims.get(name).map(numeric_date).transpose();
        let exp = date("exp")?.ok_or(AuthError::MissingClaim)?;
        let nbf = date("nbf")?;
        self.checks.check(header, &data.claims)?;
        Ok(Verified {
            issuer: self.clone(),
            key_generation,
            header: header.clone(),
            caller: Caller {
                issuer: self.name.clone(),
                subject,
                claims: data.claims,
            },
            exp,
            nbf,
        })
    }

    /// Runs again, for a remembered token, every check that depends on more than the token.
    /// `None` when the remembered verification no longer stands (the key set that verified
    /// it was replaced, or by the clock `exp` or `nbf` fail now): then the token is verified
    /// in full, which gives the authoritative answer.
    fn recheck(&self, verified: &Verified, now: u64) -> Option<Result<Caller, AuthError>> {
        let expired = verified.exp < now.saturating_sub(self.leeway_secs);
        let early = verified
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway_secs));
        if expired || early || verified.key_generation != self.key_generation() {
            return None;
        }
        Some(
            self.checks
                .check(&verified.header, &verified.caller.claims)
                .map(|()| verified.caller.clone()),
        )
    }
}

/// Verifies tokens of every trusted issuer.
pub(crate) struct Verifier {
    by_iss: HashMap<String, Arc<TrustedIssuer>>,
    /// Tokens these issuers verified lately; a new `Verifier` starts with none.
    verified: VerifiedTokens,
}

#[derive(Deserialize)]
struct UnverifiedIssuer {
    iss: String,
}

impl Verifier {
    /// Builds verifiers for every configured issuer.
    pub(crate) fn new(
        issuers: &[IssuerSettings],
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        Self::keeping(None, issuers, http, metrics)
    }

    /// The verifier of a reloaded config: an issuer whose config did not change is kept as
    /// it is, with its loaded keys, their refresh and the `jti`s it has seen; only new and
    /// changed issuers are built afresh (and their keys fetched once started).
    pub(crate) fn renewed(
        &self,
        issuers: &[IssuerSettings],
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        Self::keeping(Some(self), issuers, http, metrics)
    }

    fn keeping(
        old: Option<&Self>,
        issuers: &[IssuerSettings],
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let by_iss = issuers
            .iter()
            .map(|c| {
                let kept = old
                    .and_then(|old| old.by_iss.get(&c.issuer))
                    .filter(|existing| existing.config == *c);
                let issuer = match kept {
                    Some(existing) => Arc::clone(existing),
                    None => Arc::new(TrustedIssuer::new(c, http, metrics)?),
                };
                Ok((c.issuer.clone(), issuer))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            by_iss,
            verified: VerifiedTokens::new(),
        })
    }

    /// How many of this verifier's issuers are the very ones of `other`.
    pub(crate) fn shared_with(&self, other: &Self) -> usize {
        self.by_iss
            .iter()
            .filter(|(iss, issuer)| {
                other
                    .by_iss
                    .get(*iss)
                    .is_some_and(|o| Arc::ptr_eq(o, issuer))
            })
            .count()
    }

    /// Every trusted issuer.
    pub(crate) fn issuers(&self) -> impl Iterator<Item = &Arc<TrustedIssuer>> {
        self.by_iss.values()
    }

    /// Each issuer's name and whether its keys are loaded (a shared secret always is),
    /// sorted by name.
    pub(crate) fn key_states(&self) -> Vec<(&str, bool)> {
        let mut states: Vec<_> = self
            .issuers()
            .map(|i| (i.name(), i.key_set().is_none_or(|set| set.is_loaded())))
            .collect();
        states.sort_unstable();
        states
    }

    /// Starts, for each published key set that has none yet, the background task that
    /// keeps its keys fresh; it ends when its issuer is dropped (a reload that removed or
    /// changed it, once no request uses the old one any more).
    pub(crate) fn spawn_key_refresh(&self) {
        for issuer in self.issuers() {
            if let Some(set) = issuer.key_set() {
                issuer
                    .refresh
                    .get_or_init(|| tokio::spawn(Arc::clone(set).keep_fresh()).abort_handle());
            }
        }
    }

    /// Verifies a bearer token completely, or says why not. A token that verified lately is
    /// spared its signature check, and only that ([`super::verified`]).
    pub(crate) async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let digest = digest(token);
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(verified) = self.verified.get(&digest, now) {
            match verified.issuer.recheck(&verified, now) {
                Some(checked) => return checked,
                None => self.verified.remove(&digest),
            }
        }
        // Fails for `alg: none` and anything else jsonwebtoken does not implement.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        // No extension is understood here, so any critical one makes the token invalid.
        if header.crit.is_some() {
            return Err(AuthError::UnsupportedCritical);
        }
        // Read `iss` unverified only to choose whose keys to verify with; `decode` then checks
        // it again against that issuer.
        let UnverifiedIssuer { iss } = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| AuthError::Malformed)?;
        let issuer = self.by_iss.get(&iss).ok_or(AuthError::UnknownIssuer)?;
        let verified = issuer.verify(token, &header).await?;
        let caller = verified.caller.clone();
        self.verified.insert(digest, verified, now);
        Ok(caller)
    }

    /// Uses the caller's token once, when its issuer refuses replays: called when a rule
    /// admits the caller and it acts on that, so that only admitted tokens take a slot of
    /// the replay cache. From then on, the token is refused as replayed.
    pub(crate) fn take_jti(&self, caller: &Caller) -> Result<(), AuthError> {
        let issuer = caller
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .and_then(|iss| self.by_iss.get(iss))
            .ok_or(AuthError::UnknownIssuer)?;
        issuer
            .checks
            .take_jti(&issuer.name, &caller.subject, &caller.claims)
    }
}

#[cfg(test)]
mod tests;
