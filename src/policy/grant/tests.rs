//! Grants from a rule and a request body: defaults, regions times registries, item-by-item
//! refusals, narrowing, the pull-through cache, and hostile claims that must not widen a pattern.

use serde_json::json;

use super::*;

/// The rule `text` (a `[[rules]]` entry) describes.
pub(super) fn parsed_rule(text: &str) -> Rule {
    crate::config::rule_from_toml(text)
}

fn rule(extra: &str) -> Rule {
    parsed_rule(&format!(
        r#"
name = "ci"
issuer = "ci"
claims = {{ sub = "*" }}
role_arn = "arn:aws:iam::111122223333:role/ecr"
regions = ["us-east-1", "eu-west-1"]
registry_ids = ["111122223333", "444455556666"]
session_duration_secs = 1800
{extra}
"#
    ))
}

fn claims() -> Map<String, Value> {
    json!({"sub": "repo:acme/api", "repository": "acme/api", "actor": "octocat"})
        .as_object()
        .unwrap()
        .clone()
}

fn request(body: Value) -> IssueRequest {
    serde_json::from_value(body).unwrap()
}

fn hosts(grant: &Grant) -> Vec<String> {
    grant.endpoints.iter().map(RegistryHost::host).collect()
}

#[test]
fn defaults_are_the_rules_first_region_and_registry_pull_only() {
    let rule = rule(r#"repositories = ["{repository}/*"]"#);
    let grant = rule.grant(&IssueRequest::default(), &claims()).unwrap();
    assert_eq!(
        hosts(&grant),
        ["111122223333.dkr.ecr.us-east-1.amazonaws.com"]
    );
    assert_eq!(grant.access, Access::Pull);
    assert_eq!(grant.repositories[0].as_str(), "acme/api/*");
    assert_eq!(grant.duration.as_secs(), 1800);
    assert!(grant.policy.as_str().contains("repository/acme/api/*"));
    assert!(!grant.policy.as_str().contains("ecr:PutImage"));
}

#[test]
fn regions_and_registries_multiply() {
    let rule = rule(r#"access = "push""#);
    let body = json!({"regions": ["us-east-1", "eu-west-1"], "registryIds": ["111122223333", "444455556666"], "access": "push"});
    let grant = rule.grant(&request(body), &claims()).unwrap();
    assert_eq!(
        hosts(&grant),
        [
            "111122223333.dkr.ecr.us-east-1.amazonaws.com",
            "444455556666.dkr.ecr.us-east-1.amazonaws.com",
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            "444455556666.dkr.ecr.eu-west-1.amazonaws.com",
        ]
    );
    assert!(grant.policy.as_str().contains("ecr:PutImage"));
    assert!(
        grant
            .policy
            .as_str()
            .contains("arn:aws:ecr:eu-west-1:444455556666:repository/*")
    );
}

#[test]
fn hosts_keep_their_flavour() {
    let rule = rule("");
    let body = json!({"registries": ["444455556666.dkr-ecr.eu-west-1.on.aws"]});
    let grant = rule.grant(&request(body), &claims()).unwrap();
    assert_eq!(
        grant.endpoints[0].proxy_endpoint(),
        "https://444455556666.dkr-ecr.eu-west-1.on.aws"
    );
}

#[test]
fn asking_for_more_is_refused_item_by_item() {
    let rule = rule(r#"repositories = ["{repository}/*"]"#);
    let body = json!({
        "regions": ["ap-south-1", "us-east-1"], "registryIds": ["999999999999"], "access": "push",
        "repositories": ["acme/api/web", "other/*"], "durationSeconds": 3600
    });
    let Denial::NotAllowed(refusal) = rule.grant(&request(body), &claims()).unwrap_err() else {
        panic!()
    };
    assert_eq!(
        refusal.refused,
        [
            "region ap-south-1",
            "registry 999999999999",
            "access push (at most pull)",
            "repository other/*",
            "durationSeconds 3600 (at most 1800)"
        ]
    );
}

#[test]
fn requested_repositories_narrow_the_policy() {
    let rule = rule(r#"repositories = ["{repository}/*", "shared/base"]"#);
    let grant = rule
        .grant(
            &request(json!({"repositories": ["acme/api/web"]})),
            &claims(),
        )
        .unwrap();
    assert!(grant.policy.as_str().contains("repository/acme/api/web\""));
    assert!(!grant.policy.as_str().contains("shared/base"));
}

#[test]
fn pull_through_cache_is_off_unless_the_rule_says_so() {
    let plain = rule(r#"repositories = ["docker-hub/*"]"#);
    let grant = plain.grant(&IssueRequest::default(), &claims()).unwrap();
    assert!(!grant.policy.as_str().contains("BatchImportUpstreamImage"));
    assert!(!grant.policy.as_str().contains("CreateRepository"));
}

#[test]
fn pull_through_cache_follows_the_narrowed_repositories() {
    let rule = rule(
        r#"
repositories = ["docker-hub/*", "ghcr/*"]
pull_through_cache = true
"#,
    );
    let body = json!({"repositories": ["docker-hub/library/*"]});
    let grant = rule.grant(&request(body), &claims()).unwrap();
    let policy: Value = serde_json::from_str(grant.policy.as_str()).unwrap();
    let statement = &policy["Statement"][1];
    assert_eq!(statement["Sid"], "PullThroughCache");
    assert!(
        statement["Action"]
            .as_array()
            .unwrap()
            .contains(&json!("ecr:CreateRepository"))
    );
    assert_eq!(
        statement["Resource"],
        json!(["arn:aws:ecr:us-east-1:111122223333:repository/docker-hub/library/*"])
    );
    // A request cannot reach past the rule's repositories through the cache either.
    let body = json!({"repositories": ["other/*"]});
    assert!(matches!(
        rule.grant(&request(body), &claims()),
        Err(Denial::NotAllowed(_))
    ));
}

#[test]
fn hostile_claims_never_widen_a_pattern() {
    let rule = rule(r#"repositories = ["{repository}/*"]"#);
    for hostile in [
        "*",
        "acme/*",
        "..",
        "acme/../other",
        "ACME/api",
        "acme api",
        "acme/api?",
    ] {
        let mut claims = claims();
        claims.insert("repository".to_owned(), Value::from(hostile));
        let denial = rule.grant(&IssueRequest::default(), &claims).unwrap_err();
        assert!(
            matches!(denial, Denial::Unusable { .. }),
            "{hostile}: {denial:?}"
        );
        assert!(
            !denial.to_string().contains(hostile) || hostile.len() < 3,
            "the claim value is not echoed"
        );
    }
    let mut claims = claims();
    claims.remove("repository");
    assert!(matches!(
        rule.grant(&IssueRequest::default(), &claims),
        Err(Denial::Unusable { .. })
    ));
}

#[test]
fn session_identity_comes_from_templates() {
    let rule = rule(
        r#"
session_name = "ci-{actor}"
source_identity = "{actor}"
session_tags = { repo = "{repository}", actor = "{actor}" }
transitive_tag_keys = ["repo"]
"#,
    );
    let identity = rule.session_identity(&claims(), "0123abcd").unwrap();
    assert_eq!(identity.session_name.as_str(), "ci-octocat.0123abcd");
    assert_eq!(identity.source_identity.unwrap().as_str(), "octocat");
    let tags: Vec<(String, String)> = identity
        .tags
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    assert!(tags.contains(&("repo".to_owned(), "acme/api".to_owned())));
    assert_eq!(identity.transitive_tag_keys, ["repo"]);
}
