//! `KeySet`, one issuer's verification keys from a JWKS URL or file: refreshed in the background,
//! refetched on an unknown `kid` at most once per interval, each load numbered by a generation.
//! Redirects are not followed and oversized documents are refused; it never decides whether a token
//! is valid.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use anyhow::Context;

use super::{CaBundle, FetchableUrl, KeySource};
use crate::metrics::KeySetMetrics;

/// The HTTP client that fetches discovery documents and key sets: one is shared by every
/// issuer under the system's roots, and an issuer with its own `ca_file` gets one that also
/// trusts those certificates, so a private CA vouches for that issuer's hosts alone.
pub(crate) fn key_client(ca: Option<&CaBundle>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("ecr-token-broker/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        let certificates = ca
            .certificates()
            .with_context(|| format!("reading certificates from {}", ca.path().display()))?;
        // Merged with, not instead of, the system's roots: an issuer may move its keys to a
        // public CDN without its config having to follow.
        builder = builder.tls_certs_merge(certificates);
    }
    builder
        .build()
        .context("building the HTTP client for key sets")
}

/// Larger key documents are refused: no honest JWKS comes close.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyFetchError {
    /// The HTTP request failed or returned an error status.
    #[error("fetching {url}: {source}")]
    Http {
        /// Where from.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The answer was not a success, such as a redirect, which is not followed.
    #[error("fetching {url}: status {status}, not a key document")]
    Status {
        /// Where from.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The document is larger than any JWKS should be.
    #[error("{0} is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge(String),
    /// The file could not be read.
    #[error("reading {path}: {source}", path = .path.display())]
    File {
        /// Which file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The document is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

/// One usable verification key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// One loaded set of keys, and which it is: every set stored gets the next generation, so
/// that whatever a key verified can tell whether the set it came from is still the one in
/// use.
struct Loaded {
    generation: u64,
    keys: Arc<[Key]>,
}

/// The keys of one issuer, refreshed in the background and on demand when a token names an
/// unknown key ID (at most once per `min_refresh_interval`, however many requests ask).
pub(crate) struct KeySet {
    source: KeySource,
    issuer: String,
    http: reqwest::Client,
    min_refresh_interval: Duration,
    refresh_every: Duration,
    keys: RwLock<Option<Loaded>>,
    last_fetch: Mutex<Option<Instant>>,
    metrics: KeySetMetrics,
}

impl KeySet {
    /// A key set that loads from `source`; nothing is fetched until [`KeySet::refresh`] or
    /// [`KeySet::keep_fresh`].
    pub(crate) fn new(
        source: KeySource,
        issuer: &str,
        http: reqwest::Client,
        min_refresh_interval: Duration,
        refresh_every: Duration,
        metrics: KeySetMetrics,
    ) -> Self {
        Self {
            source,
            issuer: issuer.to_owned(),
            http,
            min_refresh_interval,
            refresh_every,
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
            metrics,
        }
    }

    /// Whether keys have been loaded at least once.
    pub(crate) fn is_loaded(&self) -> bool {
        self.keys.read().expect("key lock poisoned").is_some()
    }

    /// Which set of keys is in use: it changes whenever a fetch replaces them (0 before the
    /// first). Read it before [`KeySet::find`]: what that key verifies then belongs to this
    /// generation or a later one.
    pub(crate) fn generation(&self) -> u64 {
        self.keys
            .read()
            .expect("key lock poisoned")
            .as_ref()
            .map_or(0, |loaded| loaded.generation)
    }

    /// Loads the keys now, replacing the current set on success.
    pub(crate) async fn refresh(&self) -> Result<usize, KeyFetchError> {
        let mut last_fetch = self.last_fetch.lock().await;
        *last_fetch = Some(Instant::now());
        self.fetch_and_store().await
    }

    /// Refreshes forever: every `refresh_every`, or every `min_refresh_interval` while
    /// fetching fails. Run it as a background task.
    pub(crate) async fn keep_fresh(self: Arc<Self>) {
        loop {
            let wait = match self.refresh().await {
                Ok(count) => {
                    tracing::debug!(issuer = %self.issuer, count, "signing keys loaded");
                    self.refresh_every
                }
                Err(error) => {
                    // With its causes: a refused certificate (an issuer that needs its
                    // ca_file) shows only there, under reqwest's "error sending request".
                    let error = format!("{:#}", anyhow::Error::from(error));
                    tracing::warn!(issuer = %self.issuer, error, "loading signing keys failed");
                    self.min_refresh_interval.min(self.refresh_every)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The key for a token's `kid` and `alg`, refetching once if the `kid` is unknown.
    pub(crate) async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        if let Some(key) = self.lookup(kid, alg) {
            return Some(key);
        }
        kid?;
        {
            let mut last_fetch = self.last_fetch.lock().await;
            // Another request may have refreshed while this one waited for the lock.
            if let Some(key) = self.lookup(kid, alg) {
                return Some(key);
            }
            if last_fetch.is_some_and(|t| t.elapsed() < self.min_refresh_interval) {
                return None;
            }
            *last_fetch = Some(Instant::now());
            if let Err(error) = self.fetch_and_store().await {
                tracing::warn!(issuer = %self.issuer, %error, "refreshing keys for an unknown kid failed");
            }
        }
        self.lookup(kid, alg)
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self
            .keys
            .read()
            .expect("key lock poisoned")
            .as_ref()
            .map(|loaded| loaded.keys.clone())?;
        let usable = |k: &&Key| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => keys
                .iter()
                .filter(usable)
                .find(|k| k.kid.as_deref() == Some(kid)),
            // Without a kid the choice must be unambiguous.
            None => match keys.iter().filter(usable).collect::<Vec<_>>()[..] {
                [only] => Some(only),
                _ => None,
            },
        }
        .map(|k| k.key.clone())
    }

    async fn fetch_and_store(&self) -> Result<usize, KeyFetchError> {
        self.metrics.fetches.increment(1);
        self.fetch_and_store_uncounted()
            .await
            .inspect_err(|_| self.metrics.failures.increment(1))
    }

    async fn fetch_and_store_uncounted(&self) -> Result<usize, KeyFetchError> {
        let keys = self.fetch().await?;
        if keys.is_empty() {
            return Err(KeyFetchError::Invalid(format!(
                "no usable signing keys for {}",
                self.issuer
            )));
        }
        let count = keys.len();
        let mut loaded = self.keys.write().expect("key lock poisoned");
        let generation = loaded.as_ref().map_or(0, |l| l.generation) + 1;
        *loaded = Some(Loaded {
            generation,
            keys: keys.into(),
        });
        Ok(count)
    }

    async fn fetch(&self) -> Result<Vec<Key>, KeyFetchError> {
        let document = match &self.source {
            KeySource::JwksUri(uri) => self.get(uri.as_str()).await?,
            KeySource::Discovery(_) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let discovery: Discovery = parse(&self.get(&url).await?, &url)?;
                if discovery.issuer != self.issuer {
                    return Err(KeyFetchError::Invalid(format!(
                        "{url} names issuer {:?}, expected {:?}",
                        discovery.issuer, self.issuer
                    )));
                }
                // Discovery may not lower the bar that a configured jwks_uri has to meet.
                if FetchableUrl::parse(&discovery.jwks_uri).is_none() {
                    return Err(KeyFetchError::Invalid(format!(
                        "{url} names jwks_uri {:?}, which is not an https:// URL",
                        discovery.jwks_uri
                    )));
                }
                self.get(&discovery.jwks_uri).await?
            }
            KeySource::JwksFile(path) => {
                tokio::fs::read(path)
                    .await
                    .map_err(|source| KeyFetchError::File {
                        path: path.clone(),
                        source,
                    })?
            }
            KeySource::SharedSecret(_) => {
                return Err(KeyFetchError::Invalid(
                    "shared secrets are not key sets".to_owned(),
                ));
            }
        };
        let set: RawKeySet = parse(&document, "key set")?;
        Ok(set.keys.into_iter().filter_map(usable_key).collect())
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, KeyFetchError> {
        let http = |source| KeyFetchError::Http {
            url: url.to_owned(),
            source,
        };
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(http)?;
        // The client follows no redirect: one could lead off https, or to keys an attacker
        // placed elsewhere on the issuer's host.
        if !response.status().is_success() {
            return Err(KeyFetchError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(KeyFetchError::TooLarge(url.to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Keys are parsed one by one so that one exotic key does not hide the others.
#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, KeyFetchError> {
    serde_json::from_slice(bytes)
        .map_err(|e| KeyFetchError::Invalid(format!("{what} is not valid: {e}")))
}

/// Keeps signature keys of supported types; HMAC (`oct`) keys are never accepted from a JWKS.
fn usable_key(raw: serde_json::Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(raw).ok()?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    if matches!(
        jwk.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
    ) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(Algorithm::try_from(a).ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}

#[cfg(test)]
mod tests;
