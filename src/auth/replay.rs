//! The `jti`s an issuer's admitted tokens were used with, so that each is used once.
//!
//! Verifying a token only checks that its `jti` was not used before; a slot is taken only
//! when a rule admits the caller and it acts on that ([`ReplayCache::take`]). Minting fresh
//! tokens costs nothing on a public issuer, so a slot for every verified token would let any
//! stranger fill the cache and lock every caller of the issuer out. Admitted callers are
//! held to their rate limit, and when the cache is full all the same, whoever holds the
//! most slots is refused, not the others: it loses its slots and, as its tokens could then
//! be replayed unnoticed, all its tokens are refused until the last of them expires.

use std::collections::HashMap;
use std::sync::Mutex;

use metrics::Gauge;

use super::expiring::{Digest, ExpiringMap, digest};

/// Why a `jti` was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// The `jti` was used before and its token has not expired yet.
    Seen,
    /// The caller holds its share of a full cache, or lost its slots to make room: taking
    /// one more without remembering it would let that one be replayed, so it is refused.
    Full,
}

/// The `jti`s of one issuer's admitted tokens, each kept until its token could no longer
/// be accepted anyway (`exp` plus leeway), at most `capacity` of them.
///
/// Per process: behind a load balancer a token can be used once per replica.
pub(super) struct ReplayCache {
    capacity: usize,
    slots: Mutex<Slots>,
    /// How many `jti`s it holds, as of the last check or use.
    entries: Gauge,
}

/// Each used `jti`'s SHA-256 with the SHA-256 of the subject it was used by, so an entry
/// costs the same whatever the token says.
#[derive(Default)]
struct Slots {
    used: ExpiringMap<Digest>,
    /// How many slots each subject holds.
    held: HashMap<Digest, usize>,
    /// Subjects that lost their slots to make room, refused until these times.
    barred: HashMap<Digest, u64>,
}

impl Slots {
    /// Forgets what expired before `now`.
    fn purge(&mut self, now: u64) {
        let held = &mut self.held;
        self.used
            .purge_with(now, |holder| release(held, &holder, 1));
        self.barred.retain(|_, until| *until >= now);
    }
}

/// Gives back `count` of `holder`'s slots.
fn release(held: &mut HashMap<Digest, usize>, holder: &Digest, count: usize) {
    if let Some(n) = held.get_mut(holder) {
        *n = n.saturating_sub(count);
        if *n == 0 {
            held.remove(holder);
        }
    }
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` live entries, its size shown on `entries`.
    pub(super) fn new(capacity: usize, entries: Gauge) -> Self {
        Self {
            capacity,
            slots: Mutex::new(Slots::default()),
            entries,
        }
    }

    /// Whether `jti` is unused, as of `now` (a Unix time in seconds); takes no slot.
    pub(super) fn check(&self, jti: &str, now: u64) -> Result<(), Replay> {
        let mut slots = self.lock();
        slots.purge(now);
        self.entries.set(slots.used.len() as f64);
        if slots.used.contains(&digest(jti)) {
            return Err(Replay::Seen);
        }
        Ok(())
    }

    /// Uses `jti` once for `subject` until `until`; `now` is the current time.
    pub(super) fn take(
        &self,
        jti: &str,
        subject: &str,
        until: u64,
        now: u64,
    ) -> Result<(), Replay> {
        let (jti, holder) = (digest(jti), digest(subject));
        let mut slots = self.lock();
        slots.purge(now);
        self.entries.set(slots.used.len() as f64);
        if slots.used.contains(&jti) {
            return Err(Replay::Seen);
        }
        if slots.barred.contains_key(&holder) {
            return Err(Replay::Full);
        }
        if slots.used.len() >= self.capacity {
            let share = self.capacity / slots.held.len().max(1);
            if slots.held.get(&holder).copied().unwrap_or(0) >= share.max(1) {
                return Err(Replay::Full);
            }
            // Someone holds more than its share: it gives all of its slots up.
            let (&largest, &count) = slots
                .held
                .iter()
                .max_by_key(|(_, count)| **count)
                .expect("a full cache has holders");
            let last = slots.used.remove_where(|h| *h == largest);
            release(&mut slots.held, &largest, count);
            slots.barred.insert(largest, last.unwrap_or(now));
        }
        slots.used.insert(jti, until, holder);
        *slots.held.entry(holder).or_default() += 1;
        self.entries.set(slots.used.len() as f64);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().expect("replay cache lock poisoned")
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_used_once_until_its_token_expires_and_checking_takes_no_slot() {
        let cache = ReplayCache::new(10, Gauge::noop());
        assert_eq!(cache.check("a", 0), Ok(()));
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.take("a", "s", 100, 0), Ok(()));
        assert_eq!(cache.check("a", 50), Err(Replay::Seen));
        assert_eq!(cache.take("a", "s", 100, 50), Err(Replay::Seen));
        assert_eq!(cache.take("b", "s", 100, 50), Ok(()));
        assert_eq!(cache.take("a", "t", 100, 100), Err(Replay::Seen));
        // Past its expiry the token itself is refused, so its entry can go.
        assert_eq!(cache.take("a", "s", 200, 101), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_whoever_fills_it_and_nobody_else() {
        let cache = ReplayCache::new(4, Gauge::noop());
        for jti in ["m1", "m2", "m3"] {
            assert_eq!(cache.take(jti, "mallory", 100, 0), Ok(()));
        }
        assert_eq!(cache.take("a1", "alice", 50, 0), Ok(()));
        // Full: mallory holds more than a half share, so mallory is refused...
        assert_eq!(cache.take("m4", "mallory", 100, 1), Err(Replay::Full));
        // ...while bob, holding nothing, gets a slot: mallory's slots make room, and
        // mallory's tokens are refused until the last of them would have expired, since
        // one of them could now be replayed unnoticed.
        assert_eq!(cache.take("b1", "bob", 50, 1), Ok(()));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.take("m1", "mallory", 100, 2), Err(Replay::Full));
        assert_eq!(cache.take("m5", "mallory", 100, 2), Err(Replay::Full));
        assert_eq!(cache.take("a1", "alice", 50, 2), Err(Replay::Seen));
        assert_eq!(cache.take("a2", "alice", 50, 2), Ok(()));
        // Once mallory's last token has expired, mallory is a caller like any other.
        assert_eq!(cache.take("m6", "mallory", 200, 101), Ok(()));
        assert_eq!(cache.len(), 1, "everything else expired meanwhile");
    }

    #[test]
    fn a_caller_within_its_share_of_a_full_cache_waits_for_nothing() {
        let cache = ReplayCache::new(2, Gauge::noop());
        assert_eq!(cache.take("a", "alice", 10, 0), Ok(()));
        assert_eq!(cache.take("b", "bob", 20, 0), Ok(()));
        // Full, shares of one each: each holder is at its share.
        assert_eq!(cache.take("a2", "alice", 30, 5), Err(Replay::Full));
        assert_eq!(
            cache.take("a2", "alice", 30, 11),
            Ok(()),
            "alice's first expired"
        );
        assert_eq!(cache.len(), 2);
    }
}
