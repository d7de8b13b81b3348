use std::time::Duration;

use crate::helpers::{Fault, Moto, Operation, TestApp, assert_problem, moto, request_id};

/// Moto with IAM enforced: a broker user allowed to assume roles, and a role whose own
/// policy lacks `ecr:GetAuthorizationToken`. Returns the broker's access key.
async fn enforcing_moto_with_a_role_lacking_ecr() -> (Moto, String, String) {
    let moto = Moto::start().await;
    moto.iam(&[("Action", "CreateUser"), ("UserName", "broker")])
        .await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:SetSourceIdentity","sts:TagSession"],"Resource":"*"}]}"#;
    moto.iam(&[
        ("Action", "PutUserPolicy"),
        ("UserName", "broker"),
        ("PolicyName", "assume"),
        ("PolicyDocument", policy),
    ])
    .await;
    let key = moto
        .iam(&[("Action", "CreateAccessKey"), ("UserName", "broker")])
        .await;
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{}:user/broker"}},"Action":["sts:AssumeRole","sts:SetSourceIdentity"]}}]}}"#,
        moto::ACCOUNT
    );
    moto.iam(&[
        ("Action", "CreateRole"),
        ("RoleName", "no-ecr"),
        ("AssumeRolePolicyDocument", &trust),
    ])
    .await;
    let role_policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:DescribeRepositories","Resource":"*"}]}"#;
    moto.iam(&[
        ("Action", "PutRolePolicy"),
        ("RoleName", "no-ecr"),
        ("PolicyName", "describe-only"),
        ("PolicyDocument", role_policy),
    ])
    .await;
    moto.enforce_iam().await;
    (
        moto,
        moto::xml_value(&key, "AccessKeyId"),
        moto::xml_value(&key, "SecretAccessKey"),
    )
}

#[tokio::test]
async fn a_role_without_ecr_permission_gets_502_and_an_error_row() {
    let (moto, access_key, secret_key) = enforcing_moto_with_a_role_lacking_ecr().await;
    let app = TestApp::builder()
        .moto(moto)
        .aws_credentials(&access_key, &secret_key)
        .rules(&format!(
            r#"
[[rules]]
name = "no-ecr"
issuer = "test"
claims = {{ repository_owner = "acme" }}
role_arn = "arn:aws:iam::{}:role/no-ecr"
regions = ["us-east-1"]
"#,
            moto::ACCOUNT
        ))
        .spawn()
        .await;

    let response = app.issue(Some(&app.token()), None).await;

    let id = request_id(&response);
    let body = assert_problem(response, 502, "aws-error").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("GetAuthorizationToken"),
        "{body}"
    );
    assert!(!body.to_string().contains(&secret_key));
    let row = app.audit_row(&id).await;
    assert_eq!(row["outcome"], "error");
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .starts_with("aws_refused:GetAuthorizationToken:"),
        "{row}"
    );
    assert_eq!(row["http_status"], 502);
    assert!(
        row["session_name"].as_str().is_some(),
        "the role was assumed"
    );
    assert!(row["token_fingerprints"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_broker_key_is_refused_by_sts() {
    let (moto, _, _) = enforcing_moto_with_a_role_lacking_ecr().await;
    let app = TestApp::builder()
        .moto(moto)
        .aws_credentials("AKIDUNKNOWN", "nope")
        .spawn()
        .await;

    let response = app.issue(Some(&app.token()), None).await;

    let id = request_id(&response);
    let body = assert_problem(response, 502, "aws-error").await;
    assert!(
        body["detail"].as_str().unwrap().contains("AssumeRole"),
        "{body}"
    );
    assert!(
        app.audit_row(&id).await["reason"]
            .as_str()
            .unwrap()
            .starts_with("aws_refused:AssumeRole:")
    );
}

#[tokio::test]
async fn throttling_is_503_with_retry_after() {
    let app = TestApp::builder()
        .fault(Fault::Error {
            operation: Operation::GetAuthorizationToken,
            status: 400,
            code: "ThrottlingException",
        })
        .spawn()
        .await;

    let response = app.issue(Some(&app.token()), None).await;

    let id = request_id(&response);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_problem(response, 503, "aws-throttled").await;
    assert_eq!(
        app.audit_row(&id).await["reason"],
        "aws_throttled:GetAuthorizationToken"
    );
}

#[tokio::test]
async fn sts_refusals_are_502() {
    let app = TestApp::builder()
        .fault(Fault::Error {
            operation: Operation::AssumeRole,
            status: 403,
            code: "AccessDenied",
        })
        .spawn()
        .await;

    let response = app.issue(Some(&app.token()), None).await;

    let id = request_id(&response);
    let body = assert_problem(response, 502, "aws-error").await;
    assert_eq!(body["detail"], "AWS refused AssumeRole (AccessDenied)");
    assert_eq!(
        app.audit_row(&id).await["reason"],
        "aws_refused:AssumeRole:AccessDenied"
    );
}

#[tokio::test]
async fn a_slow_aws_is_504() {
    let app = TestApp::builder()
        .fault(Fault::Delay {
            operation: Operation::AssumeRole,
            delay: Duration::from_secs(3),
        })
        .operation_timeout_secs(1)
        .spawn()
        .await;

    let response = app.issue(Some(&app.token()), None).await;

    let id = request_id(&response);
    assert_problem(response, 504, "aws-timeout").await;
    assert_eq!(app.audit_row(&id).await["reason"], "aws_timeout:AssumeRole");
}
