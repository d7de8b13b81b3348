//! The audit log's hash chain: each row's hash covers the previous row's hash and the row's
//! canonical content, keyed with a secret the database never sees, so that nobody with only
//! database access can edit, delete, insert or reorder rows without breaking the chain.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// A row hash: HMAC-SHA256 output.
pub type Hash = [u8; 32];

/// The `prev_hash` of the very first row.
pub const GENESIS: Hash = [0; 32];

/// The chain key.
#[derive(Clone)]
pub struct ChainKey(Hmac<Sha256>);

impl ChainKey {
    /// A chain key from its secret.
    pub fn new(secret: &SecretString) -> Self {
        Self(
            Hmac::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC accepts keys of any length"),
        )
    }

    /// The hash of `row`, chained to `prev`.
    pub fn row_hash(&self, prev: &Hash, row: &ChainedRow) -> Hash {
        let mut mac = self.0.clone();
        mac.update(prev);
        mac.update(&row.canonical());
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey([redacted])")
    }
}

/// The hashed content of one audit row, exactly as stored (timestamps in whole
/// microseconds, as Postgres keeps them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRow {
    /// Position in the chain.
    pub id: i64,
    /// When the writer inserted it.
    pub recorded_at: DateTime<Utc>,
    /// When the request arrived.
    pub occurred_at: DateTime<Utc>,
    /// The request id.
    pub request_id: String,
    /// issued, denied or error.
    pub outcome: String,
    /// Short reason.
    pub reason: String,
    /// HTTP status returned.
    pub http_status: i16,
    /// Issuer name.
    pub issuer: Option<String>,
    /// Verified subject.
    pub subject: Option<String>,
    /// Matched rule.
    pub rule: Option<String>,
    /// Assumed role.
    pub role_arn: Option<String>,
    /// STS session name.
    pub session_name: Option<String>,
    /// Regions asked of ECR.
    pub regions: Vec<String>,
    /// Registries asked of ECR.
    pub registry_ids: Vec<String>,
    /// pull or push.
    pub access: Option<String>,
    /// Granted repository patterns.
    pub repositories: Option<Vec<String>>,
    /// Session tags, sorted by key.
    pub session_tags: Option<Vec<(String, String)>>,
    /// Registry endpoints returned.
    pub proxy_endpoints: Vec<String>,
    /// Earliest token expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Keyed token fingerprints.
    pub token_fingerprints: Vec<String>,
    /// Fingerprint key id.
    pub fingerprint_key_id: Option<String>,
    /// Whether the tokens came from a cache.
    pub from_cache: bool,
    /// Peer address.
    pub client_addr: Option<IpAddr>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Latency in milliseconds.
    pub latency_ms: i32,
}

/// Truncates to whole microseconds, the precision of `timestamptz`.
pub fn to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).expect("in range")
}

/// A length-prefixed encoding: every field is tagged by its position, absent values differ
/// from empty ones, and no two rows encode alike.
struct Canonical(Vec<u8>);

impl Canonical {
    fn bytes(&mut self, value: &[u8]) {
        self.0
            .extend_from_slice(&(value.len() as u64).to_be_bytes());
        self.0.extend_from_slice(value);
    }

    fn text(&mut self, value: &str) {
        self.0.push(b's');
        self.bytes(value.as_bytes());
    }

    fn int(&mut self, value: i64) {
        self.0.push(b'i');
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn time(&mut self, value: DateTime<Utc>) {
        self.int(value.timestamp_micros());
    }

    fn list(&mut self, values: &[String]) {
        self.0.push(b'l');
        self.0
            .extend_from_slice(&(values.len() as u64).to_be_bytes());
        values.iter().for_each(|v| self.text(v));
    }

    fn option<T: ?Sized>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            None => self.0.push(b'n'),
            Some(v) => {
                self.0.push(b'y');
                write(self, v);
            }
        }
    }
}

impl ChainedRow {
    /// The canonical byte encoding that the row hash covers.
    pub fn canonical(&self) -> Vec<u8> {
        let mut c = Canonical(b"ecr-token-broker audit v1".to_vec());
        c.int(self.id);
        c.time(self.recorded_at);
        c.time(self.occurred_at);
        c.text(&self.request_id);
        c.text(&self.outcome);
        c.text(&self.reason);
        c.int(self.http_status.into());
        for field in [
            &self.issuer,
            &self.subject,
            &self.rule,
            &self.role_arn,
            &self.session_name,
        ] {
            c.option(field.as_deref(), Canonical::text);
        }
        c.list(&self.regions);
        c.list(&self.registry_ids);
        c.option(self.access.as_deref(), Canonical::text);
        c.option(self.repositories.as_deref(), Canonical::list);
        c.option(self.session_tags.as_deref(), |c, tags| {
            let flat: Vec<String> = tags
                .iter()
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .collect();
            c.list(&flat);
        });
        c.list(&self.proxy_endpoints);
        c.option(self.expires_at.as_ref(), |c, t| c.time(*t));
        c.list(&self.token_fingerprints);
        c.option(self.fingerprint_key_id.as_deref(), Canonical::text);
        c.int(self.from_cache.into());
        c.option(
            self.client_addr.map(|a| a.to_string()).as_deref(),
            Canonical::text,
        );
        c.option(self.user_agent.as_deref(), Canonical::text);
        c.int(self.latency_ms.into());
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ChainedRow {
        let at = DateTime::from_timestamp_micros(1_795_431_244_123_456).unwrap();
        ChainedRow {
            id: 7,
            recorded_at: at,
            occurred_at: at,
            request_id: "r-1".to_owned(),
            outcome: "issued".to_owned(),
            reason: "issued".to_owned(),
            http_status: 200,
            issuer: Some("ci".to_owned()),
            subject: Some("repo:acme/api".to_owned()),
            rule: Some("acme".to_owned()),
            role_arn: Some("arn:aws:iam::111122223333:role/ecr".to_owned()),
            session_name: Some("repo-acme-api.0123".to_owned()),
            regions: vec!["us-east-1".to_owned()],
            registry_ids: vec!["111122223333".to_owned()],
            access: Some("pull".to_owned()),
            repositories: Some(vec!["acme/*".to_owned()]),
            session_tags: Some(vec![("repo".to_owned(), "acme/api".to_owned())]),
            proxy_endpoints: vec![
                "https://111122223333.dkr.ecr.us-east-1.amazonaws.com".to_owned(),
            ],
            expires_at: Some(at),
            token_fingerprints: vec!["ab".repeat(32)],
            fingerprint_key_id: Some("k1".to_owned()),
            from_cache: false,
            client_addr: Some("127.0.0.1".parse().unwrap()),
            user_agent: Some("curl/8".to_owned()),
            latency_ms: 12,
        }
    }

    fn key() -> ChainKey {
        ChainKey::new(&SecretString::from("chain-key-for-tests-0123456789abcdef"))
    }

    #[test]
    fn every_field_is_covered() {
        let base = key().row_hash(&GENESIS, &row());
        type Edit = Box<dyn Fn(&mut ChainedRow)>;
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.id += 1),
            Box::new(|r| r.recorded_at += chrono::Duration::microseconds(1)),
            Box::new(|r| r.subject = Some("repo:acme/web".to_owned())),
            Box::new(|r| r.subject = None),
            Box::new(|r| r.regions.push("eu-west-1".to_owned())),
            Box::new(|r| r.repositories = Some(Vec::new())),
            Box::new(|r| r.repositories = None),
            Box::new(|r| r.session_tags = None),
            Box::new(|r| r.token_fingerprints.clear()),
            Box::new(|r| r.from_cache = true),
            Box::new(|r| r.client_addr = None),
            Box::new(|r| r.latency_ms += 1),
            Box::new(|r| r.http_status = 503),
        ];
        for edit in edits {
            let mut changed = row();
            edit(&mut changed);
            assert_ne!(key().row_hash(&GENESIS, &changed), base);
        }
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let mut a = row();
        a.issuer = Some("ab".to_owned());
        a.subject = Some("c".to_owned());
        let mut b = row();
        b.issuer = Some("a".to_owned());
        b.subject = Some("bc".to_owned());
        assert_ne!(a.canonical(), b.canonical());
    }

    #[test]
    fn the_hash_depends_on_the_previous_one_and_the_key() {
        let row = row();
        assert_ne!(
            key().row_hash(&GENESIS, &row),
            key().row_hash(&[1; 32], &row)
        );
        let other = ChainKey::new(&SecretString::from("another-chain-key-0123456789abcdef"));
        assert_ne!(
            key().row_hash(&GENESIS, &row),
            other.row_hash(&GENESIS, &row)
        );
    }
}
