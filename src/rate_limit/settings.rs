//! `[rate_limit]` as the config file spells it, and the per-rule buckets the config adds to
//! it (`RateLimitSettings`). Plain settings: no bucket is kept here.

use std::collections::BTreeMap;

use serde::Deserialize;

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

/// Every limit the issuing endpoint charges against: `[rate_limit]`, and the bucket of each
/// rule that sets its own (by rule name).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RateLimitSettings {
    /// `[rate_limit]`.
    pub global: RateLimitsConfig,
    /// `[[rules]] rate_limit`, by rule name.
    pub by_rule: BTreeMap<String, RateLimitConfig>,
}
