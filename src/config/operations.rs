//! Settings for operating the service while it runs: who administers the deny list (the
//! kill switch; its `[[deny]]` entries are the kill switch's own `EntrySpec`), and watching
//! the config file for changes.

use std::time::Duration;

use serde::Deserialize;

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
