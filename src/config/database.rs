//! `[database]`: where the audit log lives and how its pools are bounded. The URL is a
//! secret: no message or `Debug` output quotes it.

use std::fmt;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::errors::Findings;
use super::{DATABASE_URL_ENV, empty_secret};

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

/// Checks `[database]`.
pub(super) fn database(database: &DatabaseConfig, f: &mut Findings) {
    let url = database.url.expose_secret();
    f.check(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "database.url",
        format!("must be a postgres:// URL (set it here or in {DATABASE_URL_ENV})"),
    );
    f.at_least(database.max_connections, 1, "database.max_connections");
    f.at_least(
        database.acquire_timeout_secs,
        1,
        "database.acquire_timeout_secs",
    );
    f.at_least(
        database.read_max_connections,
        1,
        "database.read_max_connections",
    );
    f.within(
        database.read_statement_timeout_secs,
        1..=300,
        "database.read_statement_timeout_secs",
    );
}
