//! A compiled `[[rules]]` entry (`Rule`) and the ordered list of them (`Rules`), where the first
//! rule whose issuer and claim matchers all match wins.

use serde_json::{Map, Value};

use super::Mismatch;
use super::{ClaimMatcher, InvalidPattern, SessionTagTemplates, Template};
use crate::config::{ClaimPattern, RuleConfig};
use crate::domain::CacheMode;
use crate::domain::{Access, Region, RegistryId, RoleArn, SessionDuration};

/// A compiled `[[rules]]` entry.
#[derive(Debug)]
pub(crate) struct Rule {
    /// The rule's name.
    pub name: String,
    /// The issuer (by config name) whose callers it considers.
    pub issuer: String,
    matchers: Vec<ClaimMatcher>,
    /// The role it grants.
    pub role_arn: RoleArn,
    /// The regions it allows; the first is the default.
    pub regions: Vec<Region>,
    /// The registries it allows; the first is the default.
    pub registry_ids: Vec<RegistryId>,
    /// The most it grants.
    pub access: Access,
    /// Repository pattern templates; empty means every repository.
    pub repositories: Vec<Template>,
    /// The longest session it grants.
    pub session_duration: SessionDuration,
    /// RoleSessionName template.
    pub session_name: Template,
    /// SourceIdentity template.
    pub source_identity: Template,
    /// Session tag templates.
    pub session_tags: SessionTagTemplates,
    /// ExternalId for the role's trust policy, if it needs one.
    pub external_id: Option<String>,
    /// Whether pulls may go through a pull-through cache rule.
    pub pull_through_cache: bool,
    /// Who may be handed a cached credential.
    pub cache: CacheMode,
}

/// A rule config that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidRule {
    /// A claim pattern does not compile.
    #[error("claims.{claim}: {source}")]
    Pattern {
        /// The claim.
        claim: String,
        /// Why.
        source: InvalidPattern,
    },
    /// The session tags break STS's limits.
    #[error("session_tags: {}", .0.join("; "))]
    Tags(Vec<String>),
}

impl Rule {
    /// Compiles a rule config.
    pub(crate) fn compile(config: &RuleConfig) -> Result<Self, InvalidRule> {
        let mut matchers = config
            .claims
            .iter()
            .map(|(claim, patterns)| {
                ClaimMatcher::new(claim, patterns.as_slice()).map_err(|source| {
                    InvalidRule::Pattern {
                        claim: claim.clone(),
                        source,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !config.audiences.is_empty() {
            let audiences: Vec<ClaimPattern> = config
                .audiences
                .iter()
                .map(|a| ClaimPattern::Text(literal_glob(a)))
                .collect();
            let matcher =
                ClaimMatcher::new("aud", &audiences).map_err(|source| InvalidRule::Pattern {
                    claim: "aud".to_owned(),
                    source,
                })?;
            matchers.push(matcher);
        }
        let registry_ids = if config.registry_ids.is_empty() {
            vec![config.role_arn.account().clone()]
        } else {
            config.registry_ids.clone()
        };
        Ok(Self {
            name: config.name.clone(),
            issuer: config.issuer.clone(),
            matchers,
            role_arn: config.role_arn.clone(),
            regions: config.regions.clone(),
            registry_ids,
            access: config.access,
            repositories: config.repositories.clone(),
            session_duration: config.session_duration_secs,
            session_name: config.session_name.clone(),
            source_identity: config.source_identity.clone(),
            session_tags: SessionTagTemplates::new(
                &config.session_tags,
                &config.transitive_tag_keys,
            )
            .map_err(InvalidRule::Tags)?,
            external_id: config.external_id.clone(),
            pull_through_cache: config.pull_through_cache,
            cache: config.cache,
        })
    }

    /// Whether a caller of `issuer` with these claims matches every claim matcher.
    pub(crate) fn matches(&self, issuer: &str, claims: &Map<String, Value>) -> bool {
        self.issuer == issuer && self.matchers.iter().all(|m| m.matches(claims))
    }

    /// The first claim matcher these claims fail, if any.
    pub(crate) fn first_mismatch(&self, claims: &Map<String, Value>) -> Option<Mismatch> {
        self.matchers.iter().find_map(|m| m.explain(claims).err())
    }
}

/// An audience is matched exactly, even if it contains glob characters.
fn literal_glob(audience: &str) -> String {
    if audience.contains(['*', '?', '[']) {
        audience
            .chars()
            .map(|c| {
                if "*?[]".contains(c) {
                    format!("[{c}]")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        audience.to_owned()
    }
}

/// The ordered rule list.
#[derive(Debug, Default)]
pub(crate) struct Rules(Vec<Rule>);

impl Rules {
    /// Compiles every rule, keeping the order.
    pub(crate) fn compile<'a>(
        configs: impl IntoIterator<Item = &'a RuleConfig>,
    ) -> Result<Self, InvalidRule> {
        configs
            .into_iter()
            .map(Rule::compile)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The first rule that matches, if any.
    pub(crate) fn first_match(&self, issuer: &str, claims: &Map<String, Value>) -> Option<&Rule> {
        self.0.iter().find(|r| r.matches(issuer, claims))
    }

    /// The rule with this name, if any.
    pub(crate) fn named(&self, name: &str) -> Option<&Rule> {
        self.0.iter().find(|r| r.name == name)
    }

    /// Every rule's name, in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| r.name.as_str())
    }

    /// The rules of one issuer, in order.
    pub(crate) fn of_issuer<'a>(&'a self, issuer: &'a str) -> impl Iterator<Item = &'a Rule> {
        self.0.iter().filter(move |r| r.issuer == issuer)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::config::ClaimPatterns;

    pub(crate) fn rule_config(name: &str, owner: &str) -> RuleConfig {
        toml::from_str(&format!(
            r#"
name = "{name}"
issuer = "ci"
claims = {{ repository_owner = "{owner}" }}
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1", "eu-west-1"]
session_duration_secs = 1800
"#
        ))
        .unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn first_matching_rule_wins_and_issuer_must_agree() {
        let rules = Rules::compile(&[rule_config("a", "acme"), rule_config("b", "*")]).unwrap();
        let acme = claims(json!({"repository_owner": "acme"}));
        assert_eq!(rules.first_match("ci", &acme).unwrap().name, "a");
        let other = claims(json!({"repository_owner": "other"}));
        assert_eq!(rules.first_match("ci", &other).unwrap().name, "b");
        assert!(rules.first_match("portal", &acme).is_none());
        assert!(rules.first_match("ci", &claims(json!({}))).is_none());
    }

    #[test]
    fn rule_audiences_narrow_the_issuers() {
        let mut config = rule_config("a", "acme");
        config.audiences = vec!["ecr-push".to_owned()];
        let rule = Rule::compile(&config).unwrap();
        assert!(rule.matches(
            "ci",
            &claims(json!({"repository_owner": "acme", "aud": ["ecr-token-broker", "ecr-push"]}))
        ));
        assert!(!rule.matches(
            "ci",
            &claims(json!({"repository_owner": "acme", "aud": "ecr-token-broker"}))
        ));
        assert_eq!(
            rule.first_mismatch(&claims(json!({"repository_owner": "acme", "aud": "x"})))
                .unwrap()
                .claim,
            "aud"
        );
    }

    #[test]
    fn registries_default_to_the_roles_account() {
        let rule = Rule::compile(&rule_config("a", "acme")).unwrap();
        assert_eq!(rule.registry_ids, vec![rule.role_arn.account().clone()]);
    }

    #[test]
    fn bad_patterns_and_tags_are_refused() {
        let mut config = rule_config("a", "acme");
        config.claims = BTreeMap::from([(
            "sub".to_owned(),
            ClaimPatterns::One(ClaimPattern::Text("[".to_owned())),
        )]);
        assert!(matches!(
            Rule::compile(&config),
            Err(InvalidRule::Pattern { ref claim, .. }) if claim == "sub"
        ));
        let mut config = rule_config("a", "acme");
        config.session_tags =
            BTreeMap::from([("aws:evil".to_owned(), Template::parse("{sub}").unwrap())]);
        assert!(matches!(
            Rule::compile(&config),
            Err(InvalidRule::Tags(ref problems))
                if problems == &["session tag key \"aws:evil\": the `aws:` prefix is reserved for AWS"]
        ));
    }
}
