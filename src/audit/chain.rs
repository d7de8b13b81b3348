//! The audit log's hash chain: each row's hash covers the previous row's hash and the row's
//! canonical content, keyed with a secret the database never sees, so that nobody with only
//! database access can edit, delete, insert or reorder rows without breaking the chain.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;

use super::record::SessionTags;
use super::shed::{ShedCount, ShedSummary};
use super::{AuditRecord, Outcome};

/// A row hash: HMAC-SHA256 output.
pub(crate) type Hash = [u8; 32];

/// The `prev_hash` of the very first row.
pub(crate) const GENESIS: Hash = [0; 32];

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
    pub(crate) fn row_hash(&self, prev: &Hash, row: &ChainedRow) -> Hash {
        let mut mac = self.0.clone();
        mac.update(prev);
        mac.update(&row.canonical());
        mac.finalize().into_bytes().into()
    }
}

/// A row's place in the chain: its id and its hash. Handed to the caller whose request the
/// row records (its receipt), logged as the chain's head, and given back to `audit verify
/// --expect`, which checks that the chain still reaches row `id` with exactly this hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainEntry {
    /// The row's id.
    pub id: i64,
    /// Its hash.
    pub hash: Hash,
}

impl FromStr for ChainEntry {
    type Err = String;

    /// `ID:HASH`, the hash as 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || format!("{s:?} is not ID:HASH (a row id, a colon, 64 hex digits)");
        let (id, hash) = s.trim().split_once(':').ok_or_else(shape)?;
        let id = id.parse().ok().filter(|id| *id > 0).ok_or_else(shape)?;
        let hash = hex::decode(hash)
            .ok()
            .and_then(|h| Hash::try_from(h).ok())
            .ok_or_else(shape)?;
        Ok(Self { id, hash })
    }
}

impl fmt::Display for ChainEntry {
    /// `ID:HASH`, the form `audit verify --expect` reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.id, hex::encode(self.hash))
    }
}

impl Serialize for ChainEntry {
    /// `{"id": ID, "hash": "HEX"}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut entry = serializer.serialize_struct("ChainEntry", 2)?;
        entry.serialize_field("id", &self.id)?;
        entry.serialize_field("hash", &hex::encode(self.hash))?;
        entry.end()
    }
}

impl ChainEntry {
    /// The entries in a file: one `ID:HASH` a line; blank lines and lines starting with `#`
    /// are skipped.
    pub fn read_file(path: &Path) -> anyhow::Result<Vec<Self>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
            .map(|(n, line)| {
                line.parse()
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))
            })
            .collect()
    }
}

/// Where a pruned stretch of the chain ended, as `audit_checkpoints` keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The last pruned row's id.
    pub id: i64,
    /// The last pruned row's hash, which the next row continues.
    pub row_hash: Hash,
    /// The cut-off date of the prune.
    pub pruned_before: DateTime<Utc>,
    /// How many rows that prune dropped.
    pub pruned_rows: i64,
}

impl ChainKey {
    /// The MAC of a checkpoint under the chain key: nobody without the key can make one up
    /// and drop the oldest rows behind it. Domain-separated from row hashes, whose input
    /// starts with a hash rather than this text.
    pub(crate) fn checkpoint_mac(&self, checkpoint: &Checkpoint) -> Hash {
        self.checkpoint_hmac(checkpoint)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `mac` is the checkpoint's MAC, compared in constant time.
    pub(crate) fn checkpoint_mac_is(&self, checkpoint: &Checkpoint, mac: &[u8]) -> bool {
        self.checkpoint_hmac(checkpoint).verify_slice(mac).is_ok()
    }

    fn checkpoint_hmac(&self, checkpoint: &Checkpoint) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(b"ecr-token-broker checkpoint v1");
        mac.update(&checkpoint.id.to_be_bytes());
        mac.update(&checkpoint.row_hash);
        mac.update(&checkpoint.pruned_before.timestamp_micros().to_be_bytes());
        mac.update(&checkpoint.pruned_rows.to_be_bytes());
        mac
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey([redacted])")
    }
}

/// One audit row as stored and hashed: its place in the chain and its record, with
/// timestamps in whole microseconds, as Postgres keeps them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub(crate) struct ChainedRow {
    /// Position in the chain.
    pub id: i64,
    /// When the writer inserted it.
    pub recorded_at: DateTime<Utc>,
    /// What was decided.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub record: AuditRecord,
}

impl ChainedRow {
    /// The row `record` becomes at chain position `id`: its times cut to the microseconds
    /// the database keeps and NUL characters in its text replaced, so that the row read
    /// back hashes as written.
    pub(crate) fn new(id: i64, recorded_at: DateTime<Utc>, mut record: AuditRecord) -> Self {
        record.escape_nul();
        record.occurred_at = to_micros(record.occurred_at);
        record.expires_at = record.expires_at.map(to_micros);
        Self {
            id,
            recorded_at: to_micros(recorded_at),
            record,
        }
    }
}

/// Truncates to whole microseconds, the precision of `timestamptz`.
pub(crate) fn to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).expect("in range")
}

/// A length-prefixed encoding: every field is tagged by its position, absent values differ
/// from empty ones, and no two rows encode alike.
pub(super) struct Canonical(Vec<u8>);

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

    /// The tag byte of a field added after the first version, which is encoded only when
    /// present.
    pub(super) fn tag(&mut self, tag: u8) {
        self.0.push(tag);
    }
}

/// How a value of a record field is encoded under the MAC. The record's fields are encoded
/// in the order of its table ([`AuditRecord::encode`]).
pub(super) trait Canon {
    fn encode(&self, c: &mut Canonical);
}

impl Canon for String {
    fn encode(&self, c: &mut Canonical) {
        c.text(self);
    }
}

impl Canon for Outcome {
    fn encode(&self, c: &mut Canonical) {
        c.text(self.as_str());
    }
}

impl Canon for IpAddr {
    fn encode(&self, c: &mut Canonical) {
        c.text(&self.to_string());
    }
}

impl Canon for DateTime<Utc> {
    fn encode(&self, c: &mut Canonical) {
        c.time(*self);
    }
}

impl Canon for bool {
    fn encode(&self, c: &mut Canonical) {
        c.int((*self).into());
    }
}

impl Canon for u16 {
    fn encode(&self, c: &mut Canonical) {
        c.int((*self).into());
    }
}

impl Canon for i32 {
    fn encode(&self, c: &mut Canonical) {
        c.int((*self).into());
    }
}

impl Canon for Vec<String> {
    fn encode(&self, c: &mut Canonical) {
        c.list(self);
    }
}

/// `n` when absent, `y` and the value when present.
impl<T: Canon> Canon for Option<T> {
    fn encode(&self, c: &mut Canonical) {
        match self {
            None => c.0.push(b'n'),
            Some(value) => {
                c.0.push(b'y');
                value.encode(c);
            }
        }
    }
}

/// Absent when there are none, else a list of keys and values, sorted by key.
impl Canon for SessionTags {
    fn encode(&self, c: &mut Canonical) {
        let tags = (!self.is_empty()).then(|| {
            self.as_slice()
                .iter()
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .collect::<Vec<String>>()
        });
        tags.encode(c);
    }
}

impl Canon for ShedSummary {
    fn encode(&self, c: &mut Canonical) {
        // Destructured without `..`: a field added to the summary does not compile until
        // it is encoded here.
        let Self {
            count,
            since,
            until,
            clients,
            reasons,
        } = self;
        c.int(i64::try_from(*count).unwrap_or(i64::MAX));
        c.time(*since);
        c.time(*until);
        for counts in [clients, reasons] {
            let flat: Vec<String> = counts
                .iter()
                .flat_map(|ShedCount { key, count }| [key.clone(), count.to_string()])
                .collect();
            c.list(&flat);
        }
    }
}

impl ChainedRow {
    /// The canonical byte encoding that the row hash covers: the row's place in the chain,
    /// then every field of its record ([`AuditRecord::encode`]).
    ///
    /// Fields added after the first version are encoded only when present, so that rows
    /// written before them keep their hashes.
    pub(crate) fn canonical(&self) -> Vec<u8> {
        // Destructured without `..`: a field added to the row does not compile until it is
        // encoded here, so no column is ever stored outside the MAC.
        let Self {
            id,
            recorded_at,
            record,
        } = self;
        let mut c = Canonical(b"ecr-token-broker audit v1".to_vec());
        c.int(*id);
        c.time(*recorded_at);
        record.encode(&mut c);
        c.0
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A row with a value in every field but the ones added after the first version.
    pub(in crate::audit) fn row() -> ChainedRow {
        let at = DateTime::from_timestamp_micros(1_795_431_244_123_456).unwrap();
        let mut record =
            AuditRecord::start("r-1", Some("127.0.0.1".parse().unwrap()), Some("curl/8"));
        record.occurred_at = at;
        record.decide(Outcome::Issued, "issued", 200);
        record.latency_ms = 12;
        record.issuer = Some("ci".to_owned());
        record.subject = Some("repo:acme/api".to_owned());
        record.rule = Some("acme".to_owned());
        record.role_arn = Some("arn:aws:iam::111122223333:role/ecr".to_owned());
        record.session_name = Some("repo-acme-api.0123".to_owned());
        record.regions = vec!["us-east-1".to_owned()];
        record.registry_ids = vec!["111122223333".to_owned()];
        record.access = Some("pull".to_owned());
        record.repositories = Some(vec!["acme/*".to_owned()]);
        record.session_tags = [("repo".to_owned(), "acme/api".to_owned())]
            .into_iter()
            .collect();
        record.proxy_endpoints =
            vec!["https://111122223333.dkr.ecr.us-east-1.amazonaws.com".to_owned()];
        record.expires_at = Some(at);
        record.token_fingerprints = vec!["ab".repeat(32)];
        record.fingerprint_key_id = Some("k1".to_owned());
        ChainedRow::new(7, at, record)
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
            Box::new(|r| r.record.subject = Some("repo:acme/web".to_owned())),
            Box::new(|r| r.record.subject = None),
            Box::new(|r| r.record.regions.push("eu-west-1".to_owned())),
            Box::new(|r| r.record.repositories = Some(Vec::new())),
            Box::new(|r| r.record.repositories = None),
            Box::new(|r| r.record.session_tags = SessionTags::default()),
            Box::new(|r| r.record.token_fingerprints.clear()),
            Box::new(|r| r.record.from_cache = true),
            Box::new(|r| r.record.client_addr = None),
            Box::new(|r| r.record.latency_ms += 1),
            Box::new(|r| r.record.http_status = 503),
            Box::new(|r| r.record.outcome = Outcome::Denied),
            Box::new(|r| r.record.upstream_error = Some("throttled".to_owned())),
            Box::new(|r| r.record.caller_request_id = Some("ci-42".to_owned())),
            Box::new(|r| {
                let mut shed = AuditRecord::shed(ShedSummary {
                    count: 1,
                    since: r.recorded_at,
                    until: r.recorded_at,
                    clients: Vec::new(),
                    reasons: Vec::new(),
                });
                r.record.shed = shed.shed.take();
            }),
        ];
        for edit in edits {
            let mut changed = row();
            edit(&mut changed);
            assert_ne!(key().row_hash(&GENESIS, &changed), base);
        }
    }

    #[test]
    fn the_encoding_of_stored_rows_never_changes() {
        // Computed apart from this code, from the encoding as documented: a change here
        // would make every stored row fail verification.
        assert_eq!(
            hex::encode(key().row_hash(&GENESIS, &row())),
            "0440e672597db7f44b23e9c6fbdc068a4941dcb0be07d5d32644cea73749e7dc"
        );
    }

    #[test]
    fn nul_characters_become_a_stand_in_so_the_row_can_be_stored_as_hashed() {
        let mut record = row().record;
        record.subject = Some("repo:\0acme".to_owned());
        record.session_tags = [("a\0".to_owned(), "\0b".to_owned())].into_iter().collect();
        record.repositories = Some(vec!["x\0".to_owned()]);

        let stored = ChainedRow::new(7, record.occurred_at, record);
        let read_back = ChainedRow::new(7, stored.recorded_at, stored.record.clone());

        let r = &stored.record;
        assert_eq!(r.subject.as_deref(), Some("repo:\u{2400}acme"));
        assert_eq!(
            r.session_tags.as_slice(),
            [("a\u{2400}".to_owned(), "\u{2400}b".to_owned())]
        );
        assert_eq!(r.repositories, Some(vec!["x\u{2400}".to_owned()]));
        assert_eq!(read_back.canonical(), stored.canonical());
    }

    #[test]
    fn a_checkpoint_mac_covers_every_field_and_the_key() {
        let checkpoint = Checkpoint {
            id: 6,
            row_hash: [7; 32],
            pruned_before: DateTime::from_timestamp(1_796_083_200, 0).unwrap(),
            pruned_rows: 6,
        };
        let base = key().checkpoint_mac(&checkpoint);
        let edits: [fn(&mut Checkpoint); 4] = [
            |c| c.id += 1,
            |c| c.row_hash[0] ^= 1,
            |c| c.pruned_before += chrono::Duration::days(1),
            |c| c.pruned_rows -= 1,
        ];
        for edit in edits {
            let mut changed = checkpoint;
            edit(&mut changed);
            assert_ne!(key().checkpoint_mac(&changed), base);
        }
        let other = ChainKey::new(&SecretString::from("another-chain-key-0123456789abcdef"));
        assert_ne!(other.checkpoint_mac(&checkpoint), base);
        assert!(key().checkpoint_mac_is(&checkpoint, &base));
        assert!(!other.checkpoint_mac_is(&checkpoint, &base));
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let mut a = row();
        a.record.issuer = Some("ab".to_owned());
        a.record.subject = Some("c".to_owned());
        let mut b = row();
        b.record.issuer = Some("a".to_owned());
        b.record.subject = Some("bc".to_owned());
        assert_ne!(a.canonical(), b.canonical());
    }

    #[test]
    fn entries_read_as_id_colon_hash_and_serialize_as_id_and_hash() {
        let hash = "ab".repeat(32);
        let head: ChainEntry = format!(" 42:{hash}\n").parse().unwrap();
        assert_eq!((head.id, head.hash), (42, [0xab; 32]));
        assert_eq!(head.to_string(), format!("42:{hash}"));
        assert_eq!(
            serde_json::to_value(head).unwrap(),
            serde_json::json!({"id": 42, "hash": hash})
        );
        for bad in [
            format!("0:{hash}"),
            format!("x:{hash}"),
            format!("42:{}", "ab".repeat(31)),
            format!("42-{hash}"),
            "42:zz".to_owned(),
        ] {
            assert!(bad.parse::<ChainEntry>().is_err(), "{bad}");
        }
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
