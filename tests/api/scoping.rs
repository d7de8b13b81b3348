//! Least privilege per request: session policies, session identity, many endpoints at once.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, moto, proxy_endpoints, request_id};

const SCOPED_RULES: &str = r#"
[[rules]]
name = "acme-push"
issuer = "test"
claims = { repository_owner = "acme", ref = "refs/heads/main" }
role_arn = "arn:aws:iam::111122223333:role/ecr-ci"
regions = ["us-east-1", "eu-west-1"]
registry_ids = ["111122223333", "444455556666"]
access = "push"
repositories = ["{repository}/*", "shared/base-images"]
session_duration_secs = 1800
session_name = "gha-{actor}"
source_identity = "{actor}"
session_tags = { repo = "{repository}", actor = "{actor}", workflow = "{/job/workflow}" }
transitive_tag_keys = ["repo"]
"#;

async fn scoped_app() -> TestApp {
    TestApp::builder().rules(SCOPED_RULES).spawn().await
}

fn scoped_token(app: &TestApp) -> String {
    app.issuer
        .token()
        .claim("job", json!({"workflow": "release.yml"}))
        .sign()
}

/// Every finding of the `parliament` IAM linter, at any severity.
fn parliament_findings(policy: &str) -> String {
    let linter = std::env::var_os("PARLIAMENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/parliament"));
    let output = Command::new(&linter)
        .args(["--string", policy, "--minimum_severity", "LOW"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} ({e}); run scripts/test.sh, which installs it",
                linter.display()
            )
        });
    let findings = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.success(),
        findings.trim().is_empty(),
        "{findings}"
    );
    findings
}

/// The one AssumeRole request moto recorded, with its policy linted.
async fn assumed(app: &TestApp) -> moto::Recorded {
    let mut calls = app.moto.recorded_actions("AssumeRole").await;
    assert_eq!(calls.len(), 1);
    let call = calls.remove(0);
    let policy = call
        .field("Policy")
        .expect("a session policy is always sent");
    let findings = parliament_findings(&policy);
    assert!(
        findings.trim().is_empty(),
        "parliament on {policy}:\n{findings}"
    );
    call
}

fn policy_of(call: &moto::Recorded) -> Value {
    serde_json::from_str(&call.field("Policy").unwrap()).unwrap()
}

#[tokio::test]
async fn a_default_request_gets_pull_on_the_rules_repositories_and_the_callers_identity() {
    let app = scoped_app().await;
    app.moto.start_recording().await;

    let response = app.issue(Some(&scoped_token(&app)), None).await;

    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let call = assumed(&app).await;
    assert_eq!(
        policy_of(&call),
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "GetAuthorizationToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Sid": "Pull", "Effect": "Allow",
             "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
             "Resource": ["arn:aws:ecr:us-east-1:111122223333:repository/acme/api/*",
                          "arn:aws:ecr:us-east-1:111122223333:repository/shared/base-images"]}]})
    );
    let session_name = call.field("RoleSessionName").unwrap();
    assert!(
        session_name.starts_with("gha-octocat.") && session_name.len() == "gha-octocat.".len() + 12,
        "{session_name}"
    );
    assert_eq!(call.field("SourceIdentity").as_deref(), Some("octocat"));
    let mut tags: Vec<(String, String)> = (1..=3)
        .map(|i| {
            (
                call.field(&format!("Tags.member.{i}.Key")).unwrap(),
                call.field(&format!("Tags.member.{i}.Value")).unwrap(),
            )
        })
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("actor".into(), "octocat".into()),
            ("repo".into(), "acme/api".into()),
            ("workflow".into(), "release.yml".into())
        ]
    );
    assert!(call.field("Tags.member.4.Key").is_none());
    assert_eq!(
        call.field("TransitiveTagKeys.member.1").as_deref(),
        Some("repo")
    );
    assert!(call.field("TransitiveTagKeys.member.2").is_none());

    let row = app.audit_row(&id).await;
    assert_eq!(row["access"], "pull");
    assert_eq!(
        row["repositories"],
        json!(["acme/api/*", "shared/base-images"])
    );
    assert_eq!(
        row["session_tags"],
        json!({"repo": "acme/api", "actor": "octocat", "workflow": "release.yml"})
    );
    assert_eq!(row["session_name"], session_name.as_str());
}

#[tokio::test]
async fn push_to_named_repositories_narrows_the_policy_to_them() {
    let app = scoped_app().await;
    app.moto.start_recording().await;
    let body = json!({"access": "push", "repositories": ["acme/api/web", "acme/api/worker"], "region": "eu-west-1"});

    let response = app.issue(Some(&scoped_token(&app)), Some(body)).await;

    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let statement = &policy_of(&assumed(&app).await)["Statement"][1];
    assert_eq!(statement["Sid"], "PullAndPush");
    assert_eq!(
        statement["Action"],
        json!([
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:CompleteLayerUpload",
            "ecr:InitiateLayerUpload",
            "ecr:PutImage",
            "ecr:UploadLayerPart"
        ])
    );
    assert_eq!(
        statement["Resource"],
        json!([
            "arn:aws:ecr:eu-west-1:111122223333:repository/acme/api/web",
            "arn:aws:ecr:eu-west-1:111122223333:repository/acme/api/worker"
        ])
    );
    let row = app.audit_row(&id).await;
    assert_eq!(row["access"], "push");
    assert_eq!(
        row["repositories"],
        json!(["acme/api/web", "acme/api/worker"])
    );
}

#[tokio::test]
async fn two_regions_and_two_accounts_give_four_endpoints_from_one_session() {
    let app = scoped_app().await;
    app.moto.start_recording().await;
    let body = json!({"regions": ["us-east-1", "eu-west-1"], "registryIds": ["111122223333", "444455556666"]});

    let response = app.issue(Some(&scoped_token(&app)), Some(body)).await;

    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    let endpoints = proxy_endpoints(&body);
    assert_eq!(
        endpoints,
        [
            "https://111122223333.dkr.ecr.us-east-1.amazonaws.com",
            "https://444455556666.dkr.ecr.us-east-1.amazonaws.com",
            "https://111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            "https://444455556666.dkr.ecr.eu-west-1.amazonaws.com",
        ]
    );
    let resources = &policy_of(&assumed(&app).await)["Statement"][1]["Resource"];
    assert_eq!(
        resources.as_array().unwrap().len(),
        8,
        "2 regions × 2 accounts × 2 patterns: {resources}"
    );
    let ecr_calls = app
        .moto
        .recording()
        .await
        .into_iter()
        .filter(|r| r.body.contains("registryIds"))
        .count();
    assert_eq!(ecr_calls, 2, "one GetAuthorizationToken per region");
    let row = app.audit_row(&id).await;
    assert_eq!(row["regions"], json!(["us-east-1", "eu-west-1"]));
    assert_eq!(row["registry_ids"], json!(["111122223333", "444455556666"]));
    assert_eq!(row["token_fingerprints"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn registry_hosts_pick_region_and_account_and_keep_their_endpoint() {
    let app = scoped_app().await;
    let hosts = [
        "444455556666.dkr-ecr.eu-west-1.on.aws",
        "111122223333.dkr.ecr-fips.us-east-1.amazonaws.com",
    ];

    let response = app
        .issue(
            Some(&scoped_token(&app)),
            Some(json!({"registries": hosts})),
        )
        .await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let endpoints = proxy_endpoints(&body);
    assert_eq!(endpoints, hosts.map(|h| format!("https://{h}")));
}

#[tokio::test]
async fn asking_beyond_the_rule_names_every_refused_item_and_calls_nothing() {
    let app = TestApp::builder()
        .rules(&SCOPED_RULES.replace(r#"access = "push""#, r#"access = "pull""#))
        .spawn()
        .await;
    app.moto.start_recording().await;
    let body = json!({
        "access": "push",
        "repositories": ["acme/api/web", "other-team/*", "shared/*"],
        "registries": ["999999999999.dkr.ecr.us-east-1.amazonaws.com", "111122223333.dkr.ecr.ap-south-1.amazonaws.com"]
    });

    let response = app.issue(Some(&scoped_token(&app)), Some(body)).await;

    let id = request_id(&response);
    let problem = assert_problem(response, 403, "forbidden").await;
    assert_eq!(
        problem["detail"],
        "rule acme-push does not allow: registry 999999999999, region ap-south-1, access push (at most pull), \
         repository other-team/*, repository shared/*"
    );
    assert!(app.moto.recorded_actions("AssumeRole").await.is_empty());
    assert_eq!(app.audit_row(&id).await["reason"], "not_allowed");
}

#[tokio::test]
async fn a_claim_that_would_widen_a_pattern_is_refused() {
    let app = scoped_app().await;
    app.moto.start_recording().await;

    for hostile in ["*", "acme/*", "acme/../other", "ACME/api"] {
        let token = app
            .issuer
            .token()
            .claim("repository", hostile)
            .claim("job", json!({"workflow": "x"}))
            .sign();
        let response = app.issue(Some(&token), None).await;
        let id = request_id(&response);
        let problem = assert_problem(response, 403, "forbidden").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("rule acme-push cannot be applied"),
            "{problem}"
        );
        assert_eq!(app.audit_row(&id).await["reason"], "rule_unusable");
    }
    assert!(app.moto.recorded_actions("AssumeRole").await.is_empty());
}

#[tokio::test]
async fn a_request_too_broad_for_one_session_policy_is_400() {
    let app = scoped_app().await;
    let repositories: Vec<String> = (0..20)
        .map(|i| format!("acme/api/service-with-a-long-name-{i:02}"))
        .collect();
    let body = json!({"regions": ["us-east-1", "eu-west-1"], "registryIds": ["111122223333", "444455556666"], "repositories": repositories});

    let response = app.issue(Some(&scoped_token(&app)), Some(body)).await;

    let problem = assert_problem(response, 400, "bad-request").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("STS accepts at most 2048"),
        "{problem}"
    );
}

#[tokio::test]
async fn rules_match_json_pointers_regexes_and_rule_audiences() {
    let app = TestApp::builder()
        .rules(
            r#"
[[rules]]
name = "portal-admins"
issuer = "test"
audiences = ["ecr-token-broker"]
claims = { "/realm_access/roles" = "ecr-admin", email = { regex = "[a-z.]+@acme\\.com" } }
role_arn = "arn:aws:iam::111122223333:role/ecr-admin"
regions = ["us-east-1"]
"#,
        )
        .spawn()
        .await;
    let admin = app
        .issuer
        .token()
        .claim("realm_access", json!({"roles": ["dev", "ecr-admin"]}))
        .claim("email", "jane.doe@acme.com");

    assert_eq!(app.issue(Some(&admin.sign()), None).await.status(), 200);
    let outsider = app
        .issuer
        .token()
        .claim("realm_access", json!({"roles": ["ecr-admin"]}))
        .claim("email", "jane@acme.com.evil.org")
        .sign();
    assert_problem(app.issue(Some(&outsider), None).await, 403, "forbidden").await;
}
