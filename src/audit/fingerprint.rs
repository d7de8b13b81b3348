//! Keyed token fingerprints (HMAC-SHA256), the only trace of an issued token the audit log keeps,
//! and the current and previous keys a token is looked up under after a rotation.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Computes keyed token fingerprints: HMAC-SHA256 under a configured key, hex-encoded.
///
/// A plain hash of an ECR token would let anyone holding the audit table confirm a guessed
/// token offline; the key keeps fingerprints useful only to the broker.
#[derive(Clone)]
pub(crate) struct Fingerprinter {
    key_id: String,
    mac: Hmac<Sha256>,
}

impl Fingerprinter {
    /// A fingerprinter for the key `key` named `key_id`.
    pub(crate) fn new(key_id: &str, key: &SecretString) -> Self {
        Self {
            key_id: key_id.to_owned(),
            mac: Hmac::new_from_slice(key.expose_secret().as_bytes())
                .expect("HMAC accepts keys of any length"),
        }
    }

    /// The key's id, stored beside each fingerprint.
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The fingerprint of `token`.
    pub(crate) fn fingerprint(&self, token: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprinter")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A token's fingerprint under one key, as the audit log stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyedFingerprint {
    /// The key's id (`fingerprint_key_id`).
    pub key_id: String,
    /// The fingerprint (one of `token_fingerprints`).
    pub fingerprint: String,
}

/// The current fingerprint key and the previous ones.
///
/// New fingerprints always use the current key. A fingerprint is only comparable with one
/// made under the same key, so after a rotation a token is looked up under every key, each
/// fingerprint against the rows stored with that key's id.
#[derive(Debug, Clone)]
pub(crate) struct Fingerprinters {
    current: Fingerprinter,
    previous: Vec<Fingerprinter>,
}

impl Fingerprinters {
    /// The current key `key` named `key_id`, and earlier keys by id.
    pub(crate) fn new(
        key_id: &str,
        key: &SecretString,
        previous: &BTreeMap<String, SecretString>,
    ) -> Self {
        Self {
            current: Fingerprinter::new(key_id, key),
            previous: previous
                .iter()
                .filter(|(id, _)| id.as_str() != key_id)
                .map(|(id, key)| Fingerprinter::new(id, key))
                .collect(),
        }
    }

    /// The key new fingerprints are made with.
    pub(crate) fn current(&self) -> &Fingerprinter {
        &self.current
    }

    /// The fingerprints of `token` under every key, the current one first.
    pub(crate) fn all(&self, token: &str) -> Vec<KeyedFingerprint> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|f| KeyedFingerprint {
                key_id: f.key_id().to_owned(),
                fingerprint: f.fingerprint(token),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_keyed_hmac_sha256() {
        // RFC 4231 test case 2.
        let f = Fingerprinter::new("k", &SecretString::from("Jefe"));
        assert_eq!(
            f.fingerprint("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let other = Fingerprinter::new("k2", &SecretString::from("another key"));
        assert_ne!(
            other.fingerprint("what do ya want for nothing?"),
            f.fingerprint("what do ya want for nothing?")
        );
    }

    #[test]
    fn lookups_try_every_key_and_new_fingerprints_use_the_current_one() {
        let previous = BTreeMap::from([
            ("2026-01".to_owned(), SecretString::from("Jefe")),
            (
                "2025-12".to_owned(),
                SecretString::from("an even older key"),
            ),
        ]);
        let keys = Fingerprinters::new("2026-02", &SecretString::from("new key"), &previous);
        let token = "what do ya want for nothing?";

        let all = keys.all(token);

        assert_eq!(keys.current().key_id(), "2026-02");
        let ids: Vec<&str> = all.iter().map(|f| f.key_id.as_str()).collect();
        assert_eq!(ids, ["2026-02", "2025-12", "2026-01"]);
        assert_eq!(all[0].fingerprint, keys.current().fingerprint(token));
        assert_eq!(
            all[2].fingerprint,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
