//! `[[rules]]`: each entry parsed into a compiled `policy::Rule` (claim matchers, templates
//! and session tags compiled here, once), with every problem named by its path. What relates
//! a rule to other sections (its issuer, `[cache]`, earlier rules) is `validate.rs`'s.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::errors::Findings;
use crate::domain::CacheMode;
use crate::domain::{Access, Region, RegistryId, RepositoryPattern, RoleArn, SessionDuration};
use crate::policy::{ClaimMatcher, ClaimPatterns, Rule, SessionTagTemplates, Template, ValueRule};
use crate::rate_limit::RateLimitConfig;

/// `[[rules]]` as the file spells it: claims that, when all match, map a caller to a role
/// and to the most it may ask for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    /// Unique name, recorded in the audit log.
    pub(super) name: String,
    /// Name of the issuer whose tokens this rule considers.
    pub(super) issuer: String,
    /// The token's `aud` must name one of these (a subset of the issuer's); empty: any of
    /// the issuer's audiences.
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    /// Claim name (or JSON pointer) to patterns; every entry must match.
    #[serde(default)]
    pub(super) claims: BTreeMap<String, ClaimPatterns>,
    /// The role to assume.
    pub(super) role_arn: RoleArn,
    /// Regions the caller may ask for; the first is the default.
    pub(super) regions: Vec<Region>,
    /// Registries the caller may ask for; the first is the default. Default: the role's account.
    #[serde(default)]
    pub(super) registry_ids: Vec<RegistryId>,
    /// The most this rule grants: `pull` or `push`.
    #[serde(default)]
    pub(super) access: Access,
    /// Repository patterns templated from claims, such as `"{repository}/*"`; they become the
    /// session policy's resources. Empty: every repository of the allowed registries.
    #[serde(default)]
    pub(super) repositories: Vec<Template>,
    /// The longest session this rule grants.
    #[serde(default)]
    pub(super) session_duration_secs: SessionDuration,
    /// RoleSessionName template; a unique suffix is always appended.
    #[serde(default = "default_identity_template")]
    pub(super) session_name: Template,
    /// SourceIdentity template.
    #[serde(default = "default_identity_template")]
    pub(super) source_identity: Template,
    /// Session tags, each value templated from claims.
    #[serde(default)]
    pub(super) session_tags: BTreeMap<String, Template>,
    /// Tag keys that stay on sessions chained from this one.
    #[serde(default)]
    pub(super) transitive_tag_keys: Vec<String>,
    /// `ExternalId` passed to AssumeRole when the role's trust policy requires one.
    pub(super) external_id: Option<String>,
    /// Lets a pull import an image through an ECR pull-through cache rule, creating its
    /// repository, on the rule's repositories only.
    #[serde(default)]
    pub(super) pull_through_cache: bool,
    /// This rule's callers' token bucket instead of `[rate_limit]`'s.
    pub(super) rate_limit: Option<RateLimitConfig>,
    /// Who may be handed a cached credential: each caller its own (default), callers with
    /// an identical grant one shared, or nobody.
    #[serde(default)]
    pub(super) cache: CacheMode,
}

fn default_identity_template() -> Template {
    Template::parse("{sub}").expect("a valid template")
}

/// One claim's patterns at `path`, compiled; their problems go to `f`.
fn compile_claim(
    claim: &str,
    patterns: &ClaimPatterns,
    path: &str,
    f: &mut Findings,
) -> Option<ClaimMatcher> {
    patterns
        .compile(claim)
        .map_err(|problems| {
            for problem in problems {
                f.check(false, path, problem);
            }
        })
        .ok()
}

/// Parses every rule, in order; a rule with a problem (in `f`) is `None`.
pub(super) fn rules(raw: &[RawRule], f: &mut Findings) -> Vec<Option<Rule>> {
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, rule)| {
            let at = format!("rules[{i}]");
            f.unique_name(&rule.name, &at, "rule", &mut names);
            rule_entry(rule, &at, f)
        })
        .collect()
}

/// Parses one rule at `at`: every check of the rule on its own, compiling its matchers and
/// templates once. `None` when something does not compile.
fn rule_entry(rule: &RawRule, at: &str, f: &mut Findings) -> Option<Rule> {
    f.check(
        !rule.claims.is_empty(),
        format!("{at}.claims"),
        "name at least one claim; to accept every token of the issuer say so with sub = \"*\"",
    );
    let claims: Vec<Option<ClaimMatcher>> = rule
        .claims
        .iter()
        .map(|(claim, patterns)| compile_claim(claim, patterns, &format!("{at}.claims.{claim}"), f))
        .collect();
    let audiences = if rule.audiences.is_empty() {
        Some(None)
    } else {
        ClaimMatcher::audiences(&rule.audiences)
            .map_err(|e| f.check(false, format!("{at}.audiences"), e.to_string()))
            .ok()
            .map(Some)
    };
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
    let session_tags = SessionTagTemplates::new(&rule.session_tags, &rule.transitive_tag_keys)
        .map_err(|problems| {
            for problem in problems {
                f.check(false, format!("{at}.session_tags"), problem);
            }
        })
        .ok();
    pull_through_cache(rule, at, f);
    // A rule that names no registry allows its role's account.
    let registry_ids = if rule.registry_ids.is_empty() {
        vec![rule.role_arn.account().clone()]
    } else {
        rule.registry_ids.clone()
    };
    Some(Rule {
        name: rule.name.clone(),
        issuer: rule.issuer.clone(),
        claims: claims.into_iter().collect::<Option<_>>()?,
        audiences: audiences?,
        role_arn: rule.role_arn.clone(),
        regions: rule.regions.clone(),
        registry_ids,
        access: rule.access,
        repositories: rule.repositories.clone(),
        session_duration: rule.session_duration_secs,
        session_name: rule.session_name.clone(),
        source_identity: rule.source_identity.clone(),
        session_tags: session_tags?,
        external_id: rule.external_id.clone(),
        pull_through_cache: rule.pull_through_cache,
        cache: rule.cache,
    })
}

/// The pull-through cache's `ecr:CreateRepository` reaches as far as the rule's patterns, so
/// they must stop short of every repository of the registry.
fn pull_through_cache(rule: &RawRule, at: &str, f: &mut Findings) {
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

/// The rule a `[[rules]]` entry's TOML describes, for unit tests; panics unless it compiles.
#[cfg(test)]
pub(crate) fn rule_from_toml(text: &str) -> Rule {
    let raw: RawRule = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    rule_entry(&raw, "rule", &mut Findings::default()).expect("the rule compiles")
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, TEST_BASE, TEST_CI_ISSUER};

    fn problems(rule: &str) -> Vec<(String, String)> {
        let text = format!(
            "{TEST_BASE}{TEST_CI_ISSUER}[[rules]]\nname = \"a\"\nissuer = \"ci\"\n\
             role_arn = \"arn:aws:iam::123456789012:role/ecr\"\nregions = [\"us-east-1\"]\n{rule}"
        );
        match Config::parse(&text, |_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .iter()
                .map(|(p, m)| (p.to_owned(), m.to_owned()))
                .collect(),
        }
    }

    #[test]
    fn bad_patterns_and_tags_are_refused() {
        let found = problems("claims = { sub = \"[\" }");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "rules[0].claims.sub");
        let found =
            problems("claims = { sub = \"*\" }\nsession_tags = { \"aws:evil\" = \"{sub}\" }");
        assert_eq!(
            found,
            [(
                "rules[0].session_tags".to_owned(),
                "session tag key \"aws:evil\": the `aws:` prefix is reserved for AWS".to_owned()
            )]
        );
    }
}
