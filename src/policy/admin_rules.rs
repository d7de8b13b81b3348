//! `AdminRules`: which rules make their callers admins (of the audit log or of the deny list). A
//! caller is an admin only when its first matching rule is one of them, the same rule that decides
//! what it may be issued.

use std::collections::HashSet;

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

    /// Whether the rule named `rule` makes its callers admins.
    pub(crate) fn contains(&self, rule: &str) -> bool {
        self.0.contains(rule)
    }
}
