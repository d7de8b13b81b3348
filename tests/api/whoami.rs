use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};

const RULES: &str = r#"
[[rules]]
name = "releases"
issuer = "test"
claims = { ref = "refs/tags/v*" }
role_arn = "arn:aws:iam::111122223333:role/ecr-release"
regions = ["us-east-1"]
access = "push"

[[rules]]
name = "main-branch"
issuer = "test"
claims = { repository_owner = "acme", ref = "refs/heads/main" }
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1", "eu-west-1"]
registry_ids = ["111122223333", "444455556666"]
repositories = ["{repository}/*"]
session_duration_secs = 1800
session_tags = { repo = "{repository}" }
"#;

/// An app with [`RULES`] whose whoami tells everything, as for development.
async fn full_detail_app() -> TestApp {
    TestApp::builder()
        .rules(RULES)
        .server(r#"whoami_detail = "full""#)
        .spawn()
        .await
}

#[tokio::test]
async fn whoami_shows_the_matching_rule_and_what_it_allows_without_issuing() {
    let app = full_detail_app().await;
    app.moto.start_recording().await;

    let response = app.whoami(&app.token()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["issuer"], "test");
    assert_eq!(body["subject"], "repo:acme/api:ref:refs/heads/main");
    assert_eq!(body["rule"], "main-branch");
    assert_eq!(
        body["allowed"],
        json!({
            "roleArn": "arn:aws:iam::111122223333:role/ecr-pull",
            "regions": ["us-east-1", "eu-west-1"],
            "registryIds": ["111122223333", "444455556666"],
            "access": "pull",
            "repositories": ["acme/api/*"],
            "maxDurationSeconds": 1800,
            "sourceIdentity": "repo-acme-api-ref-refs-heads-main",
            "sessionTags": {"repo": "acme/api"}
        })
    );
    assert_eq!(body["rules"][0]["name"], "releases");
    assert_eq!(body["rules"][0]["matches"], false);
    assert_eq!(body["rules"][0]["mismatch"]["claim"], "ref");
    assert_eq!(
        body["rules"][1],
        json!({"name": "main-branch", "matches": true, "mismatch": null})
    );
    assert!(
        app.moto.recording().await.is_empty(),
        "whoami calls no AWS API"
    );
    assert!(app.audit_rows().await.is_empty(), "whoami issues nothing");
}

/// `(rule, claim that did not match)` for every rule whoami checked.
fn mismatches(body: &Value) -> Vec<(String, String)> {
    body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["mismatch"]["claim"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn whoami_explains_a_denial_rule_by_rule() {
    let app = full_detail_app().await;
    let feature_branch = app.issuer.token().claim("ref", "refs/heads/feature").sign();
    let other_owner = app
        .issuer
        .token()
        .claim("repository_owner", "not-acme")
        .sign();

    let feature_branch: Value = app.whoami(&feature_branch).await.json().await.unwrap();
    let other_owner: Value = app.whoami(&other_owner).await.json().await.unwrap();

    assert_eq!(feature_branch["rule"], Value::Null);
    assert_eq!(feature_branch["allowed"], Value::Null);
    assert_eq!(
        mismatches(&feature_branch),
        [
            ("releases".into(), "ref".into()),
            ("main-branch".into(), "ref".into())
        ]
    );
    let reason = feature_branch["rules"][1]["mismatch"]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("refs/heads/main"), "{reason}");
    assert_eq!(
        mismatches(&other_owner),
        [
            ("releases".into(), "ref".into()),
            ("main-branch".into(), "repository_owner".into())
        ]
    );
}

#[tokio::test]
async fn whoami_says_when_the_matching_rule_cannot_be_applied() {
    let app = TestApp::builder().rules(RULES).spawn().await;
    let token = app.issuer.token().claim("repository", "acme/*").sign();

    let body: Value = app.whoami(&token).await.json().await.unwrap();

    assert_eq!(body["rule"], "main-branch");
    assert_eq!(body["allowed"], Value::Null);
    assert!(
        body["problem"]
            .as_str()
            .unwrap()
            .contains("cannot be applied"),
        "{body}"
    );
}

#[tokio::test]
async fn whoami_needs_a_valid_token() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/v1/whoami")).send().await.unwrap();
    assert_problem(response, 401, "invalid-token").await;
}

/// What [`RULES`] expect, which by default whoami never tells.
const EXPECTED_VALUES: [&str; 3] = ["refs/tags/v", "refs/heads/main", "acme"];

#[tokio::test]
async fn whoami_tells_a_stranger_no_expected_value_by_default() {
    let app = TestApp::builder().rules(RULES).spawn().await;
    let stranger = app
        .issuer
        .token()
        .claim("sub", "repo:evil/x:ref:refs/heads/dev")
        .claim("repository", "evil/x")
        .claim("repository_owner", "evil")
        .claim("ref", "refs/heads/dev")
        .sign();

    let denied: Value = app.whoami(&stranger).await.json().await.unwrap();

    assert_eq!(denied["rule"], Value::Null);
    assert_eq!(
        mismatches(&denied),
        [
            ("releases".into(), "ref".into()),
            ("main-branch".into(), "ref".into())
        ]
    );
    for expected in EXPECTED_VALUES {
        assert!(!denied.to_string().contains(expected), "{denied}");
    }

    // A matching caller learns what its rule grants, and nothing of the rules before it.
    let matched: Value = app.whoami(&app.token()).await.json().await.unwrap();
    assert_eq!(matched["rule"], "main-branch");
    assert_eq!(matched["allowed"]["repositories"], json!(["acme/api/*"]));
    assert_eq!(matched["rules"], json!([]));
    assert!(!matched.to_string().contains("refs/tags/v"), "{matched}");
}

#[tokio::test]
async fn whoami_tells_expected_values_when_configured_to() {
    let app = full_detail_app().await;
    let stranger = app
        .issuer
        .token()
        .claim("sub", "repo:acme/api:ref:refs/heads/dev")
        .claim("ref", "refs/heads/dev")
        .sign();

    let body: Value = app.whoami(&stranger).await.json().await.unwrap();

    let reasons = [&body["rules"][0], &body["rules"][1]].map(|r| r["mismatch"]["reason"].clone());
    assert_eq!(
        reasons,
        [
            json!("the value matches none of: glob \"refs/tags/v*\""),
            json!("the value matches none of: \"refs/heads/main\"")
        ]
    );
}
