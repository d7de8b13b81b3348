//! The 429's header fields, from the rate limiter's refusal; deciding who is refused is the
//! rate limiter's, not this module's. `Retry-After` (RFC 9110) says when to come back;
//! `RateLimit-Policy` and `RateLimit` follow draft-ietf-httpapi-ratelimit-headers-11, the
//! current draft: Structured Field lists of named items, the policy carrying the quota `q`
//! and window `w`, the service limit carrying what remains `r` and when it returns `t`,
//! e.g. `RateLimit-Policy: "per-caller";q=100;w=10` and `RateLimit: "per-caller";r=0;t=1`.
//! (Drafts up to -07 used unnamed `limit=`/`remaining=`/`reset=` dictionaries; those are
//! not sent.)

use axum::http::{HeaderName, HeaderValue, header};

use crate::rate_limit::RateLimited;

/// `Retry-After`, `RateLimit-Policy` and `RateLimit` for the 429.
pub(super) fn fields(limited: &RateLimited) -> [(HeaderName, HeaderValue); 3] {
    // The bucket holds `burst` requests and refills completely in `w` seconds: the closest a
    // token bucket comes to the draft's "quota per window".
    let name = limited.policy_name();
    let retry_after = limited.retry_after();
    let policy = format!("\"{name}\";q={};w={}", limited.burst(), limited.refill());
    // Nothing remains now; one request's worth returns after Retry-After, so the effective
    // window ends then too (the draft asks that the two agree).
    let limit = format!("\"{name}\";r=0;t={retry_after}");
    [
        (header::RETRY_AFTER, HeaderValue::from(retry_after.get())),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rate_limit::Policy;
    use crate::rate_limit::RateLimitConfig;

    fn rendered(limited: &RateLimited) -> Vec<(String, String)> {
        fields(limited)
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
        assert_eq!(limited.retry_after().get(), 10);
        let fields = rendered(&limited);
        assert_eq!(fields[1].1, "\"per-caller\";q=3;w=30");
        assert_eq!(fields[2].1, "\"per-caller\";r=0;t=10");
        assert_eq!(fields[0].1, "10");
    }

    #[test]
    fn never_says_zero_seconds() {
        let limited = RateLimited::new(Policy::PerCaller, limit(1_000_000.0, 1), Duration::ZERO);
        assert_eq!(limited.retry_after().get(), 1);
        assert_eq!(rendered(&limited)[1].1, "\"per-caller\";q=1;w=1");
    }
}
