//! The checks that relate sections to each other, run once every section is parsed: a rule
//! naming an unknown issuer or audience, a rule's cache against `[cache]`, rules that an
//! earlier rule shadows, and the rules `[audit]`, `[admin]` and `[[deny]]` name. Checks only:
//! it builds nothing.

mod operations;

use super::cache::CacheConfig;
use super::errors::Findings;
use super::issuers::RawIssuer;
use super::raw::RawConfig;
use super::rules::RawRule;
use crate::domain::CacheMode;
use crate::policy::{ClaimPattern, Template};

/// Every check across sections, on the file as read.
pub(super) fn across_sections(config: &RawConfig, f: &mut Findings) {
    let issuers: Vec<&str> = config.issuers.iter().map(|i| i.name.as_str()).collect();
    let rules: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    for (i, rule) in config.rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        rule_issuer(rule, &at, &config.issuers, &issuers, f);
        cache_mode(rule, &at, &config.cache, f);
    }
    shadowed_rules(&config.rules, f);
    names_rules(&config.audit.admin_rules, "audit.admin_rules", &rules, f);
    names_rules(&config.admin.rules, "admin.rules", &rules, f);
    operations::operations(config, &issuers, &rules, f);
}

/// Each of `names`, at `{path}[i]`, must be the name of one of `rules`.
fn names_rules(names: &[String], path: &str, rules: &[&str], f: &mut Findings) {
    for (i, name) in names.iter().enumerate() {
        f.check(
            rules.contains(&name.as_str()),
            format!("{path}[{i}]"),
            format!("no rule is named {name:?}"),
        );
    }
}

/// A rule's issuer must be one of `issuers` (named `known`), and the rule's audiences be
/// some of that issuer's.
fn rule_issuer(rule: &RawRule, at: &str, issuers: &[RawIssuer], known: &[&str], f: &mut Findings) {
    let issuer = issuers.iter().find(|i| i.name == rule.issuer);
    f.check(
        issuer.is_some(),
        format!("{at}.issuer"),
        format!(
            "unknown issuer {:?} (known: {})",
            rule.issuer,
            known.join(", ")
        ),
    );
    if let Some(issuer) = issuer {
        for audience in rule
            .audiences
            .iter()
            .filter(|a| !issuer.audiences.contains(a))
        {
            f.check(
                false,
                format!("{at}.audiences"),
                format!(
                    "{audience:?} is not one of issuer {}'s audiences, so the rule can never match",
                    issuer.name
                ),
            );
        }
    }
}

/// A rule's `cache` must be able to serve something.
fn cache_mode(rule: &RawRule, at: &str, cache: &CacheConfig, f: &mut Findings) {
    let min_remaining = cache.min_remaining_secs;
    f.check(
        rule.cache == CacheMode::Off
            || u64::from(rule.session_duration_secs.as_secs()) > min_remaining,
        format!("{at}.cache"),
        format!(
            "sessions of {} seconds never outlive [cache] min_remaining_secs = {min_remaining}, so nothing would be served from the cache; set cache = \"off\" or shorten min_remaining_secs",
            rule.session_duration_secs.as_secs(),
        ),
    );
    let from_sub = |t: &Template| t.placeholders().any(|p| p.keys().eq(["sub"]));
    f.check(
        rule.cache != CacheMode::Shared
            || !(from_sub(&rule.source_identity) || rule.session_tags.values().any(from_sub)),
        format!("{at}.cache"),
        "\"shared\" shares a credential between callers whose source identity and session tags come out the same, but they are templated from {sub}, so no two callers would share; template them from claims the callers have in common",
    );
}

/// A later rule of the same issuer can never match when an earlier one asks for no more
/// than it does: every token it would match, the earlier rule takes first.
fn shadowed_rules(rules: &[RawRule], f: &mut Findings) {
    for (later_at, later) in rules.iter().enumerate() {
        let shadow = rules[..later_at].iter().find(|earlier| {
            earlier.issuer == later.issuer
                && earlier
                    .audiences
                    .iter()
                    .all(|a| later.audiences.contains(a))
                && earlier.claims.iter().all(|(claim, patterns)| {
                    let any_value =
                        matches!(patterns.as_slice(), [ClaimPattern::Text(t)] if t == "*");
                    match later.claims.get(claim) {
                        Some(theirs) => any_value || patterns.as_slice() == theirs.as_slice(),
                        // Every verified token has a string `sub`.
                        None => any_value && claim == "sub",
                    }
                })
        });
        if let Some(earlier) = shadow {
            f.check(
                false,
                format!("rules[{later_at}]"),
                format!(
                    "rule {:?} can never match: rule {:?} before it matches every token it would",
                    later.name, earlier.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TEST_BASE;

    /// The shadowing findings for rules `a` and then `b` with these `claims` tables.
    fn shadowing(a: &str, b: &str) -> Vec<(String, String)> {
        let rule = |name: &str, claims: &str| {
            format!(
                "[[rules]]\nname = \"{name}\"\nissuer = \"ci\"\nclaims = {claims}\n\
                 role_arn = \"arn:aws:iam::123456789012:role/ecr\"\nregions = [\"us-east-1\"]\n"
            )
        };
        let text = format!("{TEST_BASE}{}{}", rule("a", a), rule("b", b));
        let config: RawConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut f = Findings::default();
        shadowed_rules(&config.rules, &mut f);
        f.0
    }

    #[test]
    fn a_rule_is_shadowed_by_an_earlier_one_with_the_same_patterns() {
        for (a, b) in [
            (r#"{ ref = "main" }"#, r#"{ ref = "main" }"#),
            // One pattern, written alone or as a list of one, is the same pattern.
            (r#"{ ref = "main" }"#, r#"{ ref = ["main"] }"#),
            (
                r#"{ ref = { regex = "m.*" } }"#,
                r#"{ ref = [{ regex = "m.*" }] }"#,
            ),
            (r#"{ sub = "*" }"#, r#"{ ref = "main" }"#),
            (r#"{ ref = "*" }"#, r#"{ ref = "main", sub = "x" }"#),
        ] {
            let findings = shadowing(a, b);
            assert_eq!(findings.len(), 1, "{a} then {b}");
            assert_eq!(findings[0].0, "rules[1]");
            assert!(
                findings[0]
                    .1
                    .contains("rule \"b\" can never match: rule \"a\""),
                "{findings:?}"
            );
        }
    }

    #[test]
    fn different_patterns_do_not_shadow() {
        for (a, b) in [
            (r#"{ ref = "main" }"#, r#"{ ref = "dev" }"#),
            // The same text as a glob and as a regex matches different values.
            (r#"{ ref = "m*" }"#, r#"{ ref = { regex = "m*" } }"#),
            (
                r#"{ ref = ["main", "dev"] }"#,
                r#"{ ref = ["dev", "main", "x"] }"#,
            ),
            (r#"{ ref = "main" }"#, r#"{ sub = "x" }"#),
            (r#"{ ref = "*" }"#, r#"{ sub = "x" }"#),
        ] {
            assert_eq!(shadowing(a, b), [], "{a} then {b}");
        }
    }
}
