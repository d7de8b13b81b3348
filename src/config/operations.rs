//! Settings for operating the service while it runs: the deny list (the kill switch), who
//! administers it, and watching the config file for changes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ClaimPatterns;

/// `[[deny]]`: callers refused before any rule is considered. Every field given must match
/// (issuer, subject, the caller's first matching rule, each claim); at least one is given.
/// The stored deny list (`POST /v1/admin/deny`) holds entries of this same shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenyEntryConfig {
    /// The issuer's configured name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The `sub` claim: exact, a glob, `{ regex = "..." }`, or a list of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<ClaimPatterns>,
    /// The caller's first matching rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Claim name (or JSON pointer) to patterns, as in a rule's `claims`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, ClaimPatterns>,
    /// Why, for the operators (never shown to the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AdminConfig {
    /// Callers whose first matching rule is one of these may add to, list and remove from
    /// the stored deny list.
    pub rules: Vec<String>,
    /// How often each replica reads the stored deny list.
    pub deny_poll_interval_secs: u64,
    /// How long after its last successful read a replica still trusts the stored deny
    /// list; past it, issuing answers 503 rather than trust a list that may miss entries.
    pub deny_max_staleness_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            deny_poll_interval_secs: 2,
            deny_max_staleness_secs: 20,
        }
    }
}

impl AdminConfig {
    /// How often the stored deny list is read.
    pub(crate) fn deny_poll_interval(&self) -> Duration {
        Duration::from_secs(self.deny_poll_interval_secs)
    }

    /// How old the stored deny list may be and still be trusted.
    pub(crate) fn deny_max_staleness(&self) -> Duration {
        Duration::from_secs(self.deny_max_staleness_secs)
    }
}

/// `[reload]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ReloadConfig {
    /// How often the config file's content is compared with the one applied; a change
    /// reloads it as SIGHUP does. 0: only SIGHUP reloads.
    pub watch_interval_secs: u64,
}

impl ReloadConfig {
    /// How often to look at the file, if at all.
    pub(crate) fn watch_interval(&self) -> Option<Duration> {
        (self.watch_interval_secs > 0).then(|| Duration::from_secs(self.watch_interval_secs))
    }
}
