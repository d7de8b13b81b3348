//! `CacheMode`: who may be handed a rule's cached credential. Shared by the rules that set it
//! and the credential cache that obeys it; knows nothing of either.

use serde::Deserialize;

/// Who may be handed a rule's cached credential: the `cache` setting of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CacheMode {
    /// `"per-caller"`: each caller (issuer and subject) keeps its own session, so CloudTrail
    /// names the caller.
    #[default]
    PerCaller,
    /// `"shared"`: callers whose grant, session tags and source identity are identical share
    /// one session; each caller's audit row still names it.
    Shared,
    /// `"off"`: every request calls AWS.
    Off,
}
