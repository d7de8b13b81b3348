use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Computes keyed token fingerprints: HMAC-SHA256 under a configured key, hex-encoded.
///
/// A plain hash of an ECR token would let anyone holding the audit table confirm a guessed
/// token offline; the key keeps fingerprints useful only to the broker.
#[derive(Clone)]
pub struct Fingerprinter {
    key_id: String,
    mac: Hmac<Sha256>,
}

impl Fingerprinter {
    /// A fingerprinter for the key `key` named `key_id`.
    pub fn new(key_id: &str, key: &SecretString) -> Self {
        Self {
            key_id: key_id.to_owned(),
            mac: Hmac::new_from_slice(key.expose_secret().as_bytes())
                .expect("HMAC accepts keys of any length"),
        }
    }

    /// The key's id, stored beside each fingerprint.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The fingerprint of `token`.
    pub fn fingerprint(&self, token: &str) -> String {
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
}
