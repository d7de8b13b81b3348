//! Rules compiled from their TOML: first match, audiences, default registries.

use serde_json::json;

use super::*;

/// A rule of issuer `ci` matching `repository_owner = owner`, for unit tests.
pub(crate) fn test_rule(name: &str, owner: &str) -> Rule {
    test_rule_with(name, owner, "")
}

/// [`test_rule`] with `extra` TOML lines.
fn test_rule_with(name: &str, owner: &str, extra: &str) -> Rule {
    crate::config::rule_from_toml(&format!(
        r#"
name = "{name}"
issuer = "ci"
claims = {{ repository_owner = "{owner}" }}
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1", "eu-west-1"]
session_duration_secs = 1800
{extra}
"#
    ))
}

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn first_matching_rule_wins_and_issuer_must_agree() {
    let rules = Rules::new(vec![test_rule("a", "acme"), test_rule("b", "*")]);
    let acme = claims(json!({"repository_owner": "acme"}));
    assert_eq!(rules.first_match("ci", &acme).unwrap().name, "a");
    let other = claims(json!({"repository_owner": "other"}));
    assert_eq!(rules.first_match("ci", &other).unwrap().name, "b");
    assert!(rules.first_match("portal", &acme).is_none());
    assert!(rules.first_match("ci", &claims(json!({}))).is_none());
}

#[test]
fn rule_audiences_narrow_the_issuers() {
    let rule = test_rule_with("a", "acme", r#"audiences = ["ecr-push"]"#);
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
    let rule = test_rule("a", "acme");
    assert_eq!(rule.registry_ids, vec![rule.role_arn.account().clone()]);
}
