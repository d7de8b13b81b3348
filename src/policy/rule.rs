use serde::Deserialize;
use serde_json::Value;

use super::ClaimMatcher;
use crate::config::RuleConfig;
use crate::domain::{Region, RegistryId, RoleArn, SessionDuration};

/// A compiled `[[rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
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
    /// The longest session it grants.
    pub session_duration: SessionDuration,
    /// ExternalId for the role's trust policy, if it needs one.
    pub external_id: Option<String>,
}

impl Rule {
    /// Compiles a validated rule config.
    pub fn compile(config: &RuleConfig) -> Result<Self, super::InvalidPattern> {
        let matchers = config
            .claims
            .iter()
            .map(|(claim, patterns)| ClaimMatcher::new(claim, patterns.as_slice()))
            .collect::<Result<_, _>>()?;
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
            session_duration: config.session_duration_secs,
            external_id: config.external_id.clone(),
        })
    }

    /// Whether a caller of `issuer` with these claims matches every claim matcher.
    pub fn matches(&self, issuer: &str, claims: &serde_json::Map<String, Value>) -> bool {
        self.issuer == issuer && self.matchers.iter().all(|m| m.matches(claims))
    }

    /// Narrows this rule's allowance to what the request asks for, refusing anything beyond it.
    pub fn grant(&self, request: &IssueRequest) -> Result<Grant<'_>, Refusal> {
        let mut refused = Vec::new();
        let region = request
            .region
            .clone()
            .unwrap_or_else(|| self.regions[0].clone());
        if !self.regions.contains(&region) {
            refused.push(format!("region {region}"));
        }
        let registry_ids = match &request.registry_ids {
            Some(ids) => ids.clone(),
            None => vec![self.registry_ids[0].clone()],
        };
        for id in registry_ids
            .iter()
            .filter(|id| !self.registry_ids.contains(id))
        {
            refused.push(format!("registry {id}"));
        }
        let duration = request.duration_seconds.unwrap_or(self.session_duration);
        if duration > self.session_duration {
            refused.push(format!(
                "durationSeconds {} (at most {})",
                duration.as_secs(),
                self.session_duration.as_secs()
            ));
        }
        if !refused.is_empty() {
            return Err(Refusal {
                rule: self.name.clone(),
                refused,
            });
        }
        Ok(Grant {
            rule: self,
            region,
            registry_ids,
            duration,
        })
    }
}

/// The ordered rule list.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Compiles every rule, keeping the order.
    pub fn compile<'a>(
        configs: impl IntoIterator<Item = &'a RuleConfig>,
    ) -> Result<Self, super::InvalidPattern> {
        configs
            .into_iter()
            .map(Rule::compile)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The first rule that matches, if any.
    pub fn first_match(
        &self,
        issuer: &str,
        claims: &serde_json::Map<String, Value>,
    ) -> Option<&Rule> {
        self.0.iter().find(|r| r.matches(issuer, claims))
    }
}

/// The optional body of an issue request: every field narrows what the rule allows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssueRequest {
    /// One region; default: the rule's first.
    pub region: Option<Region>,
    /// Registries (account IDs); default: the rule's first.
    #[serde(default, deserialize_with = "registry_ids")]
    pub registry_ids: Option<Vec<RegistryId>>,
    /// A session shorter than the rule's.
    pub duration_seconds: Option<SessionDuration>,
}

/// Between 1 and 10 distinct registry IDs, in the order given.
fn registry_ids<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<RegistryId>>, D::Error> {
    let ids = Vec::<RegistryId>::deserialize(d)?;
    if ids.is_empty() || ids.len() > 10 {
        return Err(serde::de::Error::custom(
            "registryIds must list 1 to 10 registry IDs",
        ));
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != ids.len() {
        return Err(serde::de::Error::custom(
            "registryIds lists a registry twice",
        ));
    }
    Ok(Some(ids))
}

/// What a matched rule lets this request have.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// The rule that matched.
    pub rule: &'a Rule,
    /// The region to call ECR in.
    pub region: Region,
    /// The registries to ask ECR for.
    pub registry_ids: Vec<RegistryId>,
    /// The session's lifetime.
    pub duration: SessionDuration,
}

/// A request that asked for more than its rule allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule} does not allow: {}", refused.join(", "))]
pub struct Refusal {
    /// The rule that matched.
    pub rule: String,
    /// Each refused item.
    pub refused: Vec<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::config::ClaimPatterns;

    fn rule_config(name: &str, owner: &str) -> RuleConfig {
        RuleConfig {
            name: name.to_owned(),
            issuer: "ci".to_owned(),
            claims: BTreeMap::from([(
                "repository_owner".to_owned(),
                ClaimPatterns::One(owner.to_owned()),
            )]),
            role_arn: RoleArn::try_from("arn:aws:iam::123456789012:role/ecr".to_owned()).unwrap(),
            regions: vec![
                Region::try_from("us-east-1".to_owned()).unwrap(),
                Region::try_from("eu-west-1".to_owned()).unwrap(),
            ],
            registry_ids: Vec::new(),
            session_duration_secs: SessionDuration::try_from(1800).unwrap(),
            external_id: None,
        }
    }

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn request(body: Value) -> IssueRequest {
        serde_json::from_value(body).unwrap()
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
    fn defaults_come_from_the_rule() {
        let rule = Rule::compile(&rule_config("a", "acme")).unwrap();
        let grant = rule.grant(&IssueRequest::default()).unwrap();
        assert_eq!(grant.region.as_str(), "us-east-1");
        assert_eq!(grant.registry_ids, vec![rule.role_arn.account().clone()]);
        assert_eq!(grant.duration.as_secs(), 1800);
    }

    #[test]
    fn requests_may_narrow() {
        let rule = Rule::compile(&rule_config("a", "acme")).unwrap();
        let grant = rule
            .grant(&request(json!({"region": "eu-west-1", "registryIds": ["123456789012"], "durationSeconds": 900})))
            .unwrap();
        assert_eq!(grant.region.as_str(), "eu-west-1");
        assert_eq!(grant.duration.as_secs(), 900);
    }

    #[test]
    fn asking_for_more_names_every_refused_item() {
        let rule = Rule::compile(&rule_config("a", "acme")).unwrap();
        let refusal = rule
            .grant(&request(json!({"region": "ap-south-1", "registryIds": ["123456789012", "999999999999"], "durationSeconds": 3600})))
            .unwrap_err();
        assert_eq!(
            refusal.refused,
            vec![
                "region ap-south-1",
                "registry 999999999999",
                "durationSeconds 3600 (at most 1800)"
            ]
        );
    }

    #[test]
    fn malformed_requests_do_not_parse() {
        for body in [
            json!({"region": "nowhere"}),
            json!({"registryIds": []}),
            json!({"registryIds": ["123456789012", "123456789012"]}),
            json!({"registryIds": ["12"]}),
            json!({"durationSeconds": 60}),
            json!({"access": "push"}),
        ] {
            assert!(
                serde_json::from_value::<IssueRequest>(body.clone()).is_err(),
                "{body}"
            );
        }
    }
}
