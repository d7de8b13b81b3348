//! `IssuerSettings`: one trusted issuer as the config parsed it, with its key source and URLs
//! already checked, so that `auth` only ever sees a usable issuer. Builds nothing and reads
//! no file: the config does that once, when it loads.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use secrecy::{ExposeSecret, SecretString};

use super::CaBundle;

/// One `[[issuers]]` entry, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IssuerSettings {
    /// Short name that rules refer to.
    pub name: String,
    /// The exact `iss` claim of its tokens.
    pub issuer: String,
    /// Where its keys come from.
    pub keys: KeySource,
    /// Certificate authorities trusted for its discovery and key URLs, besides the system's.
    pub ca: Option<CaBundle>,
    /// Accepted `aud` values; a token must carry one of them.
    pub audiences: Vec<String>,
    /// Accepted signing algorithms, all of the key source's family.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// How often keys are refetched in the background.
    pub jwks_refresh: Duration,
    /// Least time between two refetches caused by unknown key IDs.
    pub jwks_min_refresh_interval: Duration,
    /// The header `typ` every token must carry; `None`: any or none.
    pub required_typ: Option<String>,
    /// Tokens issued longer ago than this are refused.
    pub max_token_age_secs: Option<u64>,
    /// Accept each `jti` once, until its token expires.
    pub reject_replayed_jti: bool,
    /// How many `jti`s of unexpired tokens are remembered.
    pub jti_cache_capacity: usize,
}

/// Where an issuer's verification keys come from: exactly one of the four.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// A JWKS URL.
    JwksUri(FetchableUrl),
    /// OIDC discovery from the issuer URL, which is fetchable.
    Discovery(FetchableUrl),
    /// A JWKS file.
    JwksFile(PathBuf),
    /// An HMAC secret, read from the environment when the config loaded.
    SharedSecret(SharedSecret),
}

impl KeySource {
    /// Whether keys are fetched over the network (where a `ca_file` applies).
    pub(crate) fn is_fetched(&self) -> bool {
        matches!(self, Self::JwksUri(_) | Self::Discovery(_))
    }
}

/// An HMAC secret of at least 32 bytes, with the environment variable it came from.
/// Compared by value: a reload with a new secret builds the issuer again.
#[derive(Clone)]
pub(crate) struct SharedSecret {
    var: String,
    secret: SecretString,
}

impl SharedSecret {
    /// The least length of a secret, in bytes.
    pub(crate) const MIN_BYTES: usize = 32;

    /// The secret read from `var`, if it holds at least [`Self::MIN_BYTES`].
    pub(crate) fn new(var: &str, secret: Option<SecretString>) -> Option<Self> {
        secret
            .filter(|s| s.expose_secret().len() >= Self::MIN_BYTES)
            .map(|secret| Self {
                var: var.to_owned(),
                secret,
            })
    }

    /// The secret's bytes, for the decoding key.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.secret.expose_secret().as_bytes()
    }
}

impl PartialEq for SharedSecret {
    fn eq(&self, other: &Self) -> bool {
        self.var == other.var && self.secret.expose_secret() == other.secret.expose_secret()
    }
}

impl Eq for SharedSecret {}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSecret")
            .field("var", &self.var)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// A URL keys may be fetched from: https, or http to a loopback host only (keys fetched over
/// plain HTTP could be swapped in transit, so http:// is for local development). Also the
/// bar for the `jwks_uri` that OIDC discovery names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchableUrl(String);

impl FetchableUrl {
    /// `url`, if keys may be fetched from it.
    pub(crate) fn parse(url: &str) -> Option<Self> {
        let parsed = reqwest::Url::parse(url).ok()?;
        let fetchable = match parsed.scheme() {
            "https" => parsed.host().is_some(),
            "http" => matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
            _ => false,
        };
        fetchable.then(|| Self(url.to_owned()))
    }

    /// The URL as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_fetchable() {
        for url in [
            "https://ci.example.com/jwks",
            "http://localhost:8080/jwks",
            "http://127.0.0.1/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(FetchableUrl::parse(url).is_some(), "{url}");
        }
        for url in [
            "http://ci.example.com/jwks",
            "ftp://ci.example.com/jwks",
            "https://",
            "not a url",
            "file:///etc/jwks.json",
        ] {
            assert!(FetchableUrl::parse(url).is_none(), "{url}");
        }
    }
}
