//! `AdminRules`: which rules make their callers admins (of the audit log or of the deny list). A
//! caller is an admin only when its first matching rule is one of them, the same rule that decides
//! what it may be issued.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::Rules;

/// The rules whose callers administer something: the audit log (`[audit] admin_rules`:
/// they read every caller's records and look up tokens) or the deny list (`[admin] rules`).
///
/// A caller is an admin when its first matching rule, the one that also decides what
/// it may be issued, is one of them. An admin rule that an earlier rule shadows for some
/// caller makes no admin of that caller, exactly as it would issue nothing to it.
#[derive(Debug, Default)]
pub(crate) struct AdminRules(HashSet<String>);

impl AdminRules {
    /// Callers of the rules named `rule_names` are admins.
    pub(crate) fn new(rule_names: &[String]) -> Self {
        Self(rule_names.iter().cloned().collect())
    }

    /// Whether a verified caller of `issuer` with these claims is an admin.
    pub(crate) fn admits(&self, rules: &Rules, issuer: &str, claims: &Map<String, Value>) -> bool {
        rules
            .first_match(issuer, claims)
            .is_some_and(|rule| self.0.contains(&rule.name))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::test_rule;

    fn claims(owner: &str) -> Map<String, Value> {
        json!({"repository_owner": owner})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn only_the_first_matching_rule_counts() {
        let rules = Rules::new(vec![test_rule("acme", "acme"), test_rule("auditors", "*")]);
        let admins = AdminRules::new(&["auditors".to_owned()]);

        assert!(admins.admits(&rules, "ci", &claims("platform")));
        // "auditors" matches acme too, but "acme" comes first.
        assert!(!admins.admits(&rules, "ci", &claims("acme")));
        assert!(!admins.admits(&rules, "portal", &claims("platform")));
        assert!(!AdminRules::default().admits(&rules, "ci", &claims("platform")));
    }
}
