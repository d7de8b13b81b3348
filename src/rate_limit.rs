//! The per-caller rate limit on the issuing endpoint: a token bucket per caller (issuer and
//! subject), from `[rate_limit]` or the caller's rule's own `rate_limit`. It is checked after
//! the token is verified and the rule matched, so only a known caller spends its own bucket
//! and nobody can spend another's. A caller over its limit gets 429 with `Retry-After` and
//! the IETF `RateLimit-Policy` and `RateLimit` fields ([`headers`]).
//!
//! Requests whose token fails verification have no caller to charge, so they are charged to
//! their client address instead ([`RateLimits::check_unauthenticated`]): junk from one
//! place is answered with 429 soon, while verified callers at that address are unaffected.
//!
//! Buckets live in memory, per replica. A bucket that has refilled completely is
//! indistinguishable from a new one, so a sweep drops those periodically and the memory
//! held is bounded by the callers active within a refill time, not by all callers ever seen.

mod headers;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::task::JoinHandle;

use crate::auth::Caller;
use crate::config::{RateLimitConfig, RateLimitsConfig, RuleConfig};
use crate::error::ApiError;
use crate::policy::Rule;

pub(crate) use headers::{Policy, RateLimited};

/// How often buckets that have refilled are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Every bucket: the global one, each overriding rule's, and each client address's for
/// requests that fail authentication.
pub(crate) struct RateLimits {
    global: Buckets,
    by_rule: HashMap<String, Buckets>,
    unauthenticated: Buckets<IpAddr>,
}

/// One limit and the buckets of the callers (or addresses) under it.
struct Buckets<K: Hash + Eq + Clone = CallerKey> {
    policy: Policy,
    limit: RateLimitConfig,
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
}

/// Whose bucket: subjects are only unique within their issuer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CallerKey {
    issuer: Arc<str>,
    subject: String,
}

impl CallerKey {
    fn of(caller: &Caller) -> Self {
        Self {
            issuer: caller.issuer.clone(),
            subject: caller.subject.clone(),
        }
    }
}

impl RateLimits {
    /// Buckets for `[rate_limit]` and for every rule that sets its own (validated config).
    pub(crate) fn new(global: &RateLimitsConfig, rules: &[RuleConfig]) -> Self {
        Self {
            global: Buckets::new(Policy::PerCaller, global.per_caller()),
            by_rule: rules
                .iter()
                .filter_map(|r| {
                    Some((
                        r.name.clone(),
                        Buckets::new(Policy::PerCaller, r.rate_limit?),
                    ))
                })
                .collect(),
            unauthenticated: Buckets::new(Policy::Unauthenticated, global.unauthenticated),
        }
    }

    /// Takes one request from the caller's bucket under its rule's limit, or refuses with
    /// 429 when the bucket is empty.
    pub(crate) fn check(&self, caller: &Caller, rule: &Rule) -> Result<(), ApiError> {
        let buckets = self.by_rule.get(&rule.name).unwrap_or(&self.global);
        buckets.take(&CallerKey::of(caller))
    }

    /// Takes one failed authentication from the client address's bucket, or refuses with
    /// 429 when it is empty. Without an address (never over TCP) nothing is charged.
    pub(crate) fn check_unauthenticated(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        client.map_or(Ok(()), |addr| self.unauthenticated.take(&addr))
    }

    /// These buckets when the limits of a reloaded config are the same, so that no caller's
    /// bucket refills by a reload; otherwise new ones (every bucket starts full).
    pub(crate) fn renewed(
        self: &Arc<Self>,
        global: &RateLimitsConfig,
        rules: &[RuleConfig],
    ) -> Arc<Self> {
        let fresh = Self::new(global, rules);
        let same = fresh.global.limit == self.global.limit
            && fresh.unauthenticated.limit == self.unauthenticated.limit
            && fresh.by_rule.len() == self.by_rule.len()
            && fresh
                .by_rule
                .iter()
                .all(|(rule, b)| self.by_rule.get(rule).is_some_and(|o| o.limit == b.limit));
        if same {
            Arc::clone(self)
        } else {
            let fresh = Arc::new(fresh);
            fresh.spawn_sweeper();
            fresh
        }
    }

    /// Drops refilled buckets every minute, until these limits are dropped (replaced by a
    /// reload) or the returned task is aborted.
    pub(crate) fn spawn_sweeper(self: &Arc<Self>) -> JoinHandle<()> {
        let limits = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                ticks.tick().await;
                match limits.upgrade() {
                    Some(limits) => limits.sweep(),
                    None => return,
                }
            }
        })
    }

    fn sweep(&self) {
        for buckets in std::iter::once(&self.global).chain(self.by_rule.values()) {
            buckets.sweep();
        }
        self.unauthenticated.sweep();
    }

    /// Callers and addresses currently holding a bucket (refilled ones may linger until the
    /// next sweep).
    #[cfg(test)]
    fn tracked_callers(&self) -> usize {
        std::iter::once(&self.global)
            .chain(self.by_rule.values())
            .map(|b| b.limiter.len())
            .sum::<usize>()
            + self.unauthenticated.limiter.len()
    }
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Takes one request from `key`'s bucket, or refuses with 429.
    fn take(&self, key: &K) -> Result<(), ApiError> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            ApiError::RateLimited(RateLimited::new(self.policy, self.limit, wait))
        })
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn new(policy: Policy, limit: RateLimitConfig) -> Self {
        let refill_one = Duration::from_secs_f64(1.0 / limit.per_second);
        let quota = Quota::with_period(refill_one)
            .expect("per_second is validated to be at most 1000000")
            .allow_burst(NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN));
        Self {
            policy,
            limit,
            limiter: RateLimiter::keyed(quota),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::policy::rule_config;

    fn caller(issuer: &str, subject: &str) -> Caller {
        Caller {
            issuer: issuer.into(),
            subject: subject.to_owned(),
            claims: Map::new(),
        }
    }

    fn limit(per_second: f64, burst: u32) -> RateLimitConfig {
        RateLimitConfig { per_second, burst }
    }

    /// `[rate_limit]` with this per-caller limit and a strict unauthenticated one.
    fn config(per_second: f64, burst: u32) -> RateLimitsConfig {
        RateLimitsConfig {
            per_second,
            burst,
            unauthenticated: limit(0.001, 2),
        }
    }

    #[test]
    fn a_caller_is_its_issuer_and_subject() {
        assert_eq!(
            CallerKey::of(&caller("ci", "repo:a")),
            CallerKey::of(&caller("ci", "repo:a"))
        );
        assert_ne!(
            CallerKey::of(&caller("ci", "repo:a")),
            CallerKey::of(&caller("sso", "repo:a"))
        );
        assert_ne!(
            CallerKey::of(&caller("ci", "repo:a")),
            CallerKey::of(&caller("ci", "repo:b"))
        );
    }

    #[test]
    fn each_caller_has_its_own_bucket_and_a_rule_may_set_its_own_limit() {
        let mut strict = rule_config("strict", "acme");
        strict.rate_limit = Some(limit(0.001, 1));
        let configs = [rule_config("open", "*"), strict];
        let open = Rule::compile(&configs[0]).unwrap();
        let strict = Rule::compile(&configs[1]).unwrap();
        let (open, strict) = (&open, &strict);
        let limits = RateLimits::new(&config(0.001, 2), &configs);
        let (alice, bob) = (caller("ci", "alice"), caller("ci", "bob"));

        assert!(limits.check(&alice, open).is_ok());
        assert!(limits.check(&alice, open).is_ok());
        let Err(ApiError::RateLimited(refused)) = limits.check(&alice, open) else {
            panic!("the third request within the burst of 2 is refused");
        };
        assert!(refused.retry_after_secs >= 999, "{refused:?}");
        assert!(limits.check(&bob, open).is_ok(), "bob has his own bucket");

        assert!(
            limits.check(&alice, strict).is_ok(),
            "the rule's own bucket"
        );
        assert!(
            limits.check(&alice, strict).is_err(),
            "the rule's burst is 1"
        );
        assert_eq!(limits.tracked_callers(), 3);
    }

    #[test]
    fn the_sweep_drops_refilled_buckets_only() {
        let limits = RateLimits::new(&config(1_000_000.0, 1), &[]);
        let slow = RateLimits::new(&config(0.001, 1), &[]);
        let rule = &Rule::compile(&rule_config("open", "*")).unwrap();
        limits.check(&caller("ci", "a"), rule).unwrap();
        slow.check(&caller("ci", "a"), rule).unwrap();
        std::thread::sleep(Duration::from_millis(5));

        limits.sweep();
        slow.sweep();

        assert_eq!(limits.tracked_callers(), 0, "refilled after a microsecond");
        assert_eq!(slow.tracked_callers(), 1, "still empty for 1000 s");
    }

    #[test]
    fn failed_authentications_are_charged_to_the_client_address() {
        let limits = RateLimits::new(&config(1.0, 100), &[]);
        let (a, b) = ("192.0.2.1".parse().ok(), "192.0.2.2".parse().ok());

        assert!(limits.check_unauthenticated(a).is_ok());
        assert!(limits.check_unauthenticated(a).is_ok());
        let Err(ApiError::RateLimited(refused)) = limits.check_unauthenticated(a) else {
            panic!("the third failure within the burst of 2 is refused");
        };
        assert_eq!(refused.reason(), "rate_limited:unauthenticated");
        assert!(
            limits.check_unauthenticated(b).is_ok(),
            "b has its own bucket"
        );
        assert!(limits.check_unauthenticated(None).is_ok());
    }
}
