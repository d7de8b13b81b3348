//! Compiled deny entries and lists, and what a cached credential's owner looks like to them.
//! *No I/O, no config: entries arrive as [`EntrySpec`]s.*
//!
//! An entry names any of: an issuer, a subject (exact, glob or regex, as a rule's claim
//! patterns are written), the caller's first matching rule, and claim matchers; a caller is
//! denied when everything an entry names matches it. Claims are matched by the rules' own
//! [`ClaimMatcher`], so the two can never read a pattern differently.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::EntrySpec;
use crate::auth::Caller;
use crate::credentials::cache::CachedOwner;
use crate::policy::{ClaimMatcher, InvalidPattern};

/// Where a deny entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DenySource {
    /// `[[deny]]` entry number n (from 0) of the config file.
    Config(usize),
    /// The stored entry with this id.
    Stored(i64),
}

impl std::fmt::Display for DenySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(i) => write!(f, "deny[{i}]"),
            Self::Stored(id) => write!(f, "stored deny entry {id}"),
        }
    }
}

/// One compiled deny entry.
#[derive(Debug)]
pub(crate) struct DenyEntry {
    /// Where it comes from.
    pub source: DenySource,
    issuer: Option<String>,
    subject: Option<ClaimMatcher>,
    rule: Option<String>,
    claims: Vec<ClaimMatcher>,
    expires_at: Option<DateTime<Utc>>,
}

impl DenyEntry {
    /// Compiles a validated entry; a stored one may expire.
    pub(crate) fn compile(
        spec: &EntrySpec,
        source: DenySource,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Self, InvalidPattern> {
        let subject = spec
            .subject
            .as_ref()
            .map(|patterns| ClaimMatcher::new("sub", patterns.as_slice()))
            .transpose()?;
        let claims = spec
            .claims
            .iter()
            .map(|(claim, patterns)| ClaimMatcher::new(claim, patterns.as_slice()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            source,
            issuer: spec.issuer.clone(),
            subject,
            rule: spec.rule.clone(),
            claims,
            expires_at,
        })
    }

    /// Whether this entry denies `caller`, whose first matching rule is `rule`, at `now`.
    pub(crate) fn denies(&self, caller: &Caller, rule: Option<&str>, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
            && self.issuer.as_deref().is_none_or(|i| i == &*caller.issuer)
            && self.rule.as_deref().is_none_or(|r| Some(r) == rule)
            && self
                .subject
                .as_ref()
                .is_none_or(|m| m.matches(&caller.claims))
            && self.claims.iter().all(|m| m.matches(&caller.claims))
    }

    /// Whether it matches on claims, so that the cache cannot tell whose credentials it
    /// reaches ([`DenyEntry::covers`]) until a denied caller asks again.
    pub(crate) fn matches_claims(&self) -> bool {
        !self.claims.is_empty()
    }

    /// Whether every caller a cached credential of `owner` may be served to is denied by
    /// this entry, so that the credential can be dropped now. An entry with claim matchers
    /// cannot tell from the cache alone: the denied caller's own entries go at its next
    /// request instead. A shared credential is reached only by an entry that names no
    /// subject, as others share it.
    pub(crate) fn covers(&self, owner: CachedOwner<'_>, now: DateTime<Utc>) -> bool {
        if !self.claims.is_empty() || self.expires_at.is_some_and(|at| now >= at) {
            return false;
        }
        let subject = match (&self.subject, owner.subject) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(matcher), Some(subject)) => {
                let mut claims = Map::new();
                claims.insert("sub".to_owned(), Value::String(subject.to_owned()));
                matcher.matches(&claims)
            }
        };
        subject
            && self.issuer.as_deref().is_none_or(|i| i == owner.issuer)
            && self.rule.as_deref().is_none_or(|r| r == owner.rule)
    }
}

/// Deny entries, in order.
#[derive(Debug, Default)]
pub(crate) struct DenyList(Vec<DenyEntry>);

impl DenyList {
    /// Compiles the config's `[[deny]]` entries (validated config).
    pub(crate) fn compile(entries: &[EntrySpec]) -> Result<Self, InvalidPattern> {
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| DenyEntry::compile(entry, DenySource::Config(i), None))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// A list of already compiled entries.
    pub(crate) fn new(entries: Vec<DenyEntry>) -> Self {
        Self(entries)
    }

    /// The first entry that denies `caller`, whose first matching rule is `rule`.
    pub(crate) fn first_denial(&self, caller: &Caller, rule: Option<&str>) -> Option<&DenyEntry> {
        let now = Utc::now();
        self.0.iter().find(|e| e.denies(caller, rule, now))
    }

    /// Whether some entry reaches every caller a credential cached for `owner` may go to.
    pub(crate) fn covers(&self, owner: CachedOwner<'_>) -> bool {
        let now = Utc::now();
        self.0.iter().any(|e| e.covers(owner, now))
    }

    /// Where each entry comes from, in order.
    pub(crate) fn sources(&self) -> impl Iterator<Item = DenySource> + '_ {
        self.0.iter().map(|e| e.source)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(toml_text: &str) -> DenyEntry {
        let config: EntrySpec = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
        DenyEntry::compile(&config, DenySource::Config(0), None).unwrap()
    }

    fn caller(issuer: &str, claims: Value) -> Caller {
        Caller::with_claims(issuer, claims)
    }

    const NOW: &str = "2026-12-02T12:00:00Z";

    fn now() -> DateTime<Utc> {
        NOW.parse().unwrap()
    }

    #[test]
    fn every_field_named_must_match() {
        let e = entry(
            r#"
issuer = "ci"
subject = "repo:acme/*"
claims = { ref = "refs/heads/dev*" }
"#,
        );
        let dev = caller(
            "ci",
            json!({"sub": "repo:acme/api", "ref": "refs/heads/dev-1"}),
        );
        let main = caller(
            "ci",
            json!({"sub": "repo:acme/api", "ref": "refs/heads/main"}),
        );
        let other_issuer = caller(
            "sso",
            json!({"sub": "repo:acme/api", "ref": "refs/heads/dev"}),
        );
        let other_subject = caller(
            "ci",
            json!({"sub": "repo:beta/api", "ref": "refs/heads/dev"}),
        );
        assert!(e.denies(&dev, None, now()));
        assert!(!e.denies(&main, None, now()));
        assert!(!e.denies(&other_issuer, None, now()));
        assert!(!e.denies(&other_subject, None, now()));
    }

    #[test]
    fn subjects_are_patterns_as_rules_write_them() {
        let exact = entry(r#"subject = "repo:acme/api""#);
        let regex = entry(r#"subject = { regex = "repo:acme/(api|web)" }"#);
        let list = entry(r#"subject = ["a", "b*"]"#);
        let c = |sub: &str| caller("ci", json!({ "sub": sub }));
        assert!(exact.denies(&c("repo:acme/api"), None, now()));
        assert!(!exact.denies(&c("repo:acme/api2"), None, now()));
        assert!(regex.denies(&c("repo:acme/web"), None, now()));
        // Anchored, as in rules.
        assert!(!regex.denies(&c("xrepo:acme/web"), None, now()));
        assert!(list.denies(&c("bee"), None, now()));
        assert!(!list.denies(&c("ab"), None, now()));
    }

    #[test]
    fn a_rule_entry_denies_the_callers_that_rule_would_serve() {
        let e = entry(r#"rule = "push""#);
        let c = caller("ci", json!({"sub": "x"}));
        assert!(e.denies(&c, Some("push"), now()));
        assert!(!e.denies(&c, Some("pull"), now()));
        assert!(!e.denies(&c, None, now()));
    }

    #[test]
    fn an_expired_entry_denies_nobody() {
        let config: EntrySpec = toml::from_str(r#"subject = "x""#).unwrap();
        let at: DateTime<Utc> = "2026-12-02T12:00:01Z".parse().unwrap();
        let e = DenyEntry::compile(&config, DenySource::Stored(7), Some(at)).unwrap();
        let c = caller("ci", json!({"sub": "x"}));
        assert!(e.denies(&c, None, now()));
        assert!(!e.denies(&c, None, at));
        let owner = CachedOwner {
            rule: "r",
            issuer: "ci",
            subject: Some("x"),
        };
        assert!(e.covers(owner, now()));
        assert!(!e.covers(owner, at));
    }

    #[test]
    fn shared_credentials_are_reached_only_without_a_subject() {
        let by_subject = entry(
            r#"issuer = "ci"
subject = "repo:acme/*""#,
        );
        let by_rule = entry(r#"rule = "r""#);
        let by_claim = entry(r#"claims = { team = "a" }"#);
        let mine = CachedOwner {
            rule: "r",
            issuer: "ci",
            subject: Some("repo:acme/api"),
        };
        let someone_elses = CachedOwner {
            subject: Some("repo:beta/api"),
            ..mine
        };
        let shared = CachedOwner {
            subject: None,
            ..mine
        };
        assert!(by_subject.covers(mine, now()));
        assert!(!by_subject.covers(someone_elses, now()));
        assert!(!by_subject.covers(shared, now()));
        assert!(by_rule.covers(shared, now()));
        assert!(!by_rule.covers(
            CachedOwner {
                rule: "q",
                ..shared
            },
            now()
        ));
        // Claims are not in the cache: those callers' entries go at their next request.
        assert!(!by_claim.covers(mine, now()));
    }

    #[test]
    fn the_list_reports_the_first_denial() {
        let configs: Vec<EntrySpec> = [r#"subject = "a""#, r#"issuer = "ci""#]
            .iter()
            .map(|t| toml::from_str(t).unwrap())
            .collect();
        let list = DenyList::compile(&configs).unwrap();
        let a = caller("ci", json!({"sub": "a"}));
        let b = caller("ci", json!({"sub": "b"}));
        let c = caller("sso", json!({"sub": "c"}));
        assert_eq!(
            list.first_denial(&a, None).unwrap().source,
            DenySource::Config(0)
        );
        assert_eq!(
            list.first_denial(&b, None).unwrap().source,
            DenySource::Config(1)
        );
        assert!(list.first_denial(&c, None).is_none());
        assert!(DenyList::default().first_denial(&a, None).is_none());
    }
}
