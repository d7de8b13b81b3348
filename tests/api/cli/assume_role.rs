//! `check-config --assume-role RULE --claims JSON`: the AssumeRole call a rule makes for a
//! token, printed as JSON, and refused wherever the broker would refuse the token.

use serde_json::{Value, json};

use super::{BASE, CI_ISSUER, assert_mentions, refused_config, run, stderr};

const RULES: &str = r#"
[[rules]]
name = "main"
issuer = "ci"
claims = { ref = "refs/heads/main" }
role_arn = "arn:aws:iam::123456789012:role/ecr-ci"
regions = ["eu-west-1", "us-east-1"]
registry_ids = ["123456789012", "210987654321"]
access = "push"
repositories = ["{repository}", "{repository}/*"]
session_duration_secs = 1800
source_identity = "{actor}"
session_tags = { repository = "{repository}" }
transitive_tag_keys = ["repository"]
external_id = "ecr-token-broker"

[[rules]]
name = "base-images"
issuer = "ci"
claims = { sub = "*" }
role_arn = "arn:aws:iam::123456789012:role/ecr-ci-base-images"
regions = ["eu-west-1"]
repositories = ["docker-hub/*"]
pull_through_cache = true

[[deny]]
issuer = "ci"
claims = { repository = "acme/leaky" }
reason = "INC-4711"
"#;

/// Runs `check-config --assume-role` with these arguments after it.
fn assume_role(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("{BASE}{CI_ISSUER}{RULES}")).unwrap();
    let mut all = vec!["check-config", path.to_str().unwrap(), "--assume-role"];
    all.extend(args);
    run(&all, &[])
}

fn claims(repository: &str, git_ref: &str) -> String {
    json!({"iss": "https://ci.example.com", "aud": "ecr-token-broker",
           "sub": format!("{repository}:{git_ref}"), "repository": repository,
           "ref": git_ref, "actor": "octocat"})
    .to_string()
}

fn printout(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn prints_the_widest_grant_and_its_assume_role_call() {
    let out = printout(&assume_role(&[
        "main",
        "--claims",
        &claims("acme/api", "refs/heads/main"),
    ]));
    assert_eq!(out["rule"], "main");
    assert_eq!(out["access"], "push");
    assert_eq!(out["pullThroughCache"], false);
    assert_eq!(out["repositories"], json!(["acme/api", "acme/api/*"]));
    assert_eq!(out["endpoints"].as_array().unwrap().len(), 4);
    let call = &out["assumeRole"];
    assert_eq!(call["RoleArn"], "arn:aws:iam::123456789012:role/ecr-ci");
    assert_eq!(call["SourceIdentity"], "octocat");
    assert_eq!(call["ExternalId"], "ecr-token-broker");
    assert_eq!(call["DurationSeconds"], 1800);
    assert_eq!(
        call["Tags"],
        json!([{"Key": "repository", "Value": "acme/api"}])
    );
    assert_eq!(call["TransitiveTagKeys"], json!(["repository"]));
    assert!(
        call["RoleSessionName"]
            .as_str()
            .unwrap()
            .starts_with("acme-api-refs-heads-main.")
    );
    let policy: Value = serde_json::from_str(call["Policy"].as_str().unwrap()).unwrap();
    let resources = policy["Statement"][1]["Resource"].as_array().unwrap();
    assert_eq!(resources.len(), 8, "{policy}");
    assert!(resources.contains(&json!(
        "arn:aws:ecr:us-east-1:210987654321:repository/acme/api/*"
    )));
    assert!(policy.to_string().contains("ecr:PutImage"));
}

#[test]
fn a_request_narrows_what_is_printed() {
    let out = printout(&assume_role(&[
        "main",
        "--claims",
        &claims("acme/api", "refs/heads/main"),
        "--request",
        r#"{"region": "eu-west-1", "repositories": ["acme/api/web"]}"#,
    ]));
    assert_eq!(out["access"], "pull");
    let policy = out["assumeRole"]["Policy"].as_str().unwrap();
    assert!(!policy.contains("ecr:PutImage"), "{policy}");
    assert!(
        policy.contains(r#"["arn:aws:ecr:eu-west-1:123456789012:repository/acme/api/web"]"#),
        "{policy}"
    );
}

#[test]
fn a_pull_through_cache_rule_adds_import_and_create_on_its_repositories() {
    let out = printout(&assume_role(&[
        "base-images",
        "--claims",
        &claims("acme/api", "refs/heads/feature"),
    ]));
    assert_eq!(out["pullThroughCache"], true);
    let call = &out["assumeRole"];
    assert!(call.get("ExternalId").is_none() && call.get("Tags").is_none());
    let policy: Value = serde_json::from_str(call["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(
        policy["Statement"][1],
        json!({"Sid": "PullThroughCache", "Effect": "Allow",
               "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                          "ecr:GetDownloadUrlForLayer", "ecr:BatchImportUpstreamImage",
                          "ecr:CreateRepository"],
               "Resource": ["arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/*"]})
    );
}

#[test]
fn refuses_where_the_broker_would_refuse_the_token() {
    for (rule, claims, expected) in [
        (
            "main",
            claims("acme/api", "refs/heads/feature"),
            "rule main does not match these claims: ref",
        ),
        (
            "base-images",
            claims("acme/api", "refs/heads/main"),
            "rule main comes before rule base-images and matches these claims first",
        ),
        (
            "main",
            claims("acme/leaky", "refs/heads/main"),
            "deny[0] refuses these claims",
        ),
        (
            "main",
            claims("Acme/*", "refs/heads/main"),
            "rule main cannot be applied to this token",
        ),
        (
            "nope",
            claims("acme/api", "refs/heads/main"),
            "no rule is named \"nope\" (rules: main, base-images)",
        ),
        (
            "main",
            json!({"iss": "https://other.example.com", "ref": "refs/heads/main"}).to_string(),
            "the claims' iss is \"https://other.example.com\", but rule main is for issuer ci",
        ),
        ("main", "[]".to_owned(), "--claims must be a JSON object"),
    ] {
        let output = assume_role(&[rule, "--claims", &claims]);
        assert!(!output.status.success(), "{rule} {claims}");
        assert!(output.stdout.is_empty());
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
    let without_claims = assume_role(&["main"]);
    assert!(!without_claims.status.success());
    assert!(stderr(&without_claims).contains("--claims"));
}

#[test]
fn pull_through_cache_needs_repositories_with_a_fixed_prefix() {
    let message = refused_config(&format!(
        "{BASE}{CI_ISSUER}{}",
        r#"
[[rules]]
name = "everything"
issuer = "ci"
claims = { sub = "a" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["eu-west-1"]
pull_through_cache = true

[[rules]]
name = "wildcard-first"
issuer = "ci"
claims = { sub = "b" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["eu-west-1"]
repositories = ["docker-hub/*", "*/library/*"]
pull_through_cache = true
"#
    ));
    assert_mentions(
        &message,
        &[
            "rules[0].pull_through_cache: lets callers create repositories",
            "rules[1].repositories[1]: \"*/library/*\" starts with `*`",
        ],
    );
    assert!(!message.contains("repositories[0]"), "{message}");
}
