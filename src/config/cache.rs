//! `[cache]`: how many issued credentials are kept and when they are renewed. Checked as
//! read; which rules may use it is each rule's `cache`.

use serde::Deserialize;

use super::errors::Findings;

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

/// Checks `[cache]`.
pub(super) fn cache(cache: &CacheConfig, f: &mut Findings) {
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
