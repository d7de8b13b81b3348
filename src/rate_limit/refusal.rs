//! `RateLimited`, the rate limiter's refusal: which bucket refused, its limit, and when to
//! come back; everything the 429 says. Turning it into HTTP is the error boundary's
//! (`error/rate_limited.rs`), not this module's.

use std::time::Duration;

use super::RateLimitConfig;
use crate::domain::WholeSeconds;

/// Which bucket refused: named in the 429's fields and in the audit reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// A verified caller's own bucket.
    PerCaller,
    /// The bucket of a verified caller that no rule admits.
    Unadmitted,
    /// A client network's bucket of requests whose token failed.
    Unauthenticated,
}

impl Policy {
    /// The policy's name in `RateLimit-Policy` and `RateLimit`.
    fn name(self) -> &'static str {
        match self {
            Self::PerCaller => "per-caller",
            Self::Unadmitted => "unadmitted-per-caller",
            Self::Unauthenticated => "unauthenticated-per-address",
        }
    }

    fn who(self) -> &'static str {
        match self {
            Self::PerCaller => "this caller sent more requests",
            Self::Unadmitted => "this caller, whom no rule admits, sent more requests",
            Self::Unauthenticated => "this client address sent more requests without a valid token",
        }
    }
}

/// A caller over its limit: what the 429 tells it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{who} than its limit of {burst} at once and {per_second} per second; retry in {retry_after} s",
    who = policy.who(),
    burst = limit.burst,
    per_second = limit.per_second
)]
pub(crate) struct RateLimited {
    policy: Policy,
    limit: RateLimitConfig,
    retry_after: WholeSeconds,
}

impl RateLimited {
    /// Refused by `policy` under `limit`, with room again after `wait`.
    pub(crate) fn new(policy: Policy, limit: RateLimitConfig, wait: Duration) -> Self {
        Self {
            policy,
            limit,
            retry_after: WholeSeconds::from(wait),
        }
    }

    /// The audit reason: `rate_limited`, `rate_limited:unadmitted` or
    /// `rate_limited:unauthenticated`.
    pub(crate) fn reason(&self) -> &'static str {
        match self.policy {
            Policy::PerCaller => "rate_limited",
            Policy::Unadmitted => "rate_limited:unadmitted",
            Policy::Unauthenticated => "rate_limited:unauthenticated",
        }
    }

    /// The refusing policy's name, such as `per-caller`.
    pub(crate) fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// How many requests the bucket holds at once.
    pub(crate) fn burst(&self) -> u32 {
        self.limit.burst
    }

    /// How long an empty bucket takes to refill completely.
    pub(crate) fn refill(&self) -> WholeSeconds {
        WholeSeconds::from(Duration::from_secs_f64(
            f64::from(self.limit.burst) / self.limit.per_second,
        ))
    }

    /// When one request's worth is back.
    pub(crate) fn retry_after(&self) -> WholeSeconds {
        self.retry_after
    }
}
