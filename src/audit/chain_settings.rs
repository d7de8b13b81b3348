//! `[audit_chain]`: how long an append to the audit chain may wait on the database, and how
//! often the service publishes the chain's head in its log. The config deserialises into it;
//! it holds settings only and opens no connection.

use std::num::NonZeroU64;
use std::time::Duration;

use serde::Deserialize;

/// `[audit_chain]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuditChainConfig {
    /// Longest wait for the chain lock (or any row lock) in an append, in milliseconds.
    pub lock_timeout_ms: NonZeroU64,
    /// Longest any statement of an append may run, in milliseconds.
    pub statement_timeout_ms: NonZeroU64,
    /// Longest an append's transaction may sit idle (its writer cut off), in milliseconds,
    /// before Postgres ends the session and frees the lock for every other replica.
    pub idle_in_transaction_timeout_ms: NonZeroU64,
    /// Seconds between two log lines naming the chain's head (id and hash).
    pub head_log_interval_secs: NonZeroU64,
}

impl Default for AuditChainConfig {
    fn default() -> Self {
        let n = |v| NonZeroU64::new(v).expect("not zero");
        Self {
            lock_timeout_ms: n(2_000),
            statement_timeout_ms: n(5_000),
            idle_in_transaction_timeout_ms: n(5_000),
            head_log_interval_secs: n(60),
        }
    }
}

impl AuditChainConfig {
    /// The interval between two chain-head log lines.
    pub(crate) fn head_log_interval(&self) -> Duration {
        Duration::from_secs(self.head_log_interval_secs.get())
    }
}
