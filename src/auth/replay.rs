use std::sync::Mutex;

use super::expiring::{ExpiringMap, digest};

/// Why a `jti` was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// The `jti` was accepted before and its token has not expired yet.
    Seen,
    /// Every slot holds a token that has not expired yet; accepting one more without
    /// remembering it would let that one be replayed, so it is refused instead.
    Full,
}

/// The `jti`s of one issuer's tokens accepted so far, each kept until its token could no
/// longer be accepted anyway (`exp` plus leeway), at most `capacity` of them.
///
/// Per process: behind a load balancer a token can be used once per replica.
pub(super) struct ReplayCache {
    capacity: usize,
    /// Each accepted `jti`'s SHA-256, so an entry costs the same whatever the token says.
    seen: Mutex<ExpiringMap<()>>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` live entries.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: Mutex::new(ExpiringMap::default()),
        }
    }

    /// Accepts `jti` once until `until` (a Unix time in seconds); `now` is the current one.
    pub(super) fn accept(&self, jti: &str, until: u64, now: u64) -> Result<(), Replay> {
        let digest = digest(jti);
        let mut seen = self.seen.lock().expect("replay cache lock poisoned");
        seen.purge(now);
        if seen.contains(&digest) {
            return Err(Replay::Seen);
        }
        if seen.len() >= self.capacity {
            return Err(Replay::Full);
        }
        seen.insert(digest, until, ());
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_accepted_once_until_its_token_expires() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.accept("a", 100, 0), Ok(()));
        assert_eq!(cache.accept("a", 100, 50), Err(Replay::Seen));
        assert_eq!(cache.accept("b", 100, 50), Ok(()));
        assert_eq!(cache.accept("a", 100, 100), Err(Replay::Seen));
        // Past its expiry the token itself is refused, so its entry can go.
        assert_eq!(cache.accept("a", 200, 101), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_until_entries_expire() {
        let cache = ReplayCache::new(2);
        assert_eq!(cache.accept("a", 10, 0), Ok(()));
        assert_eq!(cache.accept("b", 20, 0), Ok(()));
        assert_eq!(cache.accept("c", 30, 5), Err(Replay::Full));
        assert_eq!(cache.accept("c", 30, 11), Ok(()));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.accept("b", 30, 11), Err(Replay::Seen));
    }
}
