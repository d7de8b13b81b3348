//! The service's configuration: one TOML file, read once into the types that run (`Config`),
//! every problem named by its path in the file. This file holds `Config`, loading and the
//! environment overrides; each section's shape and parsing is in its own file, and what
//! relates sections to each other in `validate.rs`.
//!
//! Secrets (the database URL, the fingerprint key, shared issuer secrets) may come from the
//! environment instead of the file, so the file can live in a ConfigMap. The modules the
//! config builds for (auth, policy, credentials, audit, rate_limit) never import it.

mod audit;
mod cache;
mod database;
mod errors;
mod issuers;
mod limits;
mod operations;
mod raw;
mod rules;
mod server;
mod server_tls;
mod toml_error;
mod validate;
mod warnings;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;

use crate::audit::{AuditChainConfig, AuditSinkConfig};
use crate::auth::IssuerSettings;
use crate::credentials::AwsConfig;
use crate::kill_switch::EntrySpec;
use crate::policy::Rules;
use crate::rate_limit::RateLimitSettings;

pub(crate) use audit::{AuditConfig, KeyId};
pub(crate) use cache::CacheConfig;
pub(crate) use database::DatabaseConfig;
pub(crate) use errors::ConfigErrors;
#[cfg(test)]
pub(crate) use issuers::issuer_from_toml;
pub(crate) use operations::{AdminConfig, ReloadConfig};
#[cfg(test)]
pub(crate) use rules::rule_from_toml;
pub(crate) use server::{MetricsConfig, Origin, ServerConfig, WhoamiDetail};
pub(crate) use server_tls::{
    KeyPairFiles, ServerTlsConfig, client_roots, provider as tls_provider,
};

/// Environment variable naming the config file when `--config` is not given.
pub(crate) const CONFIG_PATH_ENV: &str = "ECR_TOKEN_BROKER_CONFIG";
/// Environment variable that overrides `[database].url`.
pub(crate) const DATABASE_URL_ENV: &str = "ECR_TOKEN_BROKER_DATABASE_URL";
/// Environment variable that overrides `[audit].fingerprint_key`.
pub(crate) const FINGERPRINT_KEY_ENV: &str = "ECR_TOKEN_BROKER_FINGERPRINT_KEY";
/// Environment variable that overrides `[audit].chain_key`.
pub(crate) const CHAIN_KEY_ENV: &str = "ECR_TOKEN_BROKER_CHAIN_KEY";
/// Environment variable adding previous fingerprint keys, as `id=key,id=key`.
pub(crate) const PREVIOUS_FINGERPRINT_KEYS_ENV: &str = "ECR_TOKEN_BROKER_PREVIOUS_FINGERPRINT_KEYS";

/// The whole configuration, parsed: every value in it is one the service can run with.
#[derive(Debug)]
pub struct Config {
    /// HTTP listener and request limits.
    pub(crate) server: ServerConfig,
    /// The audit database.
    pub(crate) database: DatabaseConfig,
    /// Audit record settings.
    pub(crate) audit: AuditConfig,
    /// Bounds on appending to the audit chain, and publishing its head.
    pub(crate) audit_chain: AuditChainConfig,
    /// Where committed audit records are also written, as JSON lines.
    pub(crate) audit_sink: AuditSinkConfig,
    /// AWS call settings; credentials and endpoints come from the standard SDK chain.
    pub(crate) aws: AwsConfig,
    /// How issued credentials are cached.
    pub(crate) cache: CacheConfig,
    /// Identity providers whose JWTs are trusted.
    pub(crate) issuers: Vec<IssuerSettings>,
    /// Ordered rules from claims to roles, compiled; the first match wins.
    pub(crate) rules: Arc<Rules>,
    /// Each caller's token bucket on the issuing endpoint (a rule may set its own), and each
    /// client address's for requests whose token fails.
    pub(crate) rate_limit: RateLimitSettings,
    /// Where `GET /metrics` is served.
    pub(crate) metrics: MetricsConfig,
    /// The kill switch: callers refused before any rule is considered.
    pub(crate) deny: Vec<EntrySpec>,
    /// Who administers the deny list, and how often the stored one is read.
    pub(crate) admin: AdminConfig,
    /// Whether the config file is watched for changes.
    pub(crate) reload: ReloadConfig,
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

impl Config {
    /// Reads, parses and validates the file at `path`, applying environment overrides.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        Self::read(path).map(|(config, _)| config)
    }

    /// [`Config::load`], also returning the file's text, which a reload compares with.
    pub(crate) fn read(path: &Path) -> anyhow::Result<(Self, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let config = Self::parse(&text, |name| std::env::var(name).ok())
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok((config, text))
    }

    /// Parses and validates config text; `env` looks up environment overrides.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let mut config: raw::RawConfig =
            toml::from_str(text).map_err(|e| ConfigErrors::from_toml(&e, text))?;
        let database_url = env(DATABASE_URL_ENV).or_else(|| env("DATABASE_URL"));
        if let Some(url) = database_url.filter(|u| !u.is_empty()) {
            config.database.url = url.into();
        }
        if let Some(key) = env(FINGERPRINT_KEY_ENV).filter(|k| !k.is_empty()) {
            config.audit.fingerprint_key = key.into();
        }
        if let Some(key) = env(CHAIN_KEY_ENV).filter(|k| !k.is_empty()) {
            config.audit.chain_key = key.into();
        }
        let mut load_problems = errors::Findings::default();
        let previous_keys = env(PREVIOUS_FINGERPRINT_KEYS_ENV).unwrap_or_default();
        for (i, pair) in previous_keys.split(',').enumerate() {
            match pair.split_once('=').map(|(id, key)| (id.trim(), key)) {
                Some((id, key)) if KeyId::parse(id).is_some() => {
                    config
                        .audit
                        .previous_fingerprint_keys
                        .insert(id.to_owned(), key.to_owned().into());
                }
                // Not repeated: a malformed entry may be a bare key.
                Some(_) | None if !pair.trim().is_empty() => load_problems.check(
                    false,
                    format!("{PREVIOUS_FINGERPRINT_KEYS_ENV} (entry {})", i + 1),
                    format!("must be id=key with an id of {}", KeyId::GRAMMAR),
                ),
                _ => {}
            }
        }
        config.parse(&env, load_problems)
    }
}

/// The `[database]` and `[audit]` every config needs: what unit tests add their sections to.
#[cfg(test)]
pub(crate) const TEST_BASE: &str = r#"
[database]
url = "postgres://localhost/x"
[audit]
fingerprint_key_id = "k"
fingerprint_key = "0123456789abcdef0123456789abcdef"
chain_key = "fedcba9876543210fedcba9876543210"
"#;

/// One issuer, named `ci`, for unit tests' configs.
#[cfg(test)]
pub(crate) const TEST_CI_ISSUER: &str = r#"
[[issuers]]
name = "ci"
issuer = "https://ci.example.com"
jwks_uri = "https://ci.example.com/jwks"
audiences = ["a"]
algorithms = ["RS256"]
"#;
