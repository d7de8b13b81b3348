//! `[[issuers]]`: each entry parsed into the `auth::IssuerSettings` the verifier runs on,
//! with its one key source, its URLs checked, its CA file and shared secret read. Fetches no
//! key: that is `auth`'s, once the service starts.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use secrecy::SecretString;
use serde::Deserialize;

use super::errors::Findings;
use crate::auth::{CaBundle, FetchableUrl, IssuerSettings, KeySource, SharedSecret};

/// `[[issuers]]` as the file spells it: one trusted identity provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    /// Short name that rules refer to.
    pub(super) name: String,
    /// The exact `iss` claim of its tokens.
    pub(super) issuer: String,
    /// Where its JSON Web Key Set is served.
    jwks_uri: Option<String>,
    /// Find `jwks_uri` through OIDC discovery at `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    discovery: bool,
    /// A JWKS document on disk.
    jwks_file: Option<PathBuf>,
    /// Environment variable holding an HMAC secret, for issuers that sign with HS*.
    shared_secret_env: Option<String>,
    /// PEM file of certificate authorities trusted for this issuer's discovery and key URLs,
    /// in addition to the system's roots (a corporate CA the system does not trust).
    ca_file: Option<PathBuf>,
    /// Accepted `aud` values; a token must carry one of them.
    pub(super) audiences: Vec<String>,
    /// Accepted signing algorithms.
    algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    leeway_secs: u64,
    /// How often keys are refetched in the background.
    #[serde(default = "default_jwks_refresh")]
    jwks_refresh_secs: u64,
    /// An unknown `kid` triggers a refetch at most this often.
    #[serde(default = "default_jwks_min_refresh")]
    jwks_min_refresh_interval_secs: u64,
    /// The header `typ` every token must carry, such as `JWT`; unset: any or none.
    required_typ: Option<String>,
    /// Tokens issued (`iat`) longer ago than this are refused; unset: only `exp` bounds a
    /// token's life.
    max_token_age_secs: Option<u64>,
    /// Accept each `jti` once, until its token expires; tokens without one are refused.
    #[serde(default)]
    reject_replayed_jti: bool,
    /// How many `jti`s of unexpired tokens are remembered; when all are taken, new tokens
    /// are refused until some expire.
    #[serde(default = "default_jti_cache_capacity")]
    jti_cache_capacity: usize,
}

fn default_leeway() -> u64 {
    60
}

fn default_jwks_refresh() -> u64 {
    300
}

fn default_jwks_min_refresh() -> u64 {
    30
}

fn default_jti_cache_capacity() -> usize {
    100_000
}

/// Parses every issuer; those with a problem (in `f`) are left out.
pub(super) fn issuers(
    raw: &[RawIssuer],
    env: &impl Fn(&str) -> Option<String>,
    f: &mut Findings,
) -> Vec<IssuerSettings> {
    f.check(
        !raw.is_empty(),
        "issuers",
        "at least one [[issuers]] entry is required",
    );
    let mut names = HashSet::new();
    let mut iss_values = HashSet::new();
    let mut parsed = Vec::new();
    for (i, issuer) in raw.iter().enumerate() {
        let at = format!("issuers[{i}]");
        f.unique_name(&issuer.name, &at, "issuer", &mut names);
        f.check(
            iss_values.insert(issuer.issuer.clone()),
            format!("{at}.issuer"),
            format!("issuer {:?} is configured twice", issuer.issuer),
        );
        parsed.extend(issuer_entry(issuer, &at, env, f));
    }
    parsed
}

/// Parses one issuer at `at`.
fn issuer_entry(
    issuer: &RawIssuer,
    at: &str,
    env: &impl Fn(&str) -> Option<String>,
    f: &mut Findings,
) -> Option<IssuerSettings> {
    let ca = match &issuer.ca_file {
        Some(path) => match CaBundle::read(path) {
            Ok(bundle) => Some(bundle),
            Err(problem) => {
                f.check(false, format!("{at}.ca_file"), problem);
                None
            }
        },
        None => None,
    };
    f.check(
        !issuer.audiences.is_empty(),
        format!("{at}.audiences"),
        "at least one audience is required",
    );
    f.check(
        !issuer.algorithms.is_empty(),
        format!("{at}.algorithms"),
        "at least one algorithm is required",
    );
    f.check(
        issuer.leeway_secs <= 300,
        format!("{at}.leeway_secs"),
        "must be at most 300",
    );
    f.at_least(
        issuer.jwks_refresh_secs,
        10,
        format!("{at}.jwks_refresh_secs"),
    );
    f.at_least(
        issuer.jwks_min_refresh_interval_secs,
        1,
        format!("{at}.jwks_min_refresh_interval_secs"),
    );
    f.check(
        issuer
            .required_typ
            .as_ref()
            .is_none_or(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())),
        format!("{at}.required_typ"),
        "must be a media type such as \"JWT\" (printable ASCII, no spaces)",
    );
    if let Some(age) = issuer.max_token_age_secs {
        f.at_least(age, 1, format!("{at}.max_token_age_secs"));
    }
    f.within(
        issuer.jti_cache_capacity,
        1..=10_000_000,
        format!("{at}.jti_cache_capacity"),
    );
    let keys = key_source(issuer, at, env, f);
    f.check(
        issuer.ca_file.is_none() || keys.as_ref().is_some_and(KeySource::is_fetched),
        format!("{at}.ca_file"),
        "only applies to keys fetched over https (jwks_uri or discovery = true)",
    );
    Some(IssuerSettings {
        name: issuer.name.clone(),
        issuer: issuer.issuer.clone(),
        keys: keys?,
        ca,
        audiences: issuer.audiences.clone(),
        algorithms: issuer.algorithms.clone(),
        leeway_secs: issuer.leeway_secs,
        jwks_refresh: Duration::from_secs(issuer.jwks_refresh_secs),
        jwks_min_refresh_interval: Duration::from_secs(issuer.jwks_min_refresh_interval_secs),
        required_typ: issuer.required_typ.clone(),
        max_token_age_secs: issuer.max_token_age_secs,
        reject_replayed_jti: issuer.reject_replayed_jti,
        jti_cache_capacity: issuer.jti_cache_capacity,
    })
}

/// The issuer's one key source, with the algorithms that fit it; `None` (the problem in
/// `f`) when there is none, or it does not hold.
fn key_source(
    issuer: &RawIssuer,
    at: &str,
    env: &impl Fn(&str) -> Option<String>,
    f: &mut Findings,
) -> Option<KeySource> {
    let hmac = |a: &Algorithm| a.family() == AlgorithmFamily::Hmac;
    let fetchable = |field: &str, url: &str, f: &mut Findings| {
        let parsed = FetchableUrl::parse(url);
        f.check(
            parsed.is_some(),
            format!("{at}.{field}"),
            format!("{url:?} must be an https:// URL (http:// only for loopback addresses)"),
        );
        parsed
    };
    let source = match (
        &issuer.jwks_uri,
        issuer.discovery,
        &issuer.jwks_file,
        &issuer.shared_secret_env,
    ) {
        (None, false, None, Some(var)) => {
            f.check(
                issuer.algorithms.iter().all(hmac),
                format!("{at}.algorithms"),
                "an issuer with shared_secret_env may only use HS256, HS384 or HS512",
            );
            let secret = SharedSecret::new(var, env(var).map(SecretString::from));
            f.check(
                secret.is_some(),
                format!("{at}.shared_secret_env"),
                format!(
                    "environment variable {var} must hold a secret of at least {} bytes",
                    SharedSecret::MIN_BYTES
                ),
            );
            return secret.map(KeySource::SharedSecret);
        }
        (Some(uri), false, None, None) => fetchable("jwks_uri", uri, f).map(KeySource::JwksUri),
        (None, true, None, None) => {
            fetchable("issuer", &issuer.issuer, f).map(KeySource::Discovery)
        }
        (None, false, Some(path), None) => Some(KeySource::JwksFile(path.clone())),
        _ => {
            f.check(
                false,
                at,
                "set exactly one of jwks_uri, discovery = true, jwks_file, shared_secret_env",
            );
            return None;
        }
    };
    f.check(
        !issuer.algorithms.iter().any(hmac),
        format!("{at}.algorithms"),
        "HS256/HS384/HS512 need a shared secret (shared_secret_env); public keys never verify HMAC tokens",
    );
    source
}

/// The issuer a `[[issuers]]` entry's TOML describes, for unit tests; panics on a problem.
#[cfg(test)]
pub(crate) fn issuer_from_toml(text: &str) -> IssuerSettings {
    let raw: RawIssuer = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    let mut f = Findings::default();
    let issuer = issuer_entry(&raw, "issuer", &|_| None, &mut f);
    assert!(f.0.is_empty(), "{:?}", f.0);
    issuer.expect("a valid issuer")
}
