use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Fault, Operation, TestApp, assert_problem, wait_for};

#[tokio::test]
async fn no_token_leaves_when_the_audit_log_is_unreachable() {
    // Nothing listens on port 1: the audit insert fails after AWS has answered.
    let app = TestApp::builder()
        .database_url("postgres://postgres@127.0.0.1:1/unreachable")
        .spawn()
        .await;
    app.moto.start_recording().await;

    let response = app.issue(Some(&app.token()), None).await;

    assert_eq!(response.headers()["retry-after"], "5");
    let body = assert_problem(response, 503, "audit-unavailable").await;
    // The credentials really were fetched, and are withheld.
    assert_eq!(app.moto.recorded_actions("AssumeRole").await.len(), 1);
    let text = body.to_string();
    assert!(
        !text.contains("authorizationToken") && !text.contains("auth-token"),
        "{text}"
    );
}

#[tokio::test]
async fn the_audit_table_refuses_updates_deletes_and_truncation() {
    let app = TestApp::spawn().await;
    assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);
    let db = app.db().await;

    for statement in [
        "UPDATE audit_events SET outcome = 'denied'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let error = sqlx::query(statement)
            .execute(&db)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    let rows: Vec<Value> = app.audit_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "issued");
}

#[tokio::test]
async fn a_caller_that_hangs_up_mid_request_still_leaves_a_record() {
    let app = TestApp::builder()
        .fault(Fault::Delay {
            operation: Operation::GetAuthorizationToken,
            delay: Duration::from_millis(1500),
        })
        .spawn()
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let gave_up = impatient
        .post(app.url("/v1/ecr/authorization-token"))
        .bearer_auth(app.token())
        .header("x-request-id", "hung-up-1")
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));

    // The issuing path finishes without the caller and records what it did.
    let row = wait_for(Duration::from_secs(30), async || {
        let rows = app.audit_rows().await;
        rows.into_iter()
            .find(|r| r["caller_request_id"] == "hung-up-1")
    })
    .await
    .expect("no audit row for a request whose caller hung up");
    assert_eq!(row["outcome"], "issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_in_a_claim_is_stored_escaped_and_never_sinks_its_neighbours() {
    let app = TestApp::spawn().await;
    let odd = app
        .issuer
        .token()
        .claim("sub", "repo:acme/api\u{0}:ref:refs/heads/main")
        .sign();
    let send = |token: String, id: String| {
        app.http
            .post(app.url("/v1/ecr/authorization-token"))
            .bearer_auth(token)
            .header("x-request-id", id)
            .send()
    };

    // Sent together, so that the odd one shares a group commit with its neighbours.
    let neighbours = (0..20).map(|n| send(app.token(), format!("neighbour-{n}")));
    let (odd_response, neighbours) = tokio::join!(
        send(odd, "odd".to_owned()),
        futures::future::join_all(neighbours)
    );

    for response in neighbours {
        assert_eq!(response.unwrap().status(), 200);
    }
    let odd_status = odd_response.unwrap().status().as_u16();
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 21);
    let row = rows
        .iter()
        .find(|r| r["caller_request_id"] == "odd")
        .expect("the odd request's row");
    assert_eq!(row["subject"], "repo:acme/api\u{2400}:ref:refs/heads/main");
    assert_eq!(row["http_status"], odd_status);
    crate::chain::verifies(&app.database_url, &[]).await;
}
