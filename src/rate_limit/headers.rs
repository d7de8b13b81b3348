//! The 429's header fields. `Retry-After` (RFC 9110) says when to come back;
//! `RateLimit-Policy` and `RateLimit` follow draft-ietf-httpapi-ratelimit-headers-11, the
//! current draft: Structured Field lists of named items, the policy carrying the quota `q`
//! and window `w`, the service limit carrying what remains `r` and when it returns `t`,
//! e.g. `RateLimit-Policy: "per-caller";q=100;w=10` and `RateLimit: "per-caller";r=0;t=1`.
//! (Drafts up to -07 used unnamed `limit=`/`remaining=`/`reset=` dictionaries; those are
//! not sent.)

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, header};

use crate::config::RateLimitConfig;
use crate::error::whole_seconds;

/// Which bucket refused: named in the fields' policy and in the audit reason.
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
    "{who} than its limit of {burst} at once and {per_second} per second; retry in {retry_after_secs} s",
    who = policy.who(),
    burst = limit.burst,
    per_second = limit.per_second
)]
pub(crate) struct RateLimited {
    policy: Policy,
    limit: RateLimitConfig,
    pub(super) retry_after_secs: u64,
}

impl RateLimited {
    /// Refused by `policy` under `limit`, with room again after `wait`.
    pub(super) fn new(policy: Policy, limit: RateLimitConfig, wait: Duration) -> Self {
        Self {
            policy,
            limit,
            retry_after_secs: whole_seconds(wait),
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

    /// `Retry-After`, `RateLimit-Policy` and `RateLimit` for the 429.
    pub(crate) fn headers(&self) -> [(HeaderName, HeaderValue); 3] {
        // The bucket holds `burst` requests and refills completely in `w` seconds: the
        // closest a token bucket comes to the draft's "quota per window".
        let window = whole_seconds(Duration::from_secs_f64(
            f64::from(self.limit.burst) / self.limit.per_second,
        ));
        let name = self.policy.name();
        let policy = format!("\"{name}\";q={};w={window}", self.limit.burst);
        // Nothing remains now; one request's worth returns after Retry-After, so the
        // effective window ends then too (the draft asks that the two agree).
        let limit = format!("\"{name}\";r=0;t={}", self.retry_after_secs);
        [
            (
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs),
            ),
            (
                HeaderName::from_static("ratelimit-policy"),
                HeaderValue::try_from(policy).expect("ASCII digits and a fixed name"),
            ),
            (
                HeaderName::from_static("ratelimit"),
                HeaderValue::try_from(limit).expect("ASCII digits and a fixed name"),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(limited: &RateLimited) -> Vec<(String, String)> {
        limited
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    fn limit(per_second: f64, burst: u32) -> RateLimitConfig {
        RateLimitConfig { per_second, burst }
    }

    #[test]
    fn renders_retry_after_and_the_current_drafts_fields() {
        let limited = RateLimited::new(
            Policy::PerCaller,
            limit(10.0, 100),
            Duration::from_millis(100),
        );
        assert_eq!(
            rendered(&limited),
            [
                ("retry-after".to_owned(), "1".to_owned()),
                (
                    "ratelimit-policy".to_owned(),
                    "\"per-caller\";q=100;w=10".to_owned()
                ),
                ("ratelimit".to_owned(), "\"per-caller\";r=0;t=1".to_owned()),
            ]
        );
    }

    #[test]
    fn slow_refills_round_up_and_agree_with_retry_after() {
        let limited = RateLimited::new(
            Policy::PerCaller,
            limit(0.1, 3),
            Duration::from_millis(9_200),
        );
        assert_eq!(limited.retry_after_secs, 10);
        let fields = rendered(&limited);
        assert_eq!(fields[1].1, "\"per-caller\";q=3;w=30");
        assert_eq!(fields[2].1, "\"per-caller\";r=0;t=10");
        assert_eq!(fields[0].1, "10");
    }

    #[test]
    fn never_says_zero_seconds() {
        let limited = RateLimited::new(Policy::PerCaller, limit(1_000_000.0, 1), Duration::ZERO);
        assert_eq!(limited.retry_after_secs, 1);
        assert_eq!(rendered(&limited)[1].1, "\"per-caller\";q=1;w=1");
    }
}
