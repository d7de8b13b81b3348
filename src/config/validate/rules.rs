//! Checks of `[[rules]]` entries: references, partitions, templates, and rules that can never
//! match.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::Findings;
use crate::config::{ClaimPattern, ClaimPatterns, Config, RuleConfig};
use crate::domain::CacheMode;
use crate::domain::RepositoryPattern;
use crate::policy::{ClaimMatcher, SessionTagTemplates, Template, ValueRule};

/// One claim's patterns, at `path`: not an empty list, and each compiles.
pub(super) fn claim_patterns(claim: &str, patterns: &ClaimPatterns, path: &str, f: &mut Findings) {
    f.check(
        !patterns.as_slice().is_empty(),
        path,
        "an empty list can never match",
    );
    if let Err(e) = ClaimMatcher::new(claim, patterns.as_slice()) {
        f.check(false, path, e.to_string());
    }
}

pub(super) fn rule_entry(rule: &RuleConfig, at: &str, config: &Config, f: &mut Findings) {
    let issuer = config.issuers.iter().find(|i| i.name == rule.issuer);
    let known = config
        .issuers
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>();
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
    f.check(
        !rule.claims.is_empty(),
        format!("{at}.claims"),
        "name at least one claim; to accept every token of the issuer say so with sub = \"*\"",
    );
    for (claim, patterns) in &rule.claims {
        claim_patterns(claim, patterns, &format!("{at}.claims.{claim}"), f);
    }
    f.check(
        !rule.regions.is_empty(),
        format!("{at}.regions"),
        "at least one region is required",
    );
    let mut seen = HashSet::new();
    let role_partition = rule.role_arn.partition();
    for region in &rule.regions {
        f.check(
            seen.insert(region),
            format!("{at}.regions"),
            format!("{region} is listed twice"),
        );
        f.check(
            region.partition().as_str() == role_partition,
            format!("{at}.regions"),
            format!(
                "{region} is in partition {}, but the role is in {role_partition}",
                region.partition()
            ),
        );
    }
    for (i, template) in rule.repositories.iter().enumerate() {
        let rendered = template.render(&sample_claims(template), ValueRule::RepositoryName);
        f.check(
            rendered.is_ok_and(|r| RepositoryPattern::try_from(r).is_ok()),
            format!("{at}.repositories[{i}]"),
            format!(
                "{:?} can never match a repository name (lowercase letters, digits, ._-/ and *)",
                template.as_str()
            ),
        );
    }
    if let Some(external_id) = &rule.external_id {
        f.check(
            (2..=1224).contains(&external_id.len())
                && external_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)),
            format!("{at}.external_id"),
            "must be 2 to 1224 of [A-Za-z0-9_+=,.@:/-]",
        );
    }
    if let Err(problems) = SessionTagTemplates::new(&rule.session_tags, &rule.transitive_tag_keys) {
        for problem in problems {
            f.check(false, format!("{at}.session_tags"), problem);
        }
    }
    cache_mode(rule, at, config, f);
    pull_through_cache(rule, at, f);
}

/// The pull-through cache's `ecr:CreateRepository` reaches as far as the rule's patterns, so
/// they must stop short of every repository of the registry.
fn pull_through_cache(rule: &RuleConfig, at: &str, f: &mut Findings) {
    if !rule.pull_through_cache {
        return;
    }
    f.check(
        !rule.repositories.is_empty(),
        format!("{at}.pull_through_cache"),
        "lets callers create repositories wherever the rule's repositories reach, and a rule without repositories reaches every one: name the pull-through cache rules' prefixes, such as repositories = [\"docker-hub/*\"]",
    );
    for (i, template) in rule.repositories.iter().enumerate() {
        f.check(
            !template.as_str().starts_with('*'),
            format!("{at}.repositories[{i}]"),
            format!(
                "{:?} starts with `*`, so with pull_through_cache callers could create any repository: start it with the pull-through cache rule's prefix, such as \"docker-hub/*\"",
                template.as_str()
            ),
        );
    }
}

/// A rule's `cache` must be able to serve something.
fn cache_mode(rule: &RuleConfig, at: &str, config: &Config, f: &mut Findings) {
    let min_remaining = config.cache.min_remaining_secs;
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

/// Claims that give every placeholder of `template` a plain value, to check what the
/// template's own text allows.
fn sample_claims(template: &Template) -> Map<String, Value> {
    let mut claims = Value::Object(Map::new());
    for placeholder in template.placeholders() {
        let path: Vec<&str> = placeholder.keys().collect();
        let mut node = &mut claims;
        for (depth, key) in path.iter().enumerate() {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let object = node.as_object_mut().expect("made an object above");
            let default = if depth + 1 == path.len() {
                Value::from("sample")
            } else {
                Value::Object(Map::new())
            };
            node = object.entry(*key).or_insert(default);
        }
    }
    match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A later rule of the same issuer can never match when an earlier one asks for no more
/// than it does: every token it would match, the earlier rule takes first.
pub(super) fn shadowed_rules(config: &Config, f: &mut Findings) {
    for (later_at, later) in config.rules.iter().enumerate() {
        let shadow = config.rules[..later_at].iter().find(|earlier| {
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

    /// The shadowing findings for rules `a` and then `b` with these `claims` tables.
    fn shadowing(a: &str, b: &str) -> Vec<(String, String)> {
        let rule = |name: &str, claims: &str| {
            format!(
                "[[rules]]\nname = \"{name}\"\nissuer = \"ci\"\nclaims = {claims}\n\
                 role_arn = \"arn:aws:iam::123456789012:role/ecr\"\nregions = [\"us-east-1\"]\n"
            )
        };
        let text = format!(
            "[database]\nurl = \"postgres://localhost/x\"\n[audit]\nfingerprint_key_id = \"k\"\n{}{}",
            rule("a", a),
            rule("b", b)
        );
        let config: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut f = Findings::default();
        shadowed_rules(&config, &mut f);
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
