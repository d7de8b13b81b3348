//! `[audit]` and `[audit_sink]`: the fingerprint and chain keys, the writer's queues, and where
//! committed rows are also shipped. Key ids are parsed into `KeyId`s; keys stay secrets and
//! are never quoted in a message.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::errors::Findings;
use super::{CHAIN_KEY_ENV, FINGERPRINT_KEY_ENV, empty_secret};
use crate::audit::{AuditSinkConfig, SinkKind};

/// `[audit]` as the file spells it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    fingerprint_key_id: String,
    #[serde(default = "empty_secret")]
    pub(super) fingerprint_key: SecretString,
    #[serde(default)]
    pub(super) previous_fingerprint_keys: BTreeMap<String, SecretString>,
    #[serde(default = "empty_secret")]
    pub(super) chain_key: SecretString,
    #[serde(default)]
    pub(super) admin_rules: Vec<String>,
    #[serde(default = "default_queue_capacity")]
    queue_capacity: usize,
    #[serde(default = "default_max_batch")]
    max_batch: usize,
    #[serde(default = "default_refusal_queue_capacity")]
    refusal_queue_capacity: usize,
    #[serde(default = "default_shed_report_interval")]
    shed_report_interval_secs: u64,
}

/// `[audit]`
pub(crate) struct AuditConfig {
    /// Stored beside every fingerprint so keys can be rotated.
    pub fingerprint_key_id: KeyId,
    /// HMAC-SHA256 key for token fingerprints, at least 32 bytes.
    pub fingerprint_key: SecretString,
    /// Earlier fingerprint keys by id, so tokens fingerprinted before a rotation can still
    /// be looked up.
    pub previous_fingerprint_keys: BTreeMap<KeyId, SecretString>,
    /// HMAC-SHA256 key of the audit hash chain, at least 32 bytes; `audit verify` needs it.
    pub chain_key: SecretString,
    /// Callers matched by one of these rules may read every audit record and look up tokens.
    pub admin_rules: Vec<String>,
    /// Records that may wait for the writer; beyond it requests get 503 at once.
    pub queue_capacity: usize,
    /// Records the writer commits in one transaction at most.
    pub max_batch: usize,
    /// Refusals that may wait for the writer; beyond it they are shed and counted.
    pub refusal_queue_capacity: usize,
    /// How often refusals shed meanwhile are written as one aggregate row.
    pub shed_report_interval_secs: u64,
}

impl AuditConfig {
    /// The previous fingerprint keys by their ids as text, as the fingerprinters take them.
    pub(crate) fn previous_keys_by_id(&self) -> BTreeMap<String, SecretString> {
        self.previous_fingerprint_keys
            .iter()
            .map(|(id, key)| (id.as_str().to_owned(), key.clone()))
            .collect()
    }
}

fn default_queue_capacity() -> usize {
    1024
}

fn default_max_batch() -> usize {
    256
}

fn default_refusal_queue_capacity() -> usize {
    256
}

fn default_shed_report_interval() -> u64 {
    60
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("fingerprint_key_id", &self.fingerprint_key_id)
            .field("fingerprint_key", &"[redacted]")
            .field(
                "previous_fingerprint_keys",
                &self.previous_fingerprint_keys.keys().collect::<Vec<_>>(),
            )
            .field("chain_key", &"[redacted]")
            .field("admin_rules", &self.admin_rules)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_batch", &self.max_batch)
            .field("refusal_queue_capacity", &self.refusal_queue_capacity)
            .field("shed_report_interval_secs", &self.shed_report_interval_secs)
            .finish()
    }
}

/// A fingerprint key id: 1 to 64 of `[A-Za-z0-9._-]`, stored beside each fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeyId(String);

impl KeyId {
    /// What a key id may be, as messages say it.
    pub(super) const GRAMMAR: &str = "1 to 64 of [A-Za-z0-9._-]";

    /// `id`, if it fits [`KeyId::GRAMMAR`].
    pub(crate) fn parse(id: &str) -> Option<Self> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        valid.then(|| Self(id.to_owned()))
    }

    /// The id as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses `[audit]`; `None` when its key id is not one (the problem is in `f`).
pub(super) fn audit(raw: &RawAudit, f: &mut Findings) -> Option<AuditConfig> {
    let key_id = KeyId::parse(&raw.fingerprint_key_id);
    f.check(
        key_id.is_some(),
        "audit.fingerprint_key_id",
        format!("must be {}", KeyId::GRAMMAR),
    );
    let mut previous = BTreeMap::new();
    for (i, (id, key)) in raw.previous_fingerprint_keys.iter().enumerate() {
        let parsed = KeyId::parse(id);
        // An id outside the grammar, or as long as a key, may be a key written in the wrong
        // place (`key=id`): not repeated.
        let at = match &parsed {
            Some(_) if id.len() < 32 => format!("audit.previous_fingerprint_keys.{id}"),
            _ => format!("audit.previous_fingerprint_keys (entry {})", i + 1),
        };
        match parsed {
            Some(parsed)
                if *id != raw.fingerprint_key_id && key.expose_secret().len() >= 32 =>
            {
                previous.insert(parsed, key.clone());
            }
            _ => f.check(
                false,
                at,
                format!(
                    "the id must be {} and differ from the current key id, the key hold at least 32 bytes",
                    KeyId::GRAMMAR
                ),
            ),
        }
    }
    f.check(
        raw.chain_key.expose_secret().len() >= 32,
        "audit.chain_key",
        format!("must be at least 32 bytes (set it here or in {CHAIN_KEY_ENV})"),
    );
    f.at_least(raw.queue_capacity, 1, "audit.queue_capacity");
    f.at_least(
        raw.refusal_queue_capacity,
        1,
        "audit.refusal_queue_capacity",
    );
    f.within(
        raw.shed_report_interval_secs,
        1..=3600,
        "audit.shed_report_interval_secs",
    );
    f.check(
        (1..=1000).contains(&raw.max_batch),
        "audit.max_batch",
        "must be 1 to 1000 (a batch is one transaction under the writers' lock: a longer one holds every replica's appends back longer)",
    );
    f.check(
        raw.fingerprint_key.expose_secret().len() >= 32,
        "audit.fingerprint_key",
        format!("must be at least 32 bytes (set it here or in {FINGERPRINT_KEY_ENV})"),
    );
    Some(AuditConfig {
        fingerprint_key_id: key_id?,
        fingerprint_key: raw.fingerprint_key.clone(),
        previous_fingerprint_keys: previous,
        chain_key: raw.chain_key.clone(),
        admin_rules: raw.admin_rules.clone(),
        queue_capacity: raw.queue_capacity,
        max_batch: raw.max_batch,
        refusal_queue_capacity: raw.refusal_queue_capacity,
        shed_report_interval_secs: raw.shed_report_interval_secs,
    })
}

/// Checks `[audit_sink]`.
pub(super) fn audit_sink(sink: &AuditSinkConfig, f: &mut Findings) {
    f.within(
        sink.queue_capacity,
        1..=1_000_000,
        "audit_sink.queue_capacity",
    );
    if sink.kind == SinkKind::File {
        f.check(
            sink.path.as_ref().is_some_and(|p| p.is_absolute()),
            "audit_sink.path",
            "kind = \"file\" needs the absolute path of the file to append to",
        );
    }
}
