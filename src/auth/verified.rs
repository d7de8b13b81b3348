//! A short memory of tokens whose signature verified, so that a caller presenting the same
//! token again is spared the signature check (for RSA, the most expensive step of a
//! request) and nothing else.
//!
//! An entry is keyed by the SHA-256 of the whole token, so only the very token that
//! verified can find it; the token itself is never kept. It holds what is a function of the
//! token alone (its header, claims and caller) and which issuer and key set verified it. It
//! is kept for at most [`TTL_SECS`] and never past the token's `exp`, and at most
//! [`CAPACITY`] entries are kept. Every check that depends on anything but the token runs
//! again on each use ([`super::verifier`]): `exp` and `nbf` against the clock, the key set
//! still being the one that verified it, and the issuer's checks of `typ`, `iat`, token age
//! and `jti` replay. Only tokens that passed every check are remembered.
//!
//! Each set of issuers has a memory of its own, so a new configuration (other keys,
//! audiences or checks) starts with none.

use std::sync::{Arc, Mutex};

use jsonwebtoken::Header;

use super::Caller;
use super::expiring::{Digest, ExpiringMap};
use super::verifier::TrustedIssuer;

/// How long a verified token is remembered at most, in seconds.
pub(super) const TTL_SECS: u64 = 60;

/// How many verified tokens are remembered at most. A full memory forgets the entry that
/// expires first; then that token is verified in full again, nothing worse.
pub(super) const CAPACITY: usize = 4_096;

/// A token that passed every check, as far as the token alone decides.
pub(super) struct Verified {
    /// The issuer whose keys and settings verified it.
    pub(super) issuer: Arc<TrustedIssuer>,
    /// The generation of the issuer's key set that verified it (0 for a shared secret).
    pub(super) key_generation: u64,
    /// The token's header, for the checks that run again.
    pub(super) header: Header,
    /// Who the token speaks for, with its claims.
    pub(super) caller: Caller,
    /// The token's `exp`, in whole seconds.
    pub(super) exp: u64,
    /// The token's `nbf`, if it has one.
    pub(super) nbf: Option<u64>,
}

/// Verified tokens by the SHA-256 of the whole token.
pub(super) struct VerifiedTokens {
    entries: Mutex<ExpiringMap<Arc<Verified>>>,
}

impl VerifiedTokens {
    /// An empty memory.
    pub(super) fn new() -> Self {
        Self {
            entries: Mutex::new(ExpiringMap::default()),
        }
    }

    /// The entry for the token with SHA-256 `digest`, unless it expired before `now`.
    pub(super) fn get(&self, digest: &Digest, now: u64) -> Option<Arc<Verified>> {
        let mut entries = self.lock();
        entries.purge(now);
        entries.get(digest).cloned()
    }

    /// Remembers `verified` until its `exp` or for [`TTL_SECS`] from `now`, whichever
    /// comes first.
    pub(super) fn insert(&self, digest: Digest, verified: Verified, now: u64) {
        let until = verified.exp.min(now.saturating_add(TTL_SECS));
        if until < now {
            return;
        }
        let mut entries = self.lock();
        entries.purge(now);
        if entries.len() >= CAPACITY && !entries.contains(&digest) {
            entries.remove_soonest();
        }
        entries.insert(digest, until, Arc::new(verified));
    }

    /// Forgets the token with SHA-256 `digest`.
    pub(super) fn remove(&self, digest: &Digest) {
        self.lock().remove(digest);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ExpiringMap<Arc<Verified>>> {
        self.entries.lock().expect("verified token lock poisoned")
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}
