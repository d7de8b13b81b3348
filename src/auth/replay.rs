use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A `jti` as remembered: its SHA-256, so an entry costs the same whatever the token says.
type JtiDigest = [u8; 32];

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
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    until: HashMap<JtiDigest, u64>,
    /// The same entries ordered by expiry, so expired ones are dropped without a scan.
    by_expiry: BTreeSet<(u64, JtiDigest)>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` live entries.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Accepts `jti` once until `until` (a Unix time in seconds); `now` is the current one.
    pub(super) fn accept(&self, jti: &str, until: u64, now: u64) -> Result<(), Replay> {
        let digest: JtiDigest = Sha256::digest(jti.as_bytes()).into();
        let mut seen = self.seen.lock().expect("replay cache lock poisoned");
        while let Some(&(expiry, old)) = seen.by_expiry.first() {
            if expiry >= now {
                break;
            }
            seen.by_expiry.pop_first();
            seen.until.remove(&old);
        }
        if seen.until.contains_key(&digest) {
            return Err(Replay::Seen);
        }
        if seen.until.len() >= self.capacity {
            return Err(Replay::Full);
        }
        seen.until.insert(digest, until);
        seen.by_expiry.insert((until, digest));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().unwrap().until.len()
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
