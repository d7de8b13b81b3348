//! Rate limits: one token bucket per verified identity (issuer and subject) for everything
//! it sends, and one per client network for requests whose token fails.
//!
//! A verified caller is charged once per request, on every endpoint behind a bearer token,
//! before anything else is decided about it: a refusal (no rule, a deny entry, a malformed
//! body, a request wider than its rule) costs the same as an issuance, so a validly signed
//! stranger cannot make the service do unbounded work or write unbounded audit rows. Its
//! bucket's limit depends on where it stands ([`Standing`]): a caller whose first matching
//! rule admits it has `[rate_limit]`'s per-caller limit or its rule's own; a caller that no
//! rule admits has the stricter `[rate_limit] unadmitted`. Nobody can spend another's
//! bucket. A caller over its limit gets 429 with `Retry-After` and the IETF
//! `RateLimit-Policy` and `RateLimit` fields, which the error boundary renders from the
//! refusal ([`RateLimited`]).
//!
//! Requests whose token fails verification have no caller to charge, so they are charged to
//! their client's network instead ([`RateLimits::check_unauthenticated`]): the address cut
//! to `[rate_limit] unauthenticated_prefix` (/32 for IPv4 and /64 for IPv6 by default), so
//! junk from one place is answered with 429 soon, however many of its network's addresses
//! it rotates through, while verified callers there are unaffected.
//!
//! Buckets live in memory, per replica. A bucket that has refilled completely is
//! indistinguishable from a new one, so a sweep drops those periodically and the memory
//! held is bounded by the callers active within a refill time, not by all callers ever seen.

mod refusal;
mod settings;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use tokio::task::JoinHandle;

use crate::auth::Caller;
use crate::policy::Rule;

pub(crate) use refusal::{Policy, RateLimited};
pub(crate) use settings::{AddressPrefix, RateLimitConfig, RateLimitSettings, RateLimitsConfig};

/// How often buckets that have refilled are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Every bucket: the global per-caller one, each overriding rule's, the unadmitted
/// callers', and each client network's for requests that fail authentication.
pub(crate) struct RateLimits {
    global: Buckets,
    by_rule: HashMap<String, Buckets>,
    unadmitted: Buckets,
    unauthenticated: Buckets<IpNet>,
    prefix: AddressPrefix,
}

/// Where a verified caller stands with the rules, which decides whose limit it is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Standing<'a> {
    /// Its first matching rule admits it, and no deny entry refuses it.
    Admitted(&'a Rule),
    /// No rule matches it, or a deny entry refuses it.
    Unadmitted,
}

/// One limit and the buckets of the callers (or networks) under it.
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
    /// Buckets for `[rate_limit]` and for every rule that sets its own.
    pub(crate) fn new(settings: &RateLimitSettings) -> Self {
        let global = &settings.global;
        Self {
            global: Buckets::new(Policy::PerCaller, global.per_caller()),
            by_rule: settings
                .by_rule
                .iter()
                .map(|(rule, limit)| (rule.clone(), Buckets::new(Policy::PerCaller, *limit)))
                .collect(),
            unadmitted: Buckets::new(Policy::Unadmitted, global.unadmitted),
            unauthenticated: Buckets::new(Policy::Unauthenticated, global.unauthenticated),
            prefix: global.unauthenticated_prefix,
        }
    }

    /// Takes one request from the verified caller's bucket under the limit its standing
    /// gives it, or refuses when the bucket is empty.
    pub(crate) fn charge(
        &self,
        caller: &Caller,
        standing: Standing<'_>,
    ) -> Result<(), RateLimited> {
        let buckets = match standing {
            Standing::Admitted(rule) => self.by_rule.get(&rule.name).unwrap_or(&self.global),
            Standing::Unadmitted => &self.unadmitted,
        };
        buckets.take(&CallerKey::of(caller))
    }

    /// Takes one failed authentication from the client network's bucket, or refuses when
    /// it is empty. Without an address (never over TCP) nothing is charged.
    pub(crate) fn check_unauthenticated(&self, client: Option<IpAddr>) -> Result<(), RateLimited> {
        client.map_or(Ok(()), |addr| {
            self.unauthenticated.take(&self.network(addr))
        })
    }

    /// The network `addr` is charged as: the address cut to the configured prefix.
    fn network(&self, addr: IpAddr) -> IpNet {
        let bits = match addr {
            IpAddr::V4(_) => self.prefix.ipv4,
            IpAddr::V6(_) => self.prefix.ipv6,
        };
        IpNet::new(addr, bits)
            .expect("prefix lengths are validated to fit their address family")
            .trunc()
    }

    /// These buckets when the limits of a reloaded config are the same, so that no caller's
    /// bucket refills by a reload; otherwise new ones (every bucket starts full).
    pub(crate) fn renewed(self: &Arc<Self>, settings: &RateLimitSettings) -> Arc<Self> {
        let fresh = Self::new(settings);
        let same = fresh.global.limit == self.global.limit
            && fresh.unadmitted.limit == self.unadmitted.limit
            && fresh.unauthenticated.limit == self.unauthenticated.limit
            && fresh.prefix == self.prefix
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
        for buckets in [&self.global, &self.unadmitted]
            .into_iter()
            .chain(self.by_rule.values())
        {
            buckets.sweep();
        }
        self.unauthenticated.sweep();
    }

    /// Callers and networks currently holding a bucket (refilled ones may linger until the
    /// next sweep).
    #[cfg(test)]
    fn tracked_callers(&self) -> usize {
        [&self.global, &self.unadmitted]
            .into_iter()
            .chain(self.by_rule.values())
            .map(|b| b.limiter.len())
            .sum::<usize>()
            + self.unauthenticated.limiter.len()
    }
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Takes one request from `key`'s bucket, or refuses.
    fn take(&self, key: &K) -> Result<(), RateLimited> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            RateLimited::new(self.policy, self.limit, wait)
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
    use std::collections::BTreeMap;

    use serde_json::Map;

    use super::*;
    use crate::policy::test_rule;

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
            unadmitted: limit(0.001, 1),
            unauthenticated: limit(0.001, 2),
            unauthenticated_prefix: AddressPrefix::default(),
        }
    }

    /// `global`, with no rule setting its own limit.
    fn settings(global: RateLimitsConfig) -> RateLimitSettings {
        RateLimitSettings {
            global,
            by_rule: BTreeMap::new(),
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
        let open = test_rule("open", "*");
        let strict = test_rule("strict", "acme");
        let (open, strict) = (&open, &strict);
        let mut settings = settings(config(0.001, 2));
        settings
            .by_rule
            .insert("strict".to_owned(), limit(0.001, 1));
        let limits = RateLimits::new(&settings);
        let (alice, bob) = (caller("ci", "alice"), caller("ci", "bob"));

        assert!(limits.charge(&alice, Standing::Admitted(open)).is_ok());
        assert!(limits.charge(&alice, Standing::Admitted(open)).is_ok());
        let Err(refused) = limits.charge(&alice, Standing::Admitted(open)) else {
            panic!("the third request within the burst of 2 is refused");
        };
        assert!(refused.retry_after().get() >= 999, "{refused:?}");
        assert!(
            limits.charge(&bob, Standing::Admitted(open)).is_ok(),
            "bob has his own bucket"
        );

        assert!(
            limits.charge(&alice, Standing::Admitted(strict)).is_ok(),
            "the rule's own bucket"
        );
        assert!(
            limits.charge(&alice, Standing::Admitted(strict)).is_err(),
            "the rule's burst is 1"
        );
        assert!(
            limits.charge(&alice, Standing::Unadmitted).is_ok(),
            "an unadmitted caller's own bucket"
        );
        let Err(refused) = limits.charge(&alice, Standing::Unadmitted) else {
            panic!("the unadmitted burst is 1");
        };
        assert_eq!(refused.reason(), "rate_limited:unadmitted");
        assert_eq!(limits.tracked_callers(), 4);
    }

    #[test]
    fn the_sweep_drops_refilled_buckets_only() {
        let limits = RateLimits::new(&settings(config(1_000_000.0, 1)));
        let slow = RateLimits::new(&settings(config(0.001, 1)));
        let rule = &test_rule("open", "*");
        limits
            .charge(&caller("ci", "a"), Standing::Admitted(rule))
            .unwrap();
        slow.charge(&caller("ci", "a"), Standing::Admitted(rule))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));

        limits.sweep();
        slow.sweep();

        assert_eq!(limits.tracked_callers(), 0, "refilled after a microsecond");
        assert_eq!(slow.tracked_callers(), 1, "still empty for 1000 s");
    }

    #[test]
    fn failed_authentications_are_charged_to_the_client_address() {
        let limits = RateLimits::new(&settings(config(1.0, 100)));
        let (a, b) = ("192.0.2.1".parse().ok(), "192.0.2.2".parse().ok());

        assert!(limits.check_unauthenticated(a).is_ok());
        assert!(limits.check_unauthenticated(a).is_ok());
        let Err(refused) = limits.check_unauthenticated(a) else {
            panic!("the third failure within the burst of 2 is refused");
        };
        assert_eq!(refused.reason(), "rate_limited:unauthenticated");
        assert!(
            limits.check_unauthenticated(b).is_ok(),
            "b has its own bucket"
        );
        assert!(limits.check_unauthenticated(None).is_ok());
    }

    #[test]
    fn failed_authentications_are_charged_to_the_clients_network() {
        let limits = RateLimits::new(&settings(config(1.0, 100)));
        let addr = |text: &str| text.parse().ok();
        assert!(limits.check_unauthenticated(addr("2001:db8::1")).is_ok());
        assert!(
            limits
                .check_unauthenticated(addr("2001:db8::ffff:2"))
                .is_ok()
        );
        assert!(
            limits
                .check_unauthenticated(addr("2001:db8:0:0:8000::3"))
                .is_err(),
            "one /64 is one bucket, whichever of its addresses sends"
        );
        assert!(
            limits
                .check_unauthenticated(addr("2001:db8:0:1::1"))
                .is_ok()
        );

        let mut wide = config(1.0, 100);
        wide.unauthenticated_prefix = AddressPrefix { ipv4: 24, ipv6: 48 };
        let limits = RateLimits::new(&settings(wide));
        assert!(limits.check_unauthenticated(addr("192.0.2.1")).is_ok());
        assert!(limits.check_unauthenticated(addr("192.0.2.200")).is_ok());
        assert!(limits.check_unauthenticated(addr("192.0.2.99")).is_err());
        assert!(limits.check_unauthenticated(addr("192.0.3.1")).is_ok());
    }
}
