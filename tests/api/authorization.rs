use serde_json::json;

use crate::helpers::{ROLE_ACCOUNT, TestApp, assert_problem, request_id};

#[tokio::test]
async fn a_caller_no_rule_matches_is_denied_and_recorded() {
    let app = TestApp::spawn().await;
    app.moto.start_recording().await;
    let token = app.issuer.token().claim("ref", "refs/heads/feature").sign();

    let response = app.issue(Some(&token), None).await;

    let id = request_id(&response);
    let body = assert_problem(response, 403, "forbidden").await;
    assert!(
        body["detail"].as_str().unwrap().contains("no rule"),
        "{body}"
    );
    let row = app.audit_row(&id).await;
    assert_eq!(row["outcome"], "denied");
    assert_eq!(row["reason"], "no_matching_rule");
    assert_eq!(row["subject"], "repo:acme/api:ref:refs/heads/main");
    assert!(row["rule"].is_null());
    assert!(
        app.moto.recorded_actions("AssumeRole").await.is_empty(),
        "a denial calls no AWS API"
    );
}

#[tokio::test]
async fn first_matching_rule_wins() {
    let app = TestApp::builder()
        .rules(
            r#"
[[rules]]
name = "tags"
issuer = "test"
claims = { ref = "refs/tags/*" }
role_arn = "arn:aws:iam::210987654321:role/ecr-release"
regions = ["us-east-1"]

[[rules]]
name = "any-acme"
issuer = "test"
claims = { repository_owner = "acme" }
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1"]
"#,
        )
        .spawn()
        .await;

    let tag = app
        .issue(
            Some(&app.issuer.token().claim("ref", "refs/tags/v1").sign()),
            None,
        )
        .await;
    let branch = app.issue(Some(&app.token()), None).await;

    assert_eq!(app.audit_row(&request_id(&tag)).await["rule"], "tags");
    let tag: serde_json::Value = tag.json().await.unwrap();
    assert_eq!(
        tag["authorizationData"][0]["proxyEndpoint"],
        "https://210987654321.dkr.ecr.us-east-1.amazonaws.com"
    );
    assert_eq!(
        app.audit_row(&request_id(&branch)).await["rule"],
        "any-acme"
    );
}

#[tokio::test]
async fn asking_for_more_than_the_rule_allows_names_what_was_refused() {
    let app = TestApp::spawn().await;
    app.moto.start_recording().await;
    let body = json!({"region": "ap-south-1", "registryIds": [ROLE_ACCOUNT, "999999999999"], "durationSeconds": 3600});

    let response = app.issue(Some(&app.token()), Some(body)).await;

    let id = request_id(&response);
    let problem = assert_problem(response, 403, "forbidden").await;
    let detail = problem["detail"].as_str().unwrap();
    for refused in [
        "acme-main",
        "region ap-south-1",
        "registry 999999999999",
        "durationSeconds 3600",
    ] {
        assert!(detail.contains(refused), "{detail} should name {refused}");
    }
    let row = app.audit_row(&id).await;
    assert_eq!(row["outcome"], "denied");
    assert_eq!(row["reason"], "not_allowed");
    assert_eq!(row["rule"], "acme-main");
    assert!(app.moto.recorded_actions("AssumeRole").await.is_empty());
}

#[tokio::test]
async fn a_region_or_registry_alone_outside_the_rule_is_refused() {
    let app = TestApp::spawn().await;
    let region = app
        .issue(Some(&app.token()), Some(json!({"region": "eu-north-1"})))
        .await;
    let registry = app
        .issue(
            Some(&app.token()),
            Some(json!({"registryIds": ["999999999999"]})),
        )
        .await;
    let region = assert_problem(region, 403, "forbidden").await;
    assert!(
        region["detail"]
            .as_str()
            .unwrap()
            .contains("region eu-north-1")
    );
    let registry = assert_problem(registry, 403, "forbidden").await;
    assert!(
        registry["detail"]
            .as_str()
            .unwrap()
            .contains("registry 999999999999")
    );
}

#[tokio::test]
async fn malformed_bodies_are_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.moto.start_recording().await;
    for body in [
        json!({"region": "not a region"}),
        json!({"registryIds": ["12345"]}),
        json!({"durationSeconds": 10}),
        json!({"access": "push", "surprise": true}),
        json!(["not", "an", "object"]),
        // The fields of a valid request, as an array: still not an object.
        json!(["eu-west-1", ["111122223333"], 900]),
    ] {
        let response = app.issue(Some(&app.token()), Some(body.clone())).await;
        let id = request_id(&response);
        assert_problem(response, 400, "bad-request").await;
        assert_eq!(app.audit_row(&id).await["reason"], "bad_request", "{body}");
    }
    for raw in [
        "{region",
        r#"{"region": "eu-west-1", "region": "us-east-1"}"#,
        "42",
        // Form feed is ASCII whitespace but not JSON's: no empty body.
        "\x0c",
    ] {
        let response = app
            .http
            .post(app.url("/v1/ecr/authorization-token"))
            .bearer_auth(app.token())
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400, "bad-request").await;
    }
    assert!(app.moto.recorded_actions("AssumeRole").await.is_empty());
}

#[tokio::test]
async fn oversized_bodies_and_headers_are_refused() {
    let app = TestApp::spawn().await;
    let body = format!(
        r#"{{"region": "us-east-1", "padding": "{}"}}"#,
        "x".repeat(5000)
    );
    let big_body = app
        .http
        .post(app.url("/v1/ecr/authorization-token"))
        .bearer_auth(app.token())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(big_body, 413, "payload-too-large").await;

    let big_headers = app
        .http
        .post(app.url("/v1/ecr/authorization-token"))
        .bearer_auth(app.token())
        .header("x-padding", "y".repeat(13_000))
        .send()
        .await
        .unwrap();
    assert_problem(big_headers, 431, "headers-too-large").await;
}
