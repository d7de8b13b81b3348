//! Entries keyed by a SHA-256 digest, each kept until a Unix time (in seconds), so that
//! expired ones are dropped in order of expiry without a scan. What the replay cache and the
//! cache of verified tokens both keep.

use std::collections::{BTreeSet, HashMap};

use sha2::{Digest as _, Sha256};

/// What an entry is keyed by: the SHA-256 of what it stands for, so an entry costs the same
/// whatever the token says, and no token is kept.
pub(super) type Digest = [u8; 32];

/// The SHA-256 of `value`.
pub(super) fn digest(value: &str) -> Digest {
    Sha256::digest(value.as_bytes()).into()
}

/// Entries with their expiry.
pub(super) struct ExpiringMap<V> {
    entries: HashMap<Digest, (u64, V)>,
    /// The same entries ordered by expiry.
    by_expiry: BTreeSet<(u64, Digest)>,
}

impl<V> Default for ExpiringMap<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }
}

impl<V> ExpiringMap<V> {
    /// Drops every entry that expired before `now`.
    pub(super) fn purge(&mut self, now: u64) {
        self.purge_with(now, drop);
    }

    /// Drops every entry that expired before `now`, handing each dropped value to `dropped`.
    pub(super) fn purge_with(&mut self, now: u64, mut dropped: impl FnMut(V)) {
        while let Some(&(expiry, old)) = self.by_expiry.first() {
            if expiry >= now {
                break;
            }
            self.by_expiry.pop_first();
            if let Some((_, value)) = self.entries.remove(&old) {
                dropped(value);
            }
        }
    }

    /// Drops every entry whose value satisfies `doomed`; returns the latest expiry among
    /// them, if there were any.
    pub(super) fn remove_where(&mut self, doomed: impl Fn(&V) -> bool) -> Option<u64> {
        let mut latest = None;
        self.entries.retain(|key, (until, value)| {
            if !doomed(value) {
                return true;
            }
            self.by_expiry.remove(&(*until, *key));
            latest = latest.max(Some(*until));
            false
        });
        latest
    }

    /// The entry for `key`, whether or not it has expired (purge first).
    pub(super) fn get(&self, key: &Digest) -> Option<&V> {
        self.entries.get(key).map(|(_, value)| value)
    }

    /// Whether there is an entry for `key`.
    pub(super) fn contains(&self, key: &Digest) -> bool {
        self.entries.contains_key(key)
    }

    /// Keeps `value` for `key` until `until`, replacing any entry for it.
    pub(super) fn insert(&mut self, key: Digest, until: u64, value: V) {
        if let Some((old, _)) = self.entries.insert(key, (until, value)) {
            self.by_expiry.remove(&(old, key));
        }
        self.by_expiry.insert((until, key));
    }

    /// Drops the entry for `key`, if any.
    pub(super) fn remove(&mut self, key: &Digest) {
        if let Some((until, _)) = self.entries.remove(key) {
            self.by_expiry.remove(&(until, *key));
        }
    }

    /// Drops the entry that expires first, if any.
    pub(super) fn remove_soonest(&mut self) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            self.entries.remove(&key);
        }
    }

    /// How many entries there are, expired ones included until purged.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_go_in_order_of_expiry_and_a_replaced_one_keeps_only_its_new_expiry() {
        let mut map = ExpiringMap::default();
        map.insert(digest("a"), 10, 'a');
        map.insert(digest("b"), 20, 'b');
        map.insert(digest("a"), 30, 'A');
        map.purge(15);
        assert_eq!(map.get(&digest("a")), Some(&'A'));
        assert_eq!(map.get(&digest("b")), Some(&'b'));
        map.remove_soonest();
        assert!(!map.contains(&digest("b")));
        map.purge(31);
        assert_eq!(map.len(), 0);
        map.insert(digest("c"), 5, 'c');
        map.remove(&digest("c"));
        assert_eq!(map.len(), 0);
        map.purge(u64::MAX);
    }

    #[test]
    fn entries_can_be_dropped_by_value_and_purged_ones_are_handed_back() {
        let mut map = ExpiringMap::default();
        map.insert(digest("a"), 10, 'x');
        map.insert(digest("b"), 30, 'x');
        map.insert(digest("c"), 20, 'y');
        assert_eq!(map.remove_where(|v| *v == 'x'), Some(30));
        assert_eq!(map.remove_where(|v| *v == 'x'), None);
        assert_eq!(map.len(), 1);
        let mut purged = Vec::new();
        map.purge_with(21, |v| purged.push(v));
        assert_eq!(purged, ['y']);
        assert_eq!(map.len(), 0);
    }
}
