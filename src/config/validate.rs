//! Checks that serde's types cannot express: cross-references, sizes, exclusive options.

mod limits;
mod operations;
mod rules;

use std::collections::HashSet;
use std::fmt;
use std::ops::RangeInclusive;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use secrecy::ExposeSecret;

use super::{Config, IssuerConfig, KeySource};

/// Every problem found in a config file, each with the path of the field it concerns.
#[derive(Debug)]
pub struct ConfigErrors(Vec<(String, String)>);

impl ConfigErrors {
    /// The file's syntax or types are wrong; `text` is the file, which is not quoted.
    pub(super) fn from_toml(error: &toml::de::Error, text: &str) -> Self {
        Self(vec![super::toml_error::describe(error, text)])
    }

    /// Every problem on one line, as a log line or a problem's detail wants it.
    pub fn one_line(&self) -> String {
        self.iter()
            .map(|(path, message)| {
                let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
                if path.is_empty() {
                    message
                } else {
                    format!("{path}: {message}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The problems as `(field path, message)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(p, m)| (p.as_str(), m.as_str()))
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(f, "{count} problem{}:", if count == 1 { "" } else { "s" })?;
        for (path, message) in &self.0 {
            let message = message.trim_end().replace('\n', "\n    ");
            if path.is_empty() {
                write!(f, "\n  - {message}")?;
            } else {
                write!(f, "\n  - {path}: {message}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Default)]
struct Findings(Vec<(String, String)>);

impl Findings {
    fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.0))
        }
    }

    fn check(&mut self, ok: bool, path: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.0.push((path.into(), message.into()));
        }
    }

    /// `value` must be at least `min`.
    fn at_least<T: PartialOrd + fmt::Display>(
        &mut self,
        value: T,
        min: T,
        path: impl Into<String>,
    ) {
        if value < min {
            self.0
                .push((path.into(), format!("must be at least {min}")));
        }
    }

    /// `value` must lie in `range`, both ends included.
    fn within<T: PartialOrd + fmt::Display>(
        &mut self,
        value: T,
        range: RangeInclusive<T>,
        path: impl Into<String>,
    ) {
        if !range.contains(&value) {
            let message = format!("must be {} to {}", range.start(), range.end());
            self.0.push((path.into(), message));
        }
    }
}

/// Checks the whole config; `load_problems` are those already found while loading it (in
/// the environment, or in files it names).
pub(super) fn validate(
    config: &Config,
    load_problems: Vec<(String, String)>,
) -> Result<(), ConfigErrors> {
    let mut f = Findings(load_problems);
    server(config, &mut f);
    database_and_audit(config, &mut f);
    f.at_least(
        config.aws.operation_timeout_secs,
        1,
        "aws.operation_timeout_secs",
    );
    cache(config, &mut f);
    f.check(
        !config.issuers.is_empty(),
        "issuers",
        "at least one [[issuers]] entry is required",
    );
    let mut names = HashSet::new();
    let mut iss_values = HashSet::new();
    for (i, issuer) in config.issuers.iter().enumerate() {
        let at = format!("issuers[{i}]");
        f.check(
            !issuer.name.is_empty(),
            format!("{at}.name"),
            "must not be empty",
        );
        f.check(
            names.insert(&issuer.name),
            format!("{at}.name"),
            format!("duplicate issuer name {:?}", issuer.name),
        );
        f.check(
            iss_values.insert(&issuer.issuer),
            format!("{at}.issuer"),
            format!("issuer {:?} is configured twice", issuer.issuer),
        );
        issuer_entry(issuer, &at, &mut f);
    }
    let mut rule_names = HashSet::new();
    for (i, rule) in config.rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        f.check(
            !rule.name.is_empty(),
            format!("{at}.name"),
            "must not be empty",
        );
        f.check(
            rule_names.insert(&rule.name),
            format!("{at}.name"),
            format!("duplicate rule name {:?}", rule.name),
        );
        rules::rule_entry(rule, &at, config, &mut f);
    }
    audit_sink(config, &mut f);
    rules::shadowed_rules(config, &mut f);
    limits::limits(config, &mut f);
    operations::operations(config, &mut f);
    f.into_result()
}

fn server(config: &Config, f: &mut Findings) {
    let server = &config.server;
    f.at_least(
        server.request_timeout_secs,
        1,
        "server.request_timeout_secs",
    );
    f.at_least(server.max_body_bytes, 1024, "server.max_body_bytes");
    f.check(
        server.max_header_bytes >= 8 * 1024,
        "server.max_header_bytes",
        "must be at least 8192 (a JWT must fit)",
    );
    f.within(server.max_headers, 16..=1000, "server.max_headers");
    f.at_least(server.max_connections, 1, "server.max_connections");
    f.within(
        server.header_read_timeout_secs,
        1..=300,
        "server.header_read_timeout_secs",
    );
    f.within(
        server.shutdown_drain_secs,
        0..=300,
        "server.shutdown_drain_secs",
    );
    // A request may run for request_timeout_secs: a shorter grace would cut off requests
    // that are still within their time.
    f.check(
        (server.request_timeout_secs..=3600).contains(&server.shutdown_grace_secs),
        "server.shutdown_grace_secs",
        format!(
            "must be server.request_timeout_secs ({}) to 3600, so that a request in flight at shutdown may take its whole time",
            server.request_timeout_secs
        ),
    );
    if let Some(tls) = &server.tls {
        f.within(
            tls.reload_interval_secs,
            1..=3600,
            "server.tls.reload_interval_secs",
        );
        f.within(
            tls.handshake_timeout_secs,
            1..=300,
            "server.tls.handshake_timeout_secs",
        );
    }
    if let Some(metrics) = config.metrics.listen {
        // Port 0 picks a free port for each listener, so only a fixed port can collide.
        f.check(
            metrics.port() == 0 || metrics != server.listen,
            "metrics.listen",
            format!("{metrics} is server.listen too: give metrics another port, or leave metrics.listen out to serve /metrics there"),
        );
    }
    for (i, origin) in server.cors_allowed_origins.iter().enumerate() {
        f.check(
            is_origin(origin),
            format!("server.cors_allowed_origins[{i}]"),
            format!("{origin:?} is not an origin like \"https://portal.example.com\" (no path, no wildcard)"),
        );
    }
}

fn audit_sink(config: &Config, f: &mut Findings) {
    let sink = &config.audit_sink;
    f.within(
        sink.queue_capacity,
        1..=1_000_000,
        "audit_sink.queue_capacity",
    );
    if sink.kind == super::SinkKind::File {
        f.check(
            sink.path.as_ref().is_some_and(|p| p.is_absolute()),
            "audit_sink.path",
            "kind = \"file\" needs the absolute path of the file to append to",
        );
    }
}

fn cache(config: &Config, f: &mut Findings) {
    let cache = &config.cache;
    f.within(cache.max_entries, 1..=1_000_000, "cache.max_entries");
    f.check(
        cache.min_remaining_secs <= 3600,
        "cache.min_remaining_secs",
        "must be at most 3600",
    );
    f.check(
        (0.1..=0.9).contains(&cache.refresh_fraction),
        "cache.refresh_fraction",
        "must be 0.1 to 0.9: a refresh needs time before the entry stops being served",
    );
}

fn is_origin(origin: &str) -> bool {
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
}

fn database_and_audit(config: &Config, f: &mut Findings) {
    let url = config.database.url.expose_secret();
    f.check(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "database.url",
        format!(
            "must be a postgres:// URL (set it here or in {})",
            super::DATABASE_URL_ENV
        ),
    );
    f.at_least(
        config.database.max_connections,
        1,
        "database.max_connections",
    );
    f.at_least(
        config.database.acquire_timeout_secs,
        1,
        "database.acquire_timeout_secs",
    );
    f.at_least(
        config.database.read_max_connections,
        1,
        "database.read_max_connections",
    );
    f.within(
        config.database.read_statement_timeout_secs,
        1..=300,
        "database.read_statement_timeout_secs",
    );
    let key_id = &config.audit.fingerprint_key_id;
    f.check(
        is_key_id(key_id),
        "audit.fingerprint_key_id",
        format!("must be {KEY_ID_GRAMMAR}"),
    );
    for (i, (id, key)) in config.audit.previous_fingerprint_keys.iter().enumerate() {
        // An id outside the grammar, or as long as a key, may be a key written in the wrong
        // place (`key=id`): not repeated.
        let at = if is_key_id(id) && id.len() < 32 {
            format!("audit.previous_fingerprint_keys.{id}")
        } else {
            format!("audit.previous_fingerprint_keys (entry {})", i + 1)
        };
        f.check(
            is_key_id(id) && id != key_id && key.expose_secret().len() >= 32,
            at,
            format!(
                "the id must be {KEY_ID_GRAMMAR} and differ from the current key id, the key hold at least 32 bytes"
            ),
        );
    }
    f.check(
        config.audit.chain_key.expose_secret().len() >= 32,
        "audit.chain_key",
        format!(
            "must be at least 32 bytes (set it here or in {})",
            super::CHAIN_KEY_ENV
        ),
    );
    f.at_least(config.audit.queue_capacity, 1, "audit.queue_capacity");
    f.at_least(
        config.audit.refusal_queue_capacity,
        1,
        "audit.refusal_queue_capacity",
    );
    f.within(
        config.audit.shed_report_interval_secs,
        1..=3600,
        "audit.shed_report_interval_secs",
    );
    f.check(
        (1..=1000).contains(&config.audit.max_batch),
        "audit.max_batch",
        "must be 1 to 1000 (a batch is one transaction under the writers' lock: a longer one holds every replica's appends back longer)",
    );
    for (i, name) in config.audit.admin_rules.iter().enumerate() {
        f.check(
            config.rules.iter().any(|r| &r.name == name),
            format!("audit.admin_rules[{i}]"),
            format!("no rule is named {name:?}"),
        );
    }
    f.check(
        config.audit.fingerprint_key.expose_secret().len() >= 32,
        "audit.fingerprint_key",
        format!(
            "must be at least 32 bytes (set it here or in {})",
            super::FINGERPRINT_KEY_ENV
        ),
    );
}

/// What a fingerprint key id may be.
pub(super) const KEY_ID_GRAMMAR: &str = "1 to 64 of [A-Za-z0-9._-]";

/// Whether `id` fits [`KEY_ID_GRAMMAR`].
pub(super) fn is_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn issuer_entry(issuer: &IssuerConfig, at: &str, f: &mut Findings) {
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
    let hmac = |a: &Algorithm| a.family() == AlgorithmFamily::Hmac;
    f.check(
        issuer.ca_file.is_none()
            || matches!(
                issuer.key_source(),
                Some(KeySource::JwksUri(_) | KeySource::Discovery)
            ),
        format!("{at}.ca_file"),
        "only applies to keys fetched over https (jwks_uri or discovery = true)",
    );
    match issuer.key_source() {
        None => f.check(
            false,
            at,
            "set exactly one of jwks_uri, discovery = true, jwks_file, shared_secret_env",
        ),
        Some(KeySource::SharedSecret(var)) => {
            f.check(
                issuer.algorithms.iter().all(hmac),
                format!("{at}.algorithms"),
                "an issuer with shared_secret_env may only use HS256, HS384 or HS512",
            );
            f.check(
                issuer
                    .shared_secret
                    .as_ref()
                    .is_some_and(|s| s.expose_secret().len() >= 32),
                format!("{at}.shared_secret_env"),
                format!("environment variable {var} must hold a secret of at least 32 bytes"),
            );
        }
        Some(source) => {
            f.check(
                !issuer.algorithms.iter().any(hmac),
                format!("{at}.algorithms"),
                "HS256/HS384/HS512 need a shared secret (shared_secret_env); public keys never verify HMAC tokens",
            );
            let url = match source {
                KeySource::JwksUri(uri) => Some(("jwks_uri", uri)),
                KeySource::Discovery => Some(("issuer", issuer.issuer.clone())),
                _ => None,
            };
            if let Some((field, url)) = url {
                f.check(
                    is_fetchable_url(&url),
                    format!("{at}.{field}"),
                    format!(
                        "{url:?} must be an https:// URL (http:// only for loopback addresses)"
                    ),
                );
            }
        }
    }
}

/// Keys fetched over plain HTTP could be swapped in transit, so http:// is for local
/// development only. Also applied to the `jwks_uri` that OIDC discovery names.
pub(crate) fn is_fetchable_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
        _ => false,
    }
}
