//! Where a verified caller stands, decided once per request against the request's snapshot:
//! its first matching rule and what the deny lists say of it. The caller's charge, the
//! admins' checks and the issuing path all read this one decision instead of matching the
//! rules and the lists again. *Decides nothing new: it only keeps what it was given.*

use std::sync::Arc;

use super::{DenyLists, DenySource, StaleDenyList};
use crate::auth::Caller;
use crate::policy::{AdminRules, Rule, Rules};
use crate::rate_limit::Standing;

/// A verified caller's first matching rule and deny-list verdict, under one snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    /// The snapshot's rules, which `rule` indexes.
    rules: Arc<Rules>,
    /// Where the caller's first matching rule is in `rules`.
    rule: Option<usize>,
    verdict: Result<Option<DeniedBy>, StaleDenyList>,
}

/// The deny entry that refuses a caller, as far as an admission needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeniedBy {
    /// Which entry.
    pub source: DenySource,
    /// Whether it names claims: such an entry reaches the caller's cached credentials only
    /// when the caller asks again.
    pub matches_claims: bool,
}

impl Admission {
    /// Matches `caller` against `rules`, then the deny lists: the config's first, then the
    /// stored ones, which decide nothing but that the caller cannot be cleared when they are
    /// too old to trust.
    pub(crate) fn decide(rules: &Arc<Rules>, deny: &DenyLists, caller: &Caller) -> Self {
        let rule = rules.first_match_at(&caller.issuer, &caller.claims);
        let name = rule.map(|at| rules.at(at).name.as_str());
        let verdict = deny.denial(caller, name).map(|entry| {
            entry.map(|entry| DeniedBy {
                source: entry.source,
                matches_claims: entry.matches_claims(),
            })
        });
        Self {
            rules: Arc::clone(rules),
            rule,
            verdict,
        }
    }

    /// The caller's first matching rule, if one matches.
    pub(crate) fn rule(&self) -> Option<&Rule> {
        self.rule.map(|at| self.rules.at(at))
    }

    /// The deny entry that refuses the caller, if one does.
    pub(crate) fn denied_by(&self) -> Result<Option<DeniedBy>, StaleDenyList> {
        self.verdict
    }

    /// Whose limit the caller is held to: its rule's when that rule admits it and nothing
    /// denies it (a list too old to trust clears nobody).
    pub(crate) fn standing(&self) -> Standing<'_> {
        match (self.rule(), self.verdict) {
            (Some(rule), Ok(None)) => Standing::Admitted(rule),
            _ => Standing::Unadmitted,
        }
    }

    /// Whether the caller's first matching rule is one of `admins`: the same rule that
    /// decides what it may be issued, so a shadowed admin rule makes no admin.
    pub(crate) fn is_admitted_by(&self, admins: &AdminRules) -> bool {
        self.rule().is_some_and(|rule| admins.contains(&rule.name))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;
    use crate::kill_switch::{EntrySpec, Names};
    use crate::policy::test_rule;

    fn rules() -> Arc<Rules> {
        Arc::new(Rules::new(vec![
            test_rule("acme", "acme"),
            test_rule("auditors", "*"),
        ]))
    }

    /// The config's `[[deny]]` entries, with the stored list read just now (`fresh`) or never.
    fn deny(entries: &str, fresh: bool) -> DenyLists {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            deny: Vec<EntrySpec>,
        }
        let file: File = toml::from_str(entries).unwrap_or_else(|e| panic!("{e}"));
        let lists = DenyLists::new(&file.deny, Names::default(), Duration::from_secs(20)).unwrap();
        lists.with_stored(&[], fresh.then(Instant::now)).0
    }

    fn caller(owner: &str) -> Caller {
        Caller::with_claims(
            "ci",
            json!({"sub": format!("repo:{owner}/x"), "repository_owner": owner}),
        )
    }

    #[test]
    fn only_the_first_matching_rule_makes_an_admin() {
        let (rules, deny) = (rules(), deny("", true));
        let admins = AdminRules::new(&["auditors".to_owned()]);
        let admitted = |caller: &Caller| Admission::decide(&rules, &deny, caller);

        assert!(admitted(&caller("platform")).is_admitted_by(&admins));
        // "auditors" matches acme too, but "acme" comes first.
        assert!(!admitted(&caller("acme")).is_admitted_by(&admins));
        let stranger = Caller::with_claims("portal", json!({"sub": "x", "repository_owner": "p"}));
        assert!(!admitted(&stranger).is_admitted_by(&admins));
        assert!(!admitted(&caller("platform")).is_admitted_by(&AdminRules::default()));
    }

    #[test]
    fn a_denied_caller_keeps_its_rule_but_stands_unadmitted() {
        let rules = rules();
        let deny = deny("[[deny]]\nclaims = { repository_owner = \"acme\" }\n", true);

        let denied = Admission::decide(&rules, &deny, &caller("acme"));
        assert_eq!(denied.rule().map(|r| r.name.as_str()), Some("acme"));
        assert_eq!(
            denied.denied_by(),
            Ok(Some(DeniedBy {
                source: DenySource::Config(0),
                matches_claims: true,
            }))
        );
        assert!(matches!(denied.standing(), Standing::Unadmitted));

        let clear = Admission::decide(&rules, &deny, &caller("platform"));
        assert_eq!(clear.denied_by(), Ok(None));
        assert!(matches!(clear.standing(), Standing::Admitted(rule) if rule.name == "auditors"));
    }

    #[test]
    fn a_list_too_old_to_trust_clears_nobody() {
        let admission = Admission::decide(&rules(), &deny("", false), &caller("platform"));
        assert!(admission.denied_by().is_err());
        assert!(matches!(admission.standing(), Standing::Unadmitted));
        assert!(admission.rule().is_some());
    }
}
