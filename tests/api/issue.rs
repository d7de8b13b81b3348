use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::helpers::{
    DEFAULT_RULES, Fault, ROLE_ACCOUNT, ROLE_ARN, SECOND_ACCOUNT, TestApp, fingerprint,
    proxy_endpoints, request_id, wait_for,
};

#[tokio::test]
async fn issues_authorization_data_for_the_rules_role_and_records_it() {
    // Arrange
    let app = TestApp::spawn().await;
    app.moto.start_recording().await;

    // Act
    let response = app.issue(Some(&app.token()), None).await;

    // Assert: the response
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["requestId"], id.as_str());
    let data = body["authorizationData"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    let token = data[0]["authorizationToken"].as_str().unwrap();
    let decoded = String::from_utf8(STANDARD.decode(token).unwrap()).unwrap();
    assert!(decoded.starts_with("AWS:"), "{decoded}");
    assert_eq!(
        data[0]["proxyEndpoint"],
        format!("https://{ROLE_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com")
    );
    let expires_at = data[0]["expiresAt"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires_at).is_ok() && expires_at.ends_with('Z'),
        "{expires_at}"
    );

    // Assert: what was sent to STS
    let assumed = app.moto.recorded_actions("AssumeRole").await;
    assert_eq!(assumed.len(), 1);
    let sent = &assumed[0];
    assert_eq!(sent.field("RoleArn").as_deref(), Some(ROLE_ARN));
    let session_name = sent.field("RoleSessionName").unwrap();
    assert!(
        session_name.starts_with("repo-acme-api-ref-refs-heads-main."),
        "{session_name}"
    );
    assert!(session_name.len() <= 64);
    assert_eq!(
        sent.field("SourceIdentity").as_deref(),
        Some("repo-acme-api-ref-refs-heads-main")
    );
    assert_eq!(sent.field("DurationSeconds").as_deref(), Some("1800"));

    // Assert: the audit row
    let row = app.audit_row(&id).await;
    assert_eq!(row["outcome"], "issued");
    assert_eq!(row["reason"], "issued");
    assert_eq!(row["http_status"], 200);
    assert_eq!(row["issuer"], "test");
    assert_eq!(row["subject"], "repo:acme/api:ref:refs/heads/main");
    assert_eq!(row["rule"], "acme-main");
    assert_eq!(row["role_arn"], ROLE_ARN);
    assert_eq!(row["session_name"], session_name.as_str());
    assert_eq!(row["regions"], json!(["us-east-1"]));
    assert_eq!(row["registry_ids"], json!([ROLE_ACCOUNT]));
    assert_eq!(
        row["proxy_endpoints"],
        json!([format!(
            "https://{ROLE_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
        )])
    );
    assert_eq!(row["token_fingerprints"], json!([fingerprint(token)]));
    assert_eq!(row["fingerprint_key_id"], "test-key");
    assert_eq!(row["from_cache"], false);
    assert_eq!(row["client_addr"], "127.0.0.1");
    assert!(row["latency_ms"].as_i64().unwrap() >= 0);
    let stored = chrono::DateTime::parse_from_rfc3339(row["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        stored,
        chrono::DateTime::parse_from_rfc3339(expires_at).unwrap()
    );
    // The token itself is stored nowhere.
    let everything = app
        .audit_rows()
        .await
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    assert!(!everything.contains(token) && !everything.contains(&decoded[4..]));
}

#[tokio::test]
async fn a_request_may_narrow_region_registries_and_duration() {
    let app = TestApp::spawn().await;
    app.moto.start_recording().await;

    let body = json!({"region": "eu-west-1", "registryIds": [SECOND_ACCOUNT, ROLE_ACCOUNT], "durationSeconds": 900});
    let response = app.issue(Some(&app.token()), Some(body)).await;

    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    let endpoints = proxy_endpoints(&body);
    assert_eq!(
        endpoints,
        vec![
            format!("https://{SECOND_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"),
            format!("https://{ROLE_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"),
        ]
    );
    let assumed = app.moto.recorded_actions("AssumeRole").await;
    assert_eq!(assumed[0].field("DurationSeconds").as_deref(), Some("900"));
    let row = app.audit_row(&id).await;
    assert_eq!(row["regions"], json!(["eu-west-1"]));
    assert_eq!(row["registry_ids"], json!([SECOND_ACCOUNT, ROLE_ACCOUNT]));
    assert_eq!(row["token_fingerprints"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn expiry_is_the_earlier_of_the_token_and_the_session_as_rfc3339_utc() {
    // moto always answers a fixed 2015 expiry; the proxy answers 12 hours, as real ECR
    // does. The rule's 30-minute session ends first, and the token with it.
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;

    let response = app.issue(Some(&app.token()), None).await;

    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    let expires_at = body["authorizationData"][0]["expiresAt"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(expires_at).unwrap();
    let session_end = chrono::Utc::now().timestamp() + 1800;
    assert!(
        (parsed.timestamp() - session_end).abs() <= 5,
        "{expires_at}"
    );
    assert!(expires_at.ends_with('Z'));
    let row = app.audit_row(&id).await;
    let stored = chrono::DateTime::parse_from_rfc3339(row["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(stored.timestamp(), parsed.timestamp());
}

#[tokio::test]
async fn every_session_gets_its_own_name() {
    let app = TestApp::builder()
        .rules(&DEFAULT_RULES.replace(
            "session_duration_secs = 1800",
            "session_duration_secs = 1800\ncache = \"off\"",
        ))
        .spawn()
        .await;
    app.moto.start_recording().await;

    for _ in 0..2 {
        assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);
    }

    let names: Vec<String> = app
        .moto
        .recorded_actions("AssumeRole")
        .await
        .iter()
        .map(|r| r.field("RoleSessionName").unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert_ne!(names[0], names[1]);
}

#[tokio::test]
async fn a_caller_request_id_is_recorded_beside_ours_and_never_becomes_the_rows_id() {
    let app = TestApp::spawn().await;
    let send = |id: String| {
        app.http
            .post(app.url("/v1/ecr/authorization-token"))
            .bearer_auth(app.token())
            .header("x-request-id", id)
            .send()
    };
    let victim = send("ci-run-42.attempt-1".to_owned()).await.unwrap();
    let victim_id = request_id(&victim);

    // Another caller plants the victim's id, as its own and as the service's.
    let planted = send("ci-run-42.attempt-1".to_owned()).await.unwrap();
    let planted_ours = send(victim_id.clone()).await.unwrap();
    let hostile = send("fake\" injected=1 ".repeat(20)).await.unwrap();

    for response in [&victim, &planted, &planted_ours, &hostile] {
        assert_eq!(response.status(), 200);
        assert!(uuid::Uuid::parse_str(&request_id(response)).is_ok());
    }
    let ids: HashSet<String> = [&victim, &planted, &planted_ours, &hostile]
        .into_iter()
        .map(request_id)
        .collect();
    assert_eq!(ids.len(), 4, "every request has its own id");
    let body: Value = planted.json().await.unwrap();
    assert_ne!(body["requestId"], "ci-run-42.attempt-1");
    let victims_row = app.audit_row(&victim_id).await;
    assert_eq!(victims_row["caller_request_id"], "ci-run-42.attempt-1");
    assert_eq!(
        victims_row["id"], 1,
        "the victim's id names only its own row"
    );
    let rows = app.audit_rows().await;
    let callers: Vec<&Value> = rows.iter().map(|r| &r["caller_request_id"]).collect();
    assert_eq!(
        callers,
        [
            &json!("ci-run-42.attempt-1"),
            &json!("ci-run-42.attempt-1"),
            &json!(victim_id),
            &Value::Null
        ]
    );
}

#[tokio::test]
async fn each_answer_is_logged_once_as_json_with_its_ids_and_never_a_secret() {
    let service = TestApp::builder()
        .env("RUST_LOG", "info")
        .env("ECR_TOKEN_BROKER_LOG_FORMAT", "json")
        .spawn_process()
        .await;
    let jwt = service.issuer.token().sign();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/ecr/authorization-token", service.address))
        .bearer_auth(&jwt)
        .header("x-request-id", "ci-run-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    let token = body["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let line: Value = wait_for(Duration::from_secs(10), async || {
        service
            .log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| {
                line["message"] == "finished processing request" && line["span"]["request_id"] == id
            })
    })
    .await
    .unwrap_or_else(|| panic!("the answer was never logged:\n{}", service.log()));

    assert_eq!(line["status"], 200);
    assert_eq!(line["span"]["caller_request_id"], "ci-run-7");
    assert_eq!(line["span"]["path"], "/v1/ecr/authorization-token");
    // The request's span once, not again as a list of one.
    assert!(line.get("spans").is_none(), "{line}");
    let latency = line["latency"].as_str().unwrap();
    let micros = latency
        .strip_suffix(" μs")
        .unwrap_or_else(|| panic!("{latency}"));
    assert!(micros.parse::<u64>().unwrap() > 0, "{latency}");
    let log = service.log();
    assert_eq!(log.matches(id.as_str()).count(), 1, "{log}");
    for secret in [jwt.as_str(), token.as_str()] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
}
