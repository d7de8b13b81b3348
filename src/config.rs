//! The service's configuration: one TOML file, typed, validated once at load.
//!
//! Secrets (the database URL, the fingerprint key, shared issuer secrets) may come from the
//! environment instead of the file, so the file can live in a ConfigMap.

mod audit_chain;
mod audit_sink;
mod ca_file;
mod operations;
mod server_tls;
mod toml_error;
mod validate;
mod warnings;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::CacheMode;
use crate::domain::{Access, Region, RegistryId, RoleArn, SessionDuration};
use crate::kill_switch::EntrySpec;
use crate::policy::Template;

pub(crate) use crate::policy::{ClaimPattern, ClaimPatterns};
pub(crate) use audit_chain::AuditChainConfig;
pub(crate) use audit_sink::{AuditSinkConfig, Facility, SinkKind, SyslogTarget};
pub(crate) use ca_file::CaBundle;
pub(crate) use operations::{AdminConfig, ReloadConfig};
pub(crate) use server_tls::{
    KeyPairFiles, ServerTlsConfig, client_roots, provider as tls_provider,
};
pub(crate) use validate::ConfigErrors;
pub(crate) use validate::is_fetchable_url;

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

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listener and request limits.
    #[serde(default)]
    pub(crate) server: ServerConfig,
    /// The audit database.
    pub(crate) database: DatabaseConfig,
    /// Audit record settings.
    pub(crate) audit: AuditConfig,
    /// Bounds on appending to the audit chain, and publishing its head.
    #[serde(default)]
    pub(crate) audit_chain: AuditChainConfig,
    /// Where committed audit records are also written, as JSON lines.
    #[serde(default)]
    pub(crate) audit_sink: AuditSinkConfig,
    /// AWS call settings; credentials and endpoints come from the standard SDK chain.
    #[serde(default)]
    pub(crate) aws: AwsConfig,
    /// How issued credentials are cached.
    #[serde(default)]
    pub(crate) cache: CacheConfig,
    /// Identity providers whose JWTs are trusted.
    #[serde(default)]
    pub(crate) issuers: Vec<IssuerConfig>,
    /// Ordered mapping rules from claims to roles; the first match wins.
    #[serde(default)]
    pub(crate) rules: Vec<RuleConfig>,
    /// Each caller's token bucket on the issuing endpoint (a rule may set its own), and each
    /// client address's for requests whose token fails.
    #[serde(default)]
    pub(crate) rate_limit: RateLimitsConfig,
    /// Where `GET /metrics` is served.
    #[serde(default)]
    pub(crate) metrics: MetricsConfig,
    /// The kill switch: callers refused before any rule is considered.
    #[serde(default)]
    pub(crate) deny: Vec<EntrySpec>,
    /// Who administers the deny list, and how often the stored one is read.
    #[serde(default)]
    pub(crate) admin: AdminConfig,
    /// Whether the config file is watched for changes.
    #[serde(default)]
    pub(crate) reload: ReloadConfig,
}

/// `[metrics]`: the Prometheus exposition.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsConfig {
    /// A listener of its own for `GET /metrics`, which the main listener then does not
    /// serve; without it, the main listener serves it.
    pub listen: Option<SocketAddr>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Browser origins allowed to call the API; empty turns CORS off.
    pub cors_allowed_origins: Vec<String>,
    /// Backstop for a whole request, beyond the per-call AWS timeout.
    pub request_timeout_secs: u64,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Larger header sections are refused with 431.
    pub max_header_bytes: usize,
    /// More header fields than this are refused by hyper with 431.
    pub max_headers: usize,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time allowed for a request's header section, and for an idle keep-alive connection.
    pub header_read_timeout_secs: u64,
    /// Proxies whose `X-Forwarded-For` names the client; from anyone else it is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// How much `GET /v1/whoami` tells about the rules.
    pub whoami_detail: WhoamiDetail,
    /// On SIGTERM: how long `/readyz` reports not ready, while requests are still served,
    /// before the listener closes, so that load balancers stop sending first.
    pub shutdown_drain_secs: u64,
    /// On SIGTERM, once the listener is closed: how long in-flight requests may take to
    /// finish.
    pub shutdown_grace_secs: u64,
    /// `[server.tls]`: HTTPS on `listen`, with the certificate files read again as they
    /// rotate; without it, plain HTTP behind a TLS-terminating proxy.
    pub tls: Option<ServerTlsConfig>,
}

/// How much `GET /v1/whoami` tells: with a public issuer, any stranger can ask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhoamiDetail {
    /// The matched rule and what it grants; on no match, each rule's name and the claim that
    /// did not match, never what a rule expects.
    #[default]
    Minimal,
    /// Also every rule checked before the match, and what each expected: for development.
    Full,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            cors_allowed_origins: Vec::new(),
            request_timeout_secs: 30,
            max_body_bytes: 16 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            // Each open connection holds at most a header buffer (max_header_bytes plus a
            // little) and a task: about 40 KiB, so 1024 of them stay within tens of MiB.
            max_connections: 1024,
            header_read_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            whoami_detail: WhoamiDetail::default(),
            shutdown_drain_secs: 5,
            shutdown_grace_secs: 30,
            tls: None,
        }
    }
}

/// `[database]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseConfig {
    /// Postgres connection URL; may carry a password, so it is a secret.
    #[serde(default = "empty_secret")]
    pub url: SecretString,
    /// Upper bound on pooled connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before the audit log counts as down.
    #[serde(default = "default_acquire_timeout")]
    pub acquire_timeout_secs: u64,
    /// Run pending migrations when `serve` starts.
    #[serde(default)]
    pub migrate_on_start: bool,
    /// Connections of the separate pool that audit reads use, so they never take the
    /// writer's.
    #[serde(default = "default_read_max_connections")]
    pub read_max_connections: u32,
    /// Longest an audit read's statement may run before the database cancels it.
    #[serde(default = "default_read_statement_timeout")]
    pub read_statement_timeout_secs: u64,
}

impl DatabaseConfig {
    /// How to connect, as `url` says: every pool and session starts from these options, so
    /// the URL's TLS settings (`sslmode`, `sslrootcert`) reach each of them. Errors never
    /// quote the URL, which may hold a password.
    pub(crate) fn connect_options(&self) -> anyhow::Result<sqlx::postgres::PgConnectOptions> {
        use secrecy::ExposeSecret;
        self.url
            .expose_secret()
            .parse()
            .context("parsing the database URL")
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &"[redacted]")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("read_max_connections", &self.read_max_connections)
            .field(
                "read_statement_timeout_secs",
                &self.read_statement_timeout_secs,
            )
            .finish()
    }
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout() -> u64 {
    3
}

fn default_read_max_connections() -> u32 {
    4
}

fn default_read_statement_timeout() -> u64 {
    5
}

/// `[audit]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditConfig {
    /// Stored beside every fingerprint so keys can be rotated.
    pub fingerprint_key_id: String,
    /// HMAC-SHA256 key for token fingerprints, at least 32 bytes.
    #[serde(default = "empty_secret")]
    pub fingerprint_key: SecretString,
    /// Earlier fingerprint keys by id, so tokens fingerprinted before a rotation can still
    /// be looked up.
    #[serde(default)]
    pub previous_fingerprint_keys: BTreeMap<String, SecretString>,
    /// HMAC-SHA256 key of the audit hash chain, at least 32 bytes; `audit verify` needs it.
    #[serde(default = "empty_secret")]
    pub chain_key: SecretString,
    /// Callers matched by one of these rules may read every audit record and look up tokens.
    #[serde(default)]
    pub admin_rules: Vec<String>,
    /// Records that may wait for the writer; beyond it requests get 503 at once.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Records the writer commits in one transaction at most.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Refusals that may wait for the writer; beyond it they are shed and counted.
    #[serde(default = "default_refusal_queue_capacity")]
    pub refusal_queue_capacity: usize,
    /// How often refusals shed meanwhile are written as one aggregate row.
    #[serde(default = "default_shed_report_interval")]
    pub shed_report_interval_secs: u64,
}

fn default_queue_capacity() -> usize {
    1024
}

fn default_max_batch() -> usize {
    256
}

fn default_refusal_queue_capacity() -> usize {
    256
}

fn default_shed_report_interval() -> u64 {
    60
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("fingerprint_key_id", &self.fingerprint_key_id)
            .field("fingerprint_key", &"[redacted]")
            .field(
                "previous_fingerprint_keys",
                &self.previous_fingerprint_keys.keys().collect::<Vec<_>>(),
            )
            .field("chain_key", &"[redacted]")
            .field("admin_rules", &self.admin_rules)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_batch", &self.max_batch)
            .field("refusal_queue_capacity", &self.refusal_queue_capacity)
            .field("shed_report_interval_secs", &self.shed_report_interval_secs)
            .finish()
    }
}

/// `[aws]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AwsConfig {
    /// Per AWS operation, retries included; beyond it the caller gets 504.
    pub operation_timeout_secs: u64,
    /// `[aws.ecr_ceiling]`: GetAuthorizationToken calls per AWS account and region.
    pub ecr_ceiling: CeilingConfig,
    /// `[aws.sts_ceiling]`: AssumeRole calls, all made with the broker's own account.
    pub sts_ceiling: CeilingConfig,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            operation_timeout_secs: 10,
            // Per replica, well below AWS's default quotas (ECR GetAuthorizationToken and
            // STS both allow hundreds per second per account and region), so a few replicas
            // together still stay under them.
            ecr_ceiling: CeilingConfig {
                max_concurrent: 16,
                per_second: 50,
                max_wait_ms: 1000,
            },
            sts_ceiling: CeilingConfig {
                max_concurrent: 32,
                per_second: 100,
                max_wait_ms: 1000,
            },
        }
    }
}

/// The most calls the broker makes to one AWS API at once and per second; a call beyond
/// it waits up to `max_wait_ms`, then fails with 503 and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CeilingConfig {
    /// Calls in flight at once.
    pub max_concurrent: u32,
    /// Calls started per second (also the burst allowed after a quiet second).
    pub per_second: u32,
    /// How long a call may wait for room before it is refused.
    pub max_wait_ms: u64,
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitConfig {
    /// Requests per second, sustained; fractions allowed (0.1 is one every ten seconds).
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    /// A CI fleet often shares one subject (GitHub's `sub` names the repository and ref, so
    /// a 256-job matrix is one caller), so the default burst takes a whole matrix at once
    /// and the steady rate stays well above any honest caller's, while a runaway loop is
    /// held to it.
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 300,
        }
    }
}

/// `[rate_limit]`: the per-caller bucket, with `[rate_limit.unauthenticated]` inside it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RateLimitsConfig {
    /// Each caller's requests per second, sustained.
    pub per_second: f64,
    /// Each caller's requests at once after a quiet period.
    pub burst: u32,
    /// Each verified caller that no rule admits (none matches, or the deny list refuses
    /// it): the bucket of everything it sends, instead of the per-caller one.
    pub unadmitted: RateLimitConfig,
    /// Each client address's bucket of requests that fail authentication.
    pub unauthenticated: RateLimitConfig,
    /// How much of a client address names its bucket of failed authentications.
    pub unauthenticated_prefix: AddressPrefix,
}

/// The leading bits of a client address that name its network: one bucket per network, so
/// that rotating through the addresses of one IPv6 /64 (which any host may) is no way
/// around a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AddressPrefix {
    /// Bits of an IPv4 address, 0 to 32.
    pub ipv4: u8,
    /// Bits of an IPv6 address, 0 to 128.
    pub ipv6: u8,
}

impl Default for AddressPrefix {
    /// A host's own IPv4 address, and the /64 an IPv6 host is given as its own.
    fn default() -> Self {
        Self { ipv4: 32, ipv6: 64 }
    }
}

impl RateLimitsConfig {
    /// The bucket of each verified caller whose rule sets none of its own.
    pub(crate) fn per_caller(&self) -> RateLimitConfig {
        RateLimitConfig {
            per_second: self.per_second,
            burst: self.burst,
        }
    }
}

impl Default for RateLimitsConfig {
    /// An honest client rarely fails authentication (an expired token now and then), so
    /// a client address gets a few dozen failures at once and one a second after that; a
    /// verified caller that no rule admits gets as much, enough to ask `/v1/whoami` why.
    fn default() -> Self {
        let per_caller = RateLimitConfig::default();
        let suspect = RateLimitConfig {
            per_second: 1.0,
            burst: 30,
        };
        Self {
            per_second: per_caller.per_second,
            burst: per_caller.burst,
            unadmitted: suspect,
            unauthenticated: suspect,
            unauthenticated_prefix: AddressPrefix::default(),
        }
    }
}

/// `[cache]`: issued credentials kept for repeated requests (each rule's `cache` picks
/// per-caller, shared or off).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CacheConfig {
    /// Most cached keys at once.
    pub max_entries: usize,
    /// A cached credential with no more than this many seconds left is never served.
    pub min_remaining_secs: u64,
    /// Share of the time a credential may be served after which it is renewed in the
    /// background.
    pub refresh_fraction: f64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            min_remaining_secs: 300,
            refresh_fraction: 0.5,
        }
    }
}

/// `[[issuers]]`: one trusted identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuerConfig {
    /// Short name that rules refer to.
    pub name: String,
    /// The exact `iss` claim of its tokens.
    pub issuer: String,
    /// Where its JSON Web Key Set is served.
    pub jwks_uri: Option<String>,
    /// Find `jwks_uri` through OIDC discovery at `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// A JWKS document on disk.
    pub jwks_file: Option<PathBuf>,
    /// Environment variable holding an HMAC secret, for issuers that sign with HS*.
    pub shared_secret_env: Option<String>,
    /// The secret read from `shared_secret_env` at load time.
    #[serde(skip)]
    pub shared_secret: Option<SecretString>,
    /// PEM file of certificate authorities trusted for this issuer's discovery and key URLs,
    /// in addition to the system's roots (a corporate CA the system does not trust).
    pub ca_file: Option<PathBuf>,
    /// The certificates read from `ca_file` at load time.
    #[serde(skip)]
    pub ca: Option<CaBundle>,
    /// Accepted `aud` values; a token must carry one of them.
    pub audiences: Vec<String>,
    /// Accepted signing algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// How often keys are refetched in the background.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// An unknown `kid` triggers a refetch at most this often.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_interval_secs: u64,
    /// The header `typ` every token must carry, such as `JWT`; unset: any or none.
    pub required_typ: Option<String>,
    /// Tokens issued (`iat`) longer ago than this are refused; unset: only `exp` bounds a
    /// token's life.
    pub max_token_age_secs: Option<u64>,
    /// Accept each `jti` once, until its token expires; tokens without one are refused.
    #[serde(default)]
    pub reject_replayed_jti: bool,
    /// How many `jti`s of unexpired tokens are remembered; when all are taken, new tokens
    /// are refused until some expire.
    #[serde(default = "default_jti_cache_capacity")]
    pub jti_cache_capacity: usize,
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

/// `[[rules]]`: claims that, when all match, map a caller to a role and to the most it may
/// ask for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConfig {
    /// Unique name, recorded in the audit log.
    pub name: String,
    /// Name of the issuer whose tokens this rule considers.
    pub issuer: String,
    /// The token's `aud` must name one of these (a subset of the issuer's); empty: any of
    /// the issuer's audiences.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claim name (or JSON pointer) to patterns; every entry must match.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimPatterns>,
    /// The role to assume.
    pub role_arn: RoleArn,
    /// Regions the caller may ask for; the first is the default.
    pub regions: Vec<Region>,
    /// Registries the caller may ask for; the first is the default. Default: the role's account.
    #[serde(default)]
    pub registry_ids: Vec<RegistryId>,
    /// The most this rule grants: `pull` or `push`.
    #[serde(default)]
    pub access: Access,
    /// Repository patterns templated from claims, such as `"{repository}/*"`; they become the
    /// session policy's resources. Empty: every repository of the allowed registries.
    #[serde(default)]
    pub repositories: Vec<Template>,
    /// The longest session this rule grants.
    #[serde(default)]
    pub session_duration_secs: SessionDuration,
    /// RoleSessionName template; a unique suffix is always appended.
    #[serde(default = "default_identity_template")]
    pub session_name: Template,
    /// SourceIdentity template.
    #[serde(default = "default_identity_template")]
    pub source_identity: Template,
    /// Session tags, each value templated from claims.
    #[serde(default)]
    pub session_tags: BTreeMap<String, Template>,
    /// Tag keys that stay on sessions chained from this one.
    #[serde(default)]
    pub transitive_tag_keys: Vec<String>,
    /// `ExternalId` passed to AssumeRole when the role's trust policy requires one.
    pub external_id: Option<String>,
    /// Lets a pull import an image through an ECR pull-through cache rule, creating its
    /// repository, on the rule's repositories only.
    #[serde(default)]
    pub pull_through_cache: bool,
    /// This rule's callers' token bucket instead of `[rate_limit]`'s.
    pub rate_limit: Option<RateLimitConfig>,
    /// Who may be handed a cached credential: each caller its own (default), callers with
    /// an identical grant one shared, or nobody.
    #[serde(default)]
    pub cache: CacheMode,
}

fn default_identity_template() -> Template {
    Template::parse("{sub}").expect("a valid template")
}

/// Field by field, the shared secret by value: an issuer whose config compares equal keeps
/// its keys, and its memory of used `jti`s, across a reload.
impl PartialEq for IssuerConfig {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        // Destructured without `..`: a new field does not compile until it is compared.
        let Self {
            name,
            issuer,
            jwks_uri,
            discovery,
            jwks_file,
            shared_secret_env,
            shared_secret,
            ca_file,
            ca,
            audiences,
            algorithms,
            leeway_secs,
            jwks_refresh_secs,
            jwks_min_refresh_interval_secs,
            required_typ,
            max_token_age_secs,
            reject_replayed_jti,
            jti_cache_capacity,
        } = self;
        let secret = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
        *name == other.name
            && *issuer == other.issuer
            && *jwks_uri == other.jwks_uri
            && *discovery == other.discovery
            && *jwks_file == other.jwks_file
            && *shared_secret_env == other.shared_secret_env
            && secret(shared_secret) == secret(&other.shared_secret)
            && *ca_file == other.ca_file
            && *ca == other.ca
            && *audiences == other.audiences
            && *algorithms == other.algorithms
            && *leeway_secs == other.leeway_secs
            && *jwks_refresh_secs == other.jwks_refresh_secs
            && *jwks_min_refresh_interval_secs == other.jwks_min_refresh_interval_secs
            && *required_typ == other.required_typ
            && *max_token_age_secs == other.max_token_age_secs
            && *reject_replayed_jti == other.reject_replayed_jti
            && *jti_cache_capacity == other.jti_cache_capacity
    }
}

impl IssuerConfig {
    /// The keys' source, as configured.
    pub(crate) fn key_source(&self) -> Option<KeySource> {
        match (
            &self.jwks_uri,
            self.discovery,
            &self.jwks_file,
            &self.shared_secret_env,
        ) {
            (Some(uri), false, None, None) => Some(KeySource::JwksUri(uri.clone())),
            (None, true, None, None) => Some(KeySource::Discovery),
            (None, false, Some(path), None) => Some(KeySource::JwksFile(path.clone())),
            (None, false, None, Some(var)) => Some(KeySource::SharedSecret(var.clone())),
            _ => None,
        }
    }

    /// Refresh period of fetched keys.
    pub(crate) fn jwks_refresh(&self) -> Duration {
        Duration::from_secs(self.jwks_refresh_secs)
    }

    /// Least time between two refetches caused by unknown key IDs.
    pub(crate) fn jwks_min_refresh_interval(&self) -> Duration {
        Duration::from_secs(self.jwks_min_refresh_interval_secs)
    }
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// A JWKS URL.
    JwksUri(String),
    /// OIDC discovery from the issuer URL.
    Discovery,
    /// A JWKS file.
    JwksFile(PathBuf),
    /// An HMAC secret read from this environment variable.
    SharedSecret(String),
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
        let mut config: Self =
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
        let mut load_problems = Vec::new();
        let previous_keys = env(PREVIOUS_FINGERPRINT_KEYS_ENV).unwrap_or_default();
        for (i, pair) in previous_keys.split(',').enumerate() {
            match pair.split_once('=').map(|(id, key)| (id.trim(), key)) {
                Some((id, key)) if validate::is_key_id(id) => {
                    config
                        .audit
                        .previous_fingerprint_keys
                        .insert(id.to_owned(), key.to_owned().into());
                }
                // Not repeated: a malformed entry may be a bare key.
                Some(_) | None if !pair.trim().is_empty() => load_problems.push((
                    format!("{PREVIOUS_FINGERPRINT_KEYS_ENV} (entry {})", i + 1),
                    format!("must be id=key with an id of {}", validate::KEY_ID_GRAMMAR),
                )),
                _ => {}
            }
        }
        for (i, issuer) in config.issuers.iter_mut().enumerate() {
            issuer.shared_secret = issuer
                .shared_secret_env
                .as_deref()
                .and_then(&env)
                .map(SecretString::from);
            if let Some(path) = &issuer.ca_file {
                match CaBundle::read(path) {
                    Ok(bundle) => issuer.ca = Some(bundle),
                    Err(problem) => load_problems.push((format!("issuers[{i}].ca_file"), problem)),
                }
            }
        }
        if let Some(tls) = &config.server.tls {
            load_problems.extend(tls.problems());
        }
        validate::validate(&config, load_problems)?;
        Ok(config)
    }
}
